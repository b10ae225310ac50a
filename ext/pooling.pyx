"""CPU kernels for 2-D max pooling (built as minimrcnn._ext.pooling).

minimrcnn/functional/pooling.py calls them on planes (P, H, W) -- every (image, channel) pair
of the input -- with torch's max_pool2d semantics:

    y[p, ho, wo] = max_{i < kh, j < kw} x[p, ho*sh - ph + i*dh, wo*sw - pw + j*dw]

positions in the padding never win; ``argmax`` keeps the flat index hin*W + win of each
maximum, and the backward pass adds each output gradient onto that pixel.

Every kernel checks the shapes it is given before it indexes. The planes run in parallel with
OpenMP (prange) where the compiler has it, serially elsewhere.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, isnan

__all__ = ["max_pool2d_forward", "max_pool2d_backward"]

# below this many inner iterations a kernel runs on one thread (starting a team costs more)
cdef enum:
    _PARALLEL_WORK = 1 << 16


def max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, int[:, :, ::1] argmax,
                       int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw):
    """y[p, ho, wo] = max over the window of x[p] (padding is -inf); argmax = flat index hin*W + win.

    The first maximum in row-major window order wins; a NaN wins over any number (as in torch).
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t Ho = y.shape[1], Wo = y.shape[2]
    if y.shape[0] != P or argmax.shape[0] != P or argmax.shape[1] != Ho or argmax.shape[2] != Wo:
        raise ValueError(f"max_pool2d_forward: y {tuple(y.shape)[:3]} and argmax "
                         f"{tuple(argmax.shape)[:3]} must both be ({P}, Ho, Wo)")
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1:
        raise ValueError("max_pool2d_forward: kernel, stride and dilation must be >= 1")
    if H * W >= 2 ** 31:
        raise ValueError(f"max_pool2d_forward: a plane of {H}x{W} is too large for int32 indices")
    cdef Py_ssize_t p, ho, wo, i, j, hin, win, best_idx
    cdef floating v, best
    cdef bint parallel = P * Ho * Wo * kh * kw >= _PARALLEL_WORK
    for p in prange(P, nogil=True, schedule="static", use_threads_if=parallel):
        for ho in range(Ho):
            for wo in range(Wo):
                best = -INFINITY
                best_idx = -1
                for i in range(kh):
                    hin = ho * sh - ph + i * dh
                    if hin < 0 or hin >= H:
                        continue
                    for j in range(kw):
                        win = wo * sw - pw + j * dw
                        if win < 0 or win >= W:
                            continue
                        v = x[p, hin, win]
                        if best_idx < 0 or v > best or isnan(v):
                            best = v
                            best_idx = hin * W + win
                y[p, ho, wo] = best
                argmax[p, ho, wo] = best_idx


def max_pool2d_backward(const floating[:, :, ::1] gy, const int[:, :, ::1] argmax,
                        floating[:, :, ::1] gx):
    """gx[p].flat[argmax[p, ho, wo]] += gy[p, ho, wo] (gx zeroed by the caller)."""
    cdef Py_ssize_t P = gx.shape[0], HW = gx.shape[1] * gx.shape[2]
    cdef Py_ssize_t Ho = gy.shape[1], Wo = gy.shape[2]
    if gy.shape[0] != P or argmax.shape[0] != P or argmax.shape[1] != Ho or argmax.shape[2] != Wo:
        raise ValueError("max_pool2d_backward: gy, argmax and gx disagree in shape")
    cdef Py_ssize_t p, ho, wo, k, Wg = gx.shape[2]
    cdef floating* dst
    cdef bint parallel = P * Ho * Wo >= _PARALLEL_WORK
    for p in prange(P, nogil=True, schedule="static", use_threads_if=parallel):
        dst = &gx[p, 0, 0]
        for ho in range(Ho):
            for wo in range(Wo):
                k = argmax[p, ho, wo]
                if k >= 0 and k < HW:
                    dst[k] += gy[p, ho, wo]
