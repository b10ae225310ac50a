"""CPU kernels for convolution (built as minimrcnn._ext.conv).

minimrcnn/functional/conv.py computes a convolution as GEMMs on "columns" (im2col):

    cols[(c*kh + i)*kw + j, (ho - h0)*Wo + wo] = x[c, ho*sh - ph + i*dh, wo*sw - pw + j*dw]

(zero where the index falls in the padding), for a band of output rows ho in [h0, h0 + rows).
``im2col`` fills such a band and ``col2im`` is its adjoint (adds a band of columns back into
the image). Both run over one image (C, H, W); the Python side loops over images and bands
of rows, so that the full column matrix (hundreds of MB for a large image) is never held.
``cols`` may be a column slice of a larger matrix (rows strided, each row contiguous): the
Python side packs the columns of several small images side by side into one matrix.

These two run serially, on purpose: a band copy costs a few percent of the BLAS GEMM that
follows it, and handing the cores back and forth between an OpenMP team and BLAS's own
threads at every band cost more than the copy itself (measured on a 2-core machine: a loop of
50 bands of copy + GEMM ran 2-6x slower with the copy on OpenMP than with a serial copy).

Every kernel checks the shapes it is given before it indexes. (Max pooling: ext/pooling.pyx.)
"""
from cython cimport floating

__all__ = ["im2col", "col2im"]


cdef inline Py_ssize_t _floordiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """floor(a / b) for b > 0 (C division truncates toward zero)."""
    if a >= 0:
        return a / b
    return -((-a + b - 1) / b)


cdef inline Py_ssize_t _first_valid(Py_ssize_t off, Py_ssize_t s, Py_ssize_t n) noexcept nogil:
    """The first output o in [0, n] whose input o*s + off is >= 0, i.e. max(0, ceil(-off / s))."""
    cdef Py_ssize_t a = -_floordiv(off, s)
    return 0 if a < 0 else (n if a > n else a)


cdef inline Py_ssize_t _end_valid(Py_ssize_t off, Py_ssize_t s, Py_ssize_t size, Py_ssize_t n,
                                  Py_ssize_t lo) noexcept nogil:
    """One past the last output o < n whose input o*s + off is < size (never below lo)."""
    cdef Py_ssize_t b = _floordiv(size - 1 - off, s) + 1
    if b > n:
        b = n
    return lo if b < lo else b


def _check_geometry(str name, Py_ssize_t C, Py_ssize_t R, Py_ssize_t ncols, int kh, int kw,
                    int sh, int sw, int dh, int dw, int Wo):
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or Wo < 1:
        raise ValueError(f"{name}: kernel, stride, dilation and Wo must be >= 1, got kernel "
                         f"({kh}, {kw}), stride ({sh}, {sw}), dilation ({dh}, {dw}), Wo {Wo}")
    if R != C * kh * kw:
        raise ValueError(f"{name}: cols has {R} rows but C*kh*kw = {C}*{kh}*{kw} = {C * kh * kw}")
    if ncols % Wo != 0:
        raise ValueError(f"{name}: cols has {ncols} columns, not a whole number of rows of Wo={Wo}")


def _check_rows_contiguous(str name, Py_ssize_t ncols, Py_ssize_t stride, Py_ssize_t itemsize):
    if ncols > 1 and stride != itemsize:
        raise ValueError(f"{name}: each row of cols must be contiguous, got a column stride "
                         f"of {stride} bytes for {itemsize}-byte items")


def im2col(const floating[:, :, ::1] x, floating[:, :] cols, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int h0, int Wo):
    """Fill ``cols`` (C*kh*kw, rows*Wo) with the patches of output rows [h0, h0 + rows) of x (C, H, W).

    ``cols`` may be strided between rows (a column slice of a wider matrix); each row is contiguous.
    """
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t R = cols.shape[0]
    _check_geometry("im2col", C, R, cols.shape[1], kh, kw, sh, sw, dh, dw, Wo)
    _check_rows_contiguous("im2col", cols.shape[1], cols.strides[1], sizeof(floating))
    cdef Py_ssize_t rows = cols.shape[1] // Wo
    cdef Py_ssize_t r, c, i, j, t, wo, lo, hi, hin, off
    cdef const floating* src
    cdef floating* dst
    with nogil:
      for r in range(R):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        off = j * dw - pw
        lo = _first_valid(off, sw, Wo)
        hi = _end_valid(off, sw, W, Wo, lo)
        for t in range(rows):
            hin = (h0 + t) * sh - ph + i * dh
            dst = &cols[r, 0] + t * Wo
            if hin < 0 or hin >= H:
                for wo in range(Wo):
                    dst[wo] = 0
                continue
            src = &x[c, hin, 0]
            for wo in range(lo):
                dst[wo] = 0
            if sw == 1:
                for wo in range(lo, hi):
                    dst[wo] = src[wo + off]
            else:
                for wo in range(lo, hi):
                    dst[wo] = src[wo * sw + off]
            for wo in range(hi, Wo):
                dst[wo] = 0


def col2im(const floating[:, :] cols, floating[:, :, ::1] x, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int h0, int Wo):
    """Adjoint of im2col: x[c, ho*sh - ph + i*dh, wo*sw - pw + j*dw] += cols[(c*kh + i)*kw + j, ...]."""
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t R = cols.shape[0]
    _check_geometry("col2im", C, R, cols.shape[1], kh, kw, sh, sw, dh, dw, Wo)
    _check_rows_contiguous("col2im", cols.shape[1], cols.strides[1], sizeof(floating))
    cdef Py_ssize_t rows = cols.shape[1] // Wo
    cdef Py_ssize_t r, c, i, j, t, wo, lo, hi, hin, off
    cdef const floating* src
    cdef floating* dst
    with nogil:
      for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                off = j * dw - pw
                lo = _first_valid(off, sw, Wo)
                hi = _end_valid(off, sw, W, Wo, lo)
                for t in range(rows):
                    hin = (h0 + t) * sh - ph + i * dh
                    if hin < 0 or hin >= H:
                        continue
                    src = &cols[r, 0] + t * Wo
                    dst = &x[c, hin, 0]
                    if sw == 1:
                        for wo in range(lo, hi):
                            dst[wo + off] += src[wo]
                    else:
                        for wo in range(lo, hi):
                            dst[wo * sw + off] += src[wo]
