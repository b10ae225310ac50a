r"""CPU kernels for 3x3, stride-1 convolutions by Winograd's minimal filtering (built as
minimrcnn._ext.winograd). Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks"
(2016), F(2x2, 3x3).

A 2x2 block of outputs of a 3x3 correlation reads a 4x4 tile d of the (zero-padded) input:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise on 4x4)

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

Summed over the input channels, the elementwise products become 16 matrix products, one per
position xi of the 4x4 tile: M[xi] = U[xi] (O x C) @ V[xi] (C x tiles), with U = G g G^T
per (o, c) and V = B^T d B per (c, tile): 16 products of O*C*tiles multiply-adds instead of
9 * 4 (one per output pixel and tap), 2.25x fewer. This module holds the three transforms;
minimrcnn/functional/conv.py does the products with BLAS and the 3x3 <-> 4x4 weight
transforms with NumPy:

- ``input_tiles``:    x (N, C, H, W) -> V (16, C, N, th, tw), V = B^T d B of tile (i, j), the
  4x4 input window whose top-left corner is (2i - ph, 2j - pw) (zero outside the image);
  each kernel takes ``i0``, the first tile row, so that a large image goes in bands of rows;
- ``output_tiles``:   M (16, O, N, th, tw) -> y (N, O, Ho, Wo), y = A^T m A (+ bias), the 2x2
  block at (2i, 2j) clipped to Ho x Wo;
- ``gradient_tiles``: dy (N, O, Ho, Wo) -> (16, O, N, th, tw), A dY A^T of each 2x2 block
  (zero beyond Ho x Wo): with V, the weight gradient is G^T [ sum_tiles (A dY A^T) * V ] G,
  the transpose of the forward formula.

Like ext/conv.pyx's im2col these run serially (they cost a few percent of the GEMMs between
them), and every kernel checks the shapes it is given before it indexes.
"""
from cython cimport floating
from libc.stdlib cimport free, malloc

__all__ = ["input_tiles", "output_tiles", "gradient_tiles"]


def _check_tiles(str name, Py_ssize_t n16, Py_ssize_t C, Py_ssize_t N, Py_ssize_t th, Py_ssize_t tw,
                 Py_ssize_t i0, Py_ssize_t C_img, Py_ssize_t N_img, Py_ssize_t Ho, Py_ssize_t Wo):
    if n16 != 16:
        raise ValueError(f"{name}: the tile array needs 16 positions in its first axis, got {n16}")
    if C != C_img or N != N_img:
        raise ValueError(f"{name}: the tiles are of {N} images of {C} channels, but the (N, C, H, W) "
                         f"array holds {N_img} images of {C_img}")
    if Ho < 1 or Wo < 1 or th < 1 or i0 < 0 or i0 + th > (Ho + 1) // 2 or tw != (Wo + 1) // 2:
        raise ValueError(f"{name}: tile rows [{i0}, {i0 + th}) of {tw} tiles do not fit an output of {Ho} x {Wo} "
                         f"(ceil(Ho / 2) x ceil(Wo / 2) tiles, Ho and Wo >= 1)")


def input_tiles(const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] V, int ph, int pw, int i0=0):
    """V[(a*4 + b), c, n, i, j] = (B^T d B)[a, b] for d = x[n, c, 2r-ph : 2r-ph+4, 2j-pw : 2j-pw+4],
    r = i0 + i (zero outside the image). V: (16, C, N, th, tw), the tile rows [i0, i0 + th) of
    the ceil(Ho/2) x ceil(Wo/2) tiles of an output of Ho = H + 2*ph - 2 by Wo = W + 2*pw - 2.

    A strip of tiles at a time: the 4 input rows of tile row i, zero-padded to 2*tw + 2
    columns, get B^T along the rows over the whole width, then B along the columns tile by tile.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t th = V.shape[3], tw = V.shape[4]
    if ph < 0 or pw < 0:
        raise ValueError(f"input_tiles: padding must be >= 0, got ({ph}, {pw})")
    _check_tiles("input_tiles", V.shape[0], V.shape[1], V.shape[2], th, tw, i0, C, N,
                 H + 2 * ph - 2, W + 2 * pw - 2)
    cdef Py_ssize_t Wp = 2 * tw + 2, plane = C * N * th * tw
    cdef Py_ssize_t ncopy = W if W < Wp - pw else Wp - pw
    cdef Py_ssize_t n, c, i, j, a, r, q, k
    cdef floating* buf = <floating*> malloc(8 * Wp * sizeof(floating))
    if buf == NULL:
        raise MemoryError()
    cdef floating* R[4]
    cdef floating* T[4]
    cdef floating* out
    cdef floating* t
    cdef const floating* src
    for a in range(4):
        R[a] = buf + a * Wp
        T[a] = buf + (4 + a) * Wp
    try:
        with nogil:
            for c in range(C):
                for n in range(N):
                    for i in range(th):
                        for a in range(4):                 # the strip's rows, zero-padded
                            r = 2 * (i0 + i) - ph + a
                            if 0 <= r < H:
                                src = &x[n, c, r, 0]
                                for q in range(pw):
                                    R[a][q] = 0
                                for q in range(ncopy):
                                    R[a][pw + q] = src[q]
                                for q in range(pw + ncopy, Wp):
                                    R[a][q] = 0
                            else:
                                for q in range(Wp):
                                    R[a][q] = 0
                        for q in range(Wp):                # T = B^T R (rows)
                            T[0][q] = R[0][q] - R[2][q]
                            T[1][q] = R[1][q] + R[2][q]
                            T[2][q] = R[2][q] - R[1][q]
                            T[3][q] = R[1][q] - R[3][q]
                        k = ((c * N + n) * th + i) * tw
                        for a in range(4):                 # V = T B (columns), tile by tile
                            t = T[a]
                            out = &V[4 * a, 0, 0, 0, 0] + k
                            for j in range(tw):
                                out[j] = t[2 * j] - t[2 * j + 2]
                                out[plane + j] = t[2 * j + 1] + t[2 * j + 2]
                                out[2 * plane + j] = t[2 * j + 2] - t[2 * j + 1]
                                out[3 * plane + j] = t[2 * j + 1] - t[2 * j + 3]
    finally:
        free(buf)


def output_tiles(const floating[:, :, :, :, ::1] M, floating[:, :, :, ::1] y, const floating[::1] bias,
                 int i0=0):
    """y[n, o, 2r + a, 2j + b] = (A^T m A)[a, b] + bias[o] for m = M[:, o, n, i, j] as 4x4 and
    r = i0 + i (the block clipped to y's Ho x Wo); ``bias`` of length O, or 0 for none."""
    cdef Py_ssize_t N = y.shape[0], O = y.shape[1], Ho = y.shape[2], Wo = y.shape[3]
    cdef Py_ssize_t th = M.shape[3], tw = M.shape[4]
    _check_tiles("output_tiles", M.shape[0], M.shape[1], M.shape[2], th, tw, i0, O, N, Ho, Wo)
    if bias.shape[0] != 0 and bias.shape[0] != O:
        raise ValueError(f"output_tiles: bias has {bias.shape[0]} values for {O} output channels")
    cdef bint has_bias = bias.shape[0] != 0
    cdef Py_ssize_t n, o, i, j, b, r, q
    cdef floating s0[4]
    cdef floating s1[4]
    cdef floating out[2][2]
    cdef floating beta
    with nogil:
        for o in range(O):
            beta = bias[o] if has_bias else 0
            for n in range(N):
                for i in range(th):
                    for j in range(tw):
                        for b in range(4):                     # s = A^T m (rows)
                            s0[b] = M[b, o, n, i, j] + M[4 + b, o, n, i, j] + M[8 + b, o, n, i, j]
                            s1[b] = M[4 + b, o, n, i, j] - M[8 + b, o, n, i, j] - M[12 + b, o, n, i, j]
                        out[0][0] = s0[0] + s0[1] + s0[2]      # s A (columns)
                        out[0][1] = s0[1] - s0[2] - s0[3]
                        out[1][0] = s1[0] + s1[1] + s1[2]
                        out[1][1] = s1[1] - s1[2] - s1[3]
                        r = 2 * (i0 + i)
                        q = 2 * j
                        y[n, o, r, q] = out[0][0] + beta
                        if q + 1 < Wo:
                            y[n, o, r, q + 1] = out[0][1] + beta
                        if r + 1 < Ho:
                            y[n, o, r + 1, q] = out[1][0] + beta
                            if q + 1 < Wo:
                                y[n, o, r + 1, q + 1] = out[1][1] + beta


def gradient_tiles(const floating[:, :, :, ::1] gy, floating[:, :, :, :, ::1] Wt, int i0=0):
    """Wt[(a*4 + b), o, n, i, j] = (A g A^T)[a, b] for g = gy[n, o, 2r : 2r+2, 2j : 2j+2], r = i0 + i
    (zero beyond Ho x Wo). Wt: (16, O, N, th, tw). A strip at a time, as ``input_tiles``."""
    cdef Py_ssize_t N = gy.shape[0], O = gy.shape[1], Ho = gy.shape[2], Wo = gy.shape[3]
    cdef Py_ssize_t th = Wt.shape[3], tw = Wt.shape[4]
    _check_tiles("gradient_tiles", Wt.shape[0], Wt.shape[1], Wt.shape[2], th, tw, i0, O, N, Ho, Wo)
    cdef Py_ssize_t Wp = 2 * tw, plane = O * N * th * tw
    cdef Py_ssize_t n, o, i, j, a, q, k, r
    cdef floating* buf = <floating*> malloc(6 * Wp * sizeof(floating))
    if buf == NULL:
        raise MemoryError()
    cdef floating* g0 = buf
    cdef floating* g1 = buf + Wp
    cdef floating* T[4]
    cdef floating* out
    cdef floating* t
    cdef const floating* src
    for a in range(4):
        T[a] = buf + (2 + a) * Wp
    try:
        with nogil:
            for o in range(O):
                for n in range(N):
                    for i in range(th):
                        r = 2 * (i0 + i)
                        src = &gy[n, o, r, 0]
                        for q in range(Wo):
                            g0[q] = src[q]
                        if r + 1 < Ho:
                            src = &gy[n, o, r + 1, 0]
                            for q in range(Wo):
                                g1[q] = src[q]
                        else:
                            for q in range(Wo):
                                g1[q] = 0
                        for q in range(Wo, Wp):            # an odd Wo: the last tile's second column
                            g0[q] = 0
                            g1[q] = 0
                        for q in range(Wp):                # T = A g (rows)
                            T[0][q] = g0[q]
                            T[1][q] = g0[q] + g1[q]
                            T[2][q] = g0[q] - g1[q]
                            T[3][q] = -g1[q]
                        k = ((o * N + n) * th + i) * tw
                        for a in range(4):                 # T A^T (columns), tile by tile
                            t = T[a]
                            out = &Wt[4 * a, 0, 0, 0, 0] + k
                            for j in range(tw):
                                out[j] = t[2 * j]
                                out[plane + j] = t[2 * j] + t[2 * j + 1]
                                out[2 * plane + j] = t[2 * j] - t[2 * j + 1]
                                out[3 * plane + j] = -t[2 * j + 1]
    finally:
        free(buf)
