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

Each kernel works on one channel of all its images at a time, in loops over contiguous memory
that touch at most four of the 16 planes at once (the 7x7 RoI head's planes are 1 MB apart;
writing all 16 in one loop ran the gradient transform 2x slower). They run serially, like ext/conv.pyx's
im2col: on 2 cores an OpenMP team woken between BLAS calls ran no faster (BLAS's threads still
spin on the second core), and every kernel checks the shapes it is given before it indexes.
"""
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memset

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


cdef void _split_parity(const floating* img, Py_ssize_t H, Py_ssize_t W, Py_ssize_t r0, Py_ssize_t q0,
                        Py_ssize_t rows, Py_ssize_t cols, floating* P, Py_ssize_t plane) noexcept nogil:
    """P[(2*pr + pc) * plane + u * cols + v] = img[r0 + 2u + pr, q0 + 2v + pc] (zero outside the
    H x W image) for u < rows, v < cols: the window split by the parity of its rows and columns
    into four (rows, cols) planes, ``plane`` apart."""
    cdef Py_ssize_t pr, pc, u, v, r, v0, v1
    cdef floating* dst
    cdef const floating* src
    for pr in range(2):
        for u in range(rows):
            r = r0 + 2 * u + pr
            for pc in range(2):
                dst = P + (2 * pr + pc) * plane + u * cols
                if r < 0 or r >= H:
                    memset(dst, 0, cols * sizeof(floating))
                    continue
                # the columns q = q0 + pc + 2v inside the image: v in [v0, v1)
                v0 = min(cols, max(0, (1 - q0 - pc) // 2))
                v1 = max(v0, min(cols, (W - q0 - pc + 1) // 2))
                src = img + r * W + q0 + pc
                for v in range(v0):
                    dst[v] = 0
                for v in range(v0, v1):
                    dst[v] = src[2 * v]
                for v in range(v1, cols):
                    dst[v] = 0


def input_tiles(const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] V, int ph, int pw, int i0=0):
    """V[(a*4 + b), c, n, i, j] = (B^T d B)[a, b] for d = x[n, c, 2r-ph : 2r-ph+4, 2j-pw : 2j-pw+4],
    r = i0 + i (zero outside the image). V: (16, C, N, th, tw), the tile rows [i0, i0 + th) of
    the ceil(Ho/2) x ceil(Wo/2) tiles of an output of Ho = H + 2*ph - 2 by Wo = W + 2*pw - 2.

    A channel of all N images at a time. Their padded windows are split by the parity of rows
    and columns (4 planes of N x (th + 1) x (tw + 1)): tile (i, j) reads the even and odd rows
    i and i + 1, and the same of its columns, so both passes are loops over contiguous memory
    (which the compiler vectorizes): T = B^T d down the rows, over all images at once, then
    V = T B along the columns, a tile row at a time.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t th = V.shape[3], tw = V.shape[4]
    if ph < 0 or pw < 0:
        raise ValueError(f"input_tiles: padding must be >= 0, got ({ph}, {pw})")
    _check_tiles("input_tiles", V.shape[0], V.shape[1], V.shape[2], th, tw, i0, C, N,
                 H + 2 * ph - 2, W + 2 * pw - 2)
    cdef Py_ssize_t s = tw + 1, per = (th + 1) * s, pp = N * per, plane = C * N * th * tw
    cdef floating* P = <floating*> malloc(12 * pp * sizeof(floating))
    if P == NULL:
        raise MemoryError()
    cdef floating* T = P + 4 * pp                        # T[a][e] at T + (2a + e) * pp
    cdef Py_ssize_t n, c, i, j, m, a, e
    cdef const floating* Pe
    cdef const floating* Po
    cdef floating* te
    cdef floating* to
    cdef floating* out
    try:
        with nogil:
            for c in range(C):
                for n in range(N):
                    _split_parity(&x[n, c, 0, 0], H, W, 2 * i0 - ph, -pw, th + 1, s, P + n * per, pp)
                for e in range(2):                     # T = B^T d: rows 2i, 2i+1, 2i+2, 2i+3
                    Pe = P + e * pp                    # even rows, column parity e
                    Po = P + (2 + e) * pp              # odd rows
                    te = T + e * pp
                    for m in range(pp - s):            # (row th of an image: never read)
                        te[m] = Pe[m] - Pe[m + s]
                        te[2 * pp + m] = Po[m] + Pe[m + s]
                        te[4 * pp + m] = Pe[m + s] - Po[m]
                        te[6 * pp + m] = Po[m] - Po[m + s]
                for a in range(4):                     # V = T B: columns 2j .. 2j+3
                    for n in range(N):
                        for i in range(th):
                            te = T + 2 * a * pp + n * per + i * s
                            to = te + pp
                            out = &V[4 * a, c, n, i, 0]
                            for j in range(tw):
                                out[j] = te[j] - te[j + 1]
                                out[plane + j] = to[j] + te[j + 1]
                                out[2 * plane + j] = te[j + 1] - to[j]
                                out[3 * plane + j] = to[j] - to[j + 1]
    finally:
        free(P)


def output_tiles(const floating[:, :, :, :, ::1] M, floating[:, :, :, ::1] y, const floating[::1] bias,
                 int i0=0):
    """y[n, o, 2r + a, 2j + b] = (A^T m A)[a, b] + bias[o] for m = M[:, o, n, i, j] as 4x4 and
    r = i0 + i (the block clipped to y's Ho x Wo); ``bias`` of length O, or 0 for none.

    An output channel of all N images at a time: S = A^T m for every tile (loops over 4 of the
    16 contiguous planes of M at a time, vectorized), the four outputs Y = S A, then Y
    interleaved into y's rows."""
    cdef Py_ssize_t N = y.shape[0], O = y.shape[1], Ho = y.shape[2], Wo = y.shape[3]
    cdef Py_ssize_t th = M.shape[3], tw = M.shape[4]
    _check_tiles("output_tiles", M.shape[0], M.shape[1], M.shape[2], th, tw, i0, O, N, Ho, Wo)
    if bias.shape[0] != 0 and bias.shape[0] != O:
        raise ValueError(f"output_tiles: bias has {bias.shape[0]} values for {O} output channels")
    cdef bint has_bias = bias.shape[0] != 0
    cdef Py_ssize_t L = N * th * tw, plane = O * N * th * tw
    cdef floating* Y = <floating*> malloc(12 * L * sizeof(floating))
    if Y == NULL:
        raise MemoryError()
    cdef floating* S = Y + 4 * L                         # S[a][b] at S + (4a + b) * L
    cdef Py_ssize_t n, o, i, j, m, r, a, b, half = Wo // 2
    cdef floating beta
    cdef const floating* mp
    cdef const floating* m0
    cdef const floating* m1
    cdef const floating* m2
    cdef const floating* m3
    cdef floating* sa
    cdef floating* row
    cdef floating* y0
    cdef floating* y1
    try:
        with nogil:
            for o in range(O):
                beta = bias[o] if has_bias else 0
                mp = &M[0, o, 0, 0, 0]
                for b in range(4):                     # S = A^T m (rows): column b of every tile
                    m0 = mp + b * plane
                    m1 = m0 + 4 * plane
                    m2 = m0 + 8 * plane
                    m3 = m0 + 12 * plane
                    for m in range(L):
                        S[b * L + m] = m0[m] + m1[m] + m2[m]
                        S[(4 + b) * L + m] = m1[m] - m2[m] - m3[m]
                for a in range(2):                     # Y = S A (columns) + bias
                    sa = S + 4 * a * L
                    for m in range(L):
                        Y[2 * a * L + m] = sa[m] + sa[L + m] + sa[2 * L + m] + beta
                        Y[(2 * a + 1) * L + m] = sa[L + m] - sa[2 * L + m] - sa[3 * L + m] + beta
                for n in range(N):                     # the 2x2 blocks into rows 2r, 2r + 1
                    for i in range(th):
                        r = 2 * (i0 + i)
                        for a in range(2):
                            if r + a >= Ho:
                                break
                            row = &y[n, o, r + a, 0]
                            y0 = Y + 2 * a * L + (n * th + i) * tw
                            y1 = y0 + L
                            for j in range(half):
                                row[2 * j] = y0[j]
                                row[2 * j + 1] = y1[j]
                            if Wo % 2:
                                row[Wo - 1] = y0[half]
    finally:
        free(Y)


cdef inline void _columns(floating* out, Py_ssize_t plane, Py_ssize_t m, floating t0, floating t1) noexcept nogil:
    """The 4 planes of (t0, t1) A^T, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], at index m."""
    out[m] = t0
    out[plane + m] = t0 + t1
    out[2 * plane + m] = t0 - t1
    out[3 * plane + m] = -t1


def gradient_tiles(const floating[:, :, :, ::1] gy, floating[:, :, :, :, ::1] Wt, int i0=0):
    """Wt[(a*4 + b), o, n, i, j] = (A g A^T)[a, b] for g = gy[n, o, 2r : 2r+2, 2j : 2j+2], r = i0 + i
    (zero beyond Ho x Wo). Wt: (16, O, N, th, tw). An output channel of all N images at a time:
    gy's rows 2r, 2r + 1 split by column parity (4 planes of N x th x tw, as input_tiles), then
    the 16 sums over contiguous memory."""
    cdef Py_ssize_t N = gy.shape[0], O = gy.shape[1], Ho = gy.shape[2], Wo = gy.shape[3]
    cdef Py_ssize_t th = Wt.shape[3], tw = Wt.shape[4]
    _check_tiles("gradient_tiles", Wt.shape[0], Wt.shape[1], Wt.shape[2], th, tw, i0, O, N, Ho, Wo)
    cdef Py_ssize_t L = N * th * tw, plane = O * N * th * tw
    cdef floating* G = <floating*> malloc(4 * L * sizeof(floating))
    if G == NULL:
        raise MemoryError()
    cdef Py_ssize_t n, o, m
    cdef const floating* g0
    cdef const floating* g1
    cdef floating* out
    try:
        with nogil:
            for o in range(O):
                for n in range(N):                     # G[2*pr + pc] = gy[n, o, 2r + pr, 2j + pc]
                    _split_parity(&gy[n, o, 0, 0], Ho, Wo, 2 * i0, 0, th, tw, G + n * th * tw, L)
                out = &Wt[0, o, 0, 0, 0]
                g0 = G                                 # T = A g (rows): g0, g0 + g1, g0 - g1, -g1
                g1 = G + 2 * L                         # (g = the even / odd columns of rows 2r, 2r+1)
                for m in range(L):                     # then T A^T (columns), four planes per loop
                    _columns(out, plane, m, g0[m], g0[L + m])
                out += 4 * plane
                for m in range(L):
                    _columns(out, plane, m, g0[m] + g1[m], g0[L + m] + g1[L + m])
                out += 4 * plane
                for m in range(L):
                    _columns(out, plane, m, g0[m] - g1[m], g0[L + m] - g1[L + m])
                out += 4 * plane
                for m in range(L):
                    _columns(out, plane, m, -g1[m], -g1[L + m])
    finally:
        free(G)
