"""2-D convolution and transposed convolution (torch.nn.functional semantics, NCHW).

Convolution (cross-correlation, as in every deep-learning library)::

    y[n, o, ho, wo] = b[o] + sum_{c, i, j} w[o, c, i, j] * x[n, g*Cg + c, ho*sh - ph + i*dh,
                                                                 wo*sw - pw + j*dw]

for output channel o in group g = o // (O/groups), with x zero outside the image and

    Ho = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1        (Wo likewise).

Shapes: x (N, C, H, W), w (O, C/groups, kh, kw), b (O,), y (N, O, Ho, Wo).

The algorithm is im2col + GEMM: the patches of x are copied into a matrix of "columns"
``cols`` (C*kh*kw, Ho*Wo), and then, per group, ``y = w.reshape(O, C*kh*kw) @ cols``. The
three products of a convolution are the same GEMM with different operands:

    forward          y    = W @ cols(x)                          (O, K) @ (K, L)
    grad of weight   dW   = dy @ cols(x)^T                       (O, L) @ (L, K)
    grad of input    dx   = col2im(W^T @ dy)                     col2im of (K, O) @ (O, L)

``col2im`` is the adjoint of ``im2col``: it adds every column entry back onto the pixel it was
copied from. A transposed convolution is exactly "grad of input" run forward, and its
backward uses the other two products.

Two implementations share these formulas:

* ``_Reference`` (NumPy and CuPy, one code path through ``xp``): im2col by ``kh*kw`` strided
  slices of the zero-padded input, one batched matmul. Short and easy to step through.
* ``_CPU`` (NumPy float32/float64 arrays): the same products, but 1x1 stride-1 convolutions
  are plain GEMMs on the image (no copy at all), and otherwise the columns are built by a
  compiled kernel (ext/conv.pyx) one band of output rows at a time (up to 64 MB of columns
  per band, in a work buffer kept between calls), so that the full column matrix (560 MB for
  a 3x3 256-channel convolution at 200x304) is never held. Small images (the RoI heads run
  on hundreds of 7x7 or 14x14 images) go the other way: the columns of several whole images
  are packed side by side into one matrix, so that each product is one large GEMM rather
  than many thin ones. The GEMMs are NumPy's BLAS (multithreaded); the band copies are
  serial: a few percent of the GEMM time at 256+ output channels, more at 64-128.
  3x3 stride-1 convolutions take Winograd's F(2x2, 3x3) instead (ext/winograd.pyx, whose
  docstring has the algebra): the input cut into overlapping 4x4 tiles and transformed, 16
  GEMMs that multiply 2.25x less than im2col's, and the result transformed back; small images
  again several to a unit, large ones in bands of tile rows.

On ResNet-50-FPN's shapes at 800x1216 this runs at about the speed of one BLAS GEMM of the
same size, and about as fast as torch's CPU convolution (benchmarks/bench_conv.py).
"""
import threading

import numpy as np

from .._ext import cpu_module
from ..autograd.registry import register_case
from ..autograd.tensor import Function, as_array
from ..backend import get_array_module
from ..checks import INT32_MAX, int_pair, is_int, positive_int

__all__ = ["conv2d", "conv_transpose2d"]


# ---------------------------------------------------------------------------------------
# output size
# ---------------------------------------------------------------------------------------
def _out_size(size, k, s, p, d):
    """floor((size + 2p - d(k-1) - 1) / s) + 1: output length of a convolution or pooling."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_out_hw(H, W, kh, kw, stride, padding, dilation):
    return (_out_size(H, kh, stride[0], padding[0], dilation[0]),
            _out_size(W, kw, stride[1], padding[1], dilation[1]))


# ---------------------------------------------------------------------------------------
# reference implementation: NumPy or CuPy through xp
# ---------------------------------------------------------------------------------------
class _Reference:
    """im2col by strided slices and one batched matmul; works for any array module."""

    @staticmethod
    def im2col(x, kh, kw, stride, padding, dilation, out_size=None):
        """x (N, C, H, W) -> cols (N, C, kh, kw, Ho, Wo): cols[..., i, j, ho, wo] = xpad[..., ho*s + i*d, wo*s + j*d].

        out_size (Ho, Wo) may ask for fewer output pixels than fit (transposed convolution
        with output_padding >= stride).
        """
        xp = get_array_module(x)
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        N, C, H, W = x.shape
        Ho, Wo = out_size or (_out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw))
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        cols = xp.empty((N, C, kh, kw, Ho, Wo), dtype=x.dtype)
        ### BEGIN SOLUTION conv2d_forward
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = xpad[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh,
                                        j * dw: j * dw + sw * (Wo - 1) + 1: sw]
        ### END SOLUTION
        return cols

    @staticmethod
    def col2im(cols, x_shape, stride, padding, dilation):
        """Adjoint of im2col: cols (N, C, kh, kw, Ho, Wo) -> x (N, C, H, W), overlaps added."""
        xp = get_array_module(cols)
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        N, C, kh, kw, Ho, Wo = cols.shape
        H, W = x_shape[2], x_shape[3]
        # big enough for every slice below (a stride may leave trailing rows unused)
        Hp = max(H + 2 * ph, dh * (kh - 1) + sh * (Ho - 1) + 1)
        Wp = max(W + 2 * pw, dw * (kw - 1) + sw * (Wo - 1) + 1)
        xpad = xp.zeros((N, C, Hp, Wp), dtype=cols.dtype)
        ### BEGIN SOLUTION conv2d_backward
        for i in range(kh):
            for j in range(kw):
                xpad[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh,
                     j * dw: j * dw + sw * (Wo - 1) + 1: sw] += cols[:, :, i, j]
        ### END SOLUTION
        return xpad[:, :, ph: ph + H, pw: pw + W]

    @classmethod
    def forward(cls, x, w, stride, padding, dilation, groups):
        """y = W @ cols(x) per group: (G, Og, K) @ (N, G, K, L) -> (N, O, Ho, Wo)."""
        xp = get_array_module(x)
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        cols = cls.im2col(x, kh, kw, stride, padding, dilation)
        Ho, Wo = cols.shape[-2:]
        ### BEGIN SOLUTION conv2d_forward
        cols = cols.reshape(N, groups, Cg * kh * kw, Ho * Wo)
        y = xp.matmul(w.reshape(groups, O // groups, Cg * kh * kw), cols)   # (N, G, Og, L)
        ### END SOLUTION
        return y.reshape(N, O, Ho, Wo)

    @classmethod
    def grad_input(cls, gy, w, x_shape, stride, padding, dilation, groups):
        """dx = col2im(W^T @ dy): (G, K, Og) @ (N, G, Og, L) -> (N, G, K, L) -> (N, C, H, W)."""
        xp = get_array_module(gy)
        N, O, Ho, Wo = gy.shape
        _, Cg, kh, kw = w.shape
        ### BEGIN SOLUTION conv2d_backward
        wt = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)
        dcols = xp.matmul(wt, gy.reshape(N, groups, O // groups, Ho * Wo))
        ### END SOLUTION
        dcols = dcols.reshape(N, groups * Cg, kh, kw, Ho, Wo)
        return cls.col2im(dcols, x_shape, stride, padding, dilation)

    @classmethod
    def grad_weight(cls, gy, x, kernel_size, stride, padding, dilation, groups):
        """dW = sum_n dy @ cols(x)^T: (N, G, Og, L) @ (N, G, L, K) -> (O, Cg, kh, kw)."""
        N, C, H, W = x.shape
        O, kh, kw = gy.shape[1], kernel_size[0], kernel_size[1]
        Cg = C // groups
        cols = cls.im2col(x, kh, kw, stride, padding, dilation, out_size=gy.shape[2:])
        ### BEGIN SOLUTION conv2d_backward
        cols = cols.reshape(N, groups, Cg * kh * kw, -1)
        gyg = gy.reshape(N, groups, O // groups, -1)
        gw = (gyg @ cols.transpose(0, 1, 3, 2)).sum(axis=0)                 # (G, Og, K)
        ### END SOLUTION
        return gw.reshape(O, Cg, kh, kw)


# ---------------------------------------------------------------------------------------
# CPU implementation: banded im2col (compiled) + BLAS, no full column matrix
# ---------------------------------------------------------------------------------------
def _matmul_abt(a, b):
    """a @ b^T for stacks a (G, M, L), b (G, N, L) -> (G, M, N), L the long (pixel) axis.

    Computed as (b @ a^T)^T when N > M and L is long: NumPy's OpenBLAS once ran this product
    with the longer side first 2-30x faster on a busy 2-core machine (e.g. 64x256 over 60800
    pixels: 25 ms against 0.8-1.5 s the other way round). The transposed result costs a
    strided pass where it is added up, though, about as much as a GEMM over L = 250 pixels:
    R-50's res5 3x3 at 13x19 (512x4608 over 247 pixels) spent 12 ms adding a 9 ms product.
    Short products run as they are (on an idle machine both ways were within 15% at R-50's
    shapes, neither side always ahead).
    """
    if b.shape[1] > a.shape[1] and a.shape[2] >= 4096:
        return (b @ a.transpose(0, 2, 1)).transpose(0, 2, 1)
    return a @ b.transpose(0, 2, 1)


def _add_product(total, product):
    """total + product, in place; the first product (total None) is the total itself (no
    zeroed array and no pass to add it: a third of grad_weight for one 13x19 image)."""
    if total is None:
        return np.ascontiguousarray(product)
    total += product
    return total


_scratch_store = threading.local()


def _scratch(size, dtype):
    """A flat work array of ``size`` elements, reused by later calls (one per thread)."""
    nbytes = size * np.dtype(dtype).itemsize
    buf = getattr(_scratch_store, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        _scratch_store.buf = buf = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype)


class _CPU:
    """The products of _Reference, for NumPy arrays, one GEMM per work unit.

    A unit is either a band of output rows of one large image, or several whole small images
    packed side by side (RoI heads: 7x7, 14x14 images by the hundred): the columns of image i
    fill columns [i*L, (i+1)*L) of one (G*K, nb*L) matrix, the output gradient is packed the
    same way, (G, Og, nb*L), and one GEMM does them all instead of nb thin ones.
    """

    # Unit size. On an idle machine any band from 4 MB up runs at the speed of one GEMM over
    # the whole image. But every band is one more BLAS call, each call wakes and joins BLAS's
    # threads, and on a busy machine (threads descheduled) that join costs milliseconds: 8 MB
    # bands ran 3-5x slower than one GEMM there, 64 MB bands within ~15%. The work buffer is
    # kept between calls (see _scratch) so that it is not page-faulted in again every time.
    band_bytes = 1 << 26
    min_band_columns = 1024       # never thinner GEMMs than this
    # Packs of small images. A pack's columns are written by im2col and read by the GEMM at
    # once, which pays while they are still in cache: packs of ~4 MB ran forward and
    # grad_weight of the classroom mask head (64 RoIs of 64 x 14 x 14) 20-25% faster than one
    # pack of all images, and grad_input (which reads the GEMM's output back for col2im) up to
    # 1.8x faster (1x1 2048->512 at 7x7). But a GEMM needs some width: a pack holds at least
    # min_pack_columns pixels (R-50's 256-channel mask head lost 25% in grad_weight with 2-image
    # packs). Measured on 1 thread of this 2-core machine (benchmarks/bench_train.py, bench_conv.py).
    pack_bytes = 1 << 22
    min_pack_columns = 4096

    @staticmethod
    def _is_pointwise(kh, kw, stride, padding):
        """1x1, stride 1, no padding: the columns are the image itself."""
        return kh == kw == 1 and stride == (1, 1) and padding == (0, 0)

    @classmethod
    def _bands(cls, Ho, Wo, K, target_bytes, itemsize):
        """Output-row bands [h0, h1) whose columns (K, (h1-h0)*Wo) take about target_bytes."""
        rows = max(1, min(Ho, target_bytes // max(1, K * Wo * itemsize)))
        rows = max(rows, min(Ho, -(-cls.min_band_columns // Wo)))   # GEMMs not too thin
        return [(h0, min(Ho, h0 + rows)) for h0 in range(0, Ho, rows)], rows

    @classmethod
    def _units(cls, N, Ho, Wo, R, P, itemsize):
        """Work units (n0, n1, h0, h1) -- images [n0, n1), output rows [h0, h1) -- and the
        scratch sizes (columns, packed output) in elements.

        R = G*K rows of columns and P = G*Og rows of packed output per pixel. If two or more
        whole images fit in pack_bytes (or are needed for min_pack_columns pixels), the batch
        is cut into equal groups of whole images; otherwise every image is a unit per band of
        rows (see _bands), nothing is packed.
        """
        L = Ho * Wo
        fit = max(cls.pack_bytes // max(1, (R + P) * L * itemsize), -(-cls.min_pack_columns // max(1, L)))
        if N >= 2 and fit >= 2:
            per = -(-N // -(-N // fit))               # ceil(N / number of units)
            units = [(n0, min(N, n0 + per), 0, Ho) for n0 in range(0, N, per)]
            return units, R * per * L, P * per * L
        bands, rows = cls._bands(Ho, Wo, R, cls.band_bytes, itemsize)
        return [(n, n + 1, h0, h1) for n in range(N) for h0, h1 in bands], R * rows * Wo, 0

    @staticmethod
    def _pack(a, n0, n1, p0, p1, buf):
        """a (N, G, M, L) -> pixels [p0, p1) of images [n0, n1) side by side, (G, M, nb*(p1-p0)).

        One image is a view (no copy); several are copied into buf.
        """
        if n1 - n0 == 1:
            return a[n0, :, :, p0:p1]
        G, M, width = a.shape[1], a.shape[2], p1 - p0
        packed = buf[:G * M * (n1 - n0) * width].reshape(G, M, n1 - n0, width)
        packed[...] = a[n0:n1, :, :, p0:p1].transpose(1, 2, 0, 3)
        return packed.reshape(G, M, -1)

    @staticmethod
    def _unpack(packed, out, bias=None):
        """Inverse of _pack for whole images: packed (G, M, nb*L) -> out (nb, G, M, L) [+ bias]."""
        nb, G, M, L = out.shape
        images = packed.reshape(G, M, nb, L).transpose(2, 0, 1, 3)
        if bias is None:
            out[...] = images
        else:
            np.add(images, bias, out=out)

    @classmethod
    def _columns(cls, x, n0, n1, h0, h1, Wo, buf, geometry):
        """The columns of images [n0, n1), output rows [h0, h1): (C*kh*kw, nb*width), image i
        in columns [i*width, (i+1)*width) (im2col writes straight into that column slice)."""
        kh, kw, stride, padding, dilation = geometry
        C, H, W = x.shape[1:]
        if cls._is_pointwise(kh, kw, stride, padding):   # the columns are the images themselves
            images = x[n0:n1].reshape(n1 - n0, 1, C, H * W)
            return cls._pack(images, 0, n1 - n0, h0 * Wo, h1 * Wo, buf)[0]
        R, width = C * kh * kw, (h1 - h0) * Wo
        cols = buf[:R * (n1 - n0) * width].reshape(R, -1)
        kernels = cpu_module("conv")                 # ext/conv.pyx
        for i, n in enumerate(range(n0, n1)):
            kernels.im2col(x[n], cols[:, i * width:(i + 1) * width], kh, kw, *stride,
                           *padding, *dilation, h0, Wo)
        return cols

    @classmethod
    def forward(cls, x, w, b, stride, padding, dilation, groups):
        if cls._is_winograd(x.shape, w.shape, stride, padding, dilation, groups):
            return cls._winograd_forward(x, _winograd_weights(w), b, padding)
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G, Og, K = groups, O // groups, Cg * kh * kw
        Ho, Wo = _conv_out_hw(H, W, kh, kw, stride, padding, dilation)
        wg = np.ascontiguousarray(w.reshape(G, Og, K))
        y = np.empty((N, G, Og, Ho * Wo), dtype=x.dtype)
        bias = None if b is None else b.reshape(G, Og, 1)
        if not cls._is_pointwise(kh, kw, stride, padding):
            x = np.ascontiguousarray(x)               # im2col reads C-ordered images
        units, ncols, nout = cls._units(N, Ho, Wo, G * K, G * Og, x.itemsize)
        buf = _scratch(ncols + nout, x.dtype)
        for n0, n1, h0, h1 in units:
            cols = cls._columns(x, n0, n1, h0, h1, Wo, buf[:ncols],
                                (kh, kw, stride, padding, dilation)).reshape(G, K, -1)
            if n1 - n0 == 1:                          # one image: the GEMM writes into y
                out = y[n0, :, :, h0 * Wo: h1 * Wo]                         # (G, Og, band)
                np.matmul(wg, cols, out=out)
                if bias is not None:
                    out += bias
            else:                                     # packed images: GEMM, then unpack
                packed = buf[ncols:ncols + G * Og * cols.shape[2]].reshape(G, Og, -1)
                cls._unpack(np.matmul(wg, cols, out=packed), y[n0:n1], bias)
        return y.reshape(N, O, Ho, Wo)

    @classmethod
    def grad_input(cls, gy, w, x_shape, stride, padding, dilation, groups):
        if cls._is_winograd(x_shape, w.shape, stride, padding, dilation, groups):
            # stride 1: dx is the correlation of dy (padded by 2 - p) with the kernel flipped in
            # space and transposed in its channels -- a forward convolution itself
            return cls._winograd_forward(gy, _winograd_weights(w, flipped=True), None,
                                         (2 - padding[0], 2 - padding[1]))
        N, O, Ho, Wo = gy.shape
        _, Cg, kh, kw = w.shape
        G, Og, K = groups, O // groups, Cg * kh * kw
        C, H, W = x_shape[1:]
        wt = w.reshape(G, Og, K).transpose(0, 2, 1)    # (G, K, Og), BLAS reads it transposed
        gy = gy.reshape(N, G, Og, Ho * Wo)
        units, ncols, nout = cls._units(N, Ho, Wo, G * K, G * Og, gy.itemsize)
        buf = _scratch(ncols + nout, gy.dtype)
        if cls._is_pointwise(kh, kw, stride, padding):     # dx is W^T @ dy itself
            gx = np.empty((N, G, K, H * W), dtype=gy.dtype)
            for n0, n1, h0, h1 in units:
                gyp = cls._pack(gy, n0, n1, h0 * Wo, h1 * Wo, buf[ncols:])
                if n1 - n0 == 1:
                    np.matmul(wt, gyp, out=gx[n0, :, :, h0 * Wo: h1 * Wo])
                else:
                    dx = np.matmul(wt, gyp, out=buf[:G * K * gyp.shape[2]].reshape(G, K, -1))
                    cls._unpack(dx, gx[n0:n1])
            return gx.reshape(N, C, H, W)
        kernels = cpu_module("conv")                 # ext/conv.pyx
        gx = np.zeros((N, C, H, W), dtype=gy.dtype)
        for n0, n1, h0, h1 in units:
            gyp = cls._pack(gy, n0, n1, h0 * Wo, h1 * Wo, buf[ncols:])    # (G, Og, nb*band)
            dcols = np.matmul(wt, gyp, out=buf[:G * K * gyp.shape[2]].reshape(G, K, -1))
            dcols, band = dcols.reshape(G * K, -1), (h1 - h0) * Wo
            for i, n in enumerate(range(n0, n1)):        # image i's columns back onto image n
                kernels.col2im(dcols[:, i * band:(i + 1) * band], gx[n], kh, kw, *stride,
                               *padding, *dilation, h0, Wo)
        return gx

    @classmethod
    def grad_weight(cls, gy, x, kernel_size, stride, padding, dilation, groups):
        if cls._is_winograd(x.shape, (gy.shape[1], x.shape[1]) + tuple(kernel_size), stride, padding, dilation,
                            groups):
            return cls._winograd_grad_weight(gy, x, padding)
        N, C, H, W = x.shape
        O, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
        (kh, kw), G = kernel_size, groups
        Cg, Og = C // G, O // G
        K = Cg * kh * kw
        gy = gy.reshape(N, G, Og, Ho * Wo)
        gw = None
        if not cls._is_pointwise(kh, kw, stride, padding):
            x = np.ascontiguousarray(x)
        units, ncols, nout = cls._units(N, Ho, Wo, G * K, G * Og, x.itemsize)
        buf = _scratch(ncols + nout, x.dtype)
        for n0, n1, h0, h1 in units:
            cols = cls._columns(x, n0, n1, h0, h1, Wo, buf[:ncols],
                                (kh, kw, stride, padding, dilation)).reshape(G, K, -1)
            gyp = cls._pack(gy, n0, n1, h0 * Wo, h1 * Wo, buf[ncols:])    # (G, Og, nb*band)
            gw = _add_product(gw, _matmul_abt(gyp, cols))   # the sum over images is inside the GEMM
        if gw is None:                          # no images
            gw = np.zeros((G, Og, K), dtype=gy.dtype)
        return gw.reshape(O, Cg, kh, kw)

    # ---- Winograd F(2x2, 3x3) ------------------------------------------------------------
    @classmethod
    def _is_winograd(cls, x_shape, w_shape, stride, padding, dilation, groups):
        """3x3, stride 1, no dilation, one group, padding <= 2 (grad_input is then a forward
        with padding 2 - p), the kernels built, and enough tiles: at least a quarter of the
        channels. (The 16 GEMMs are (O x C) @ (C x tiles); with few tiles they are too thin:
        R-50's res5 3x3 at 13x19, 70 tiles of 512 channels, ran 1.3x slower than im2col, at
        19x25 or with 256 channels 0.85x.)"""
        if not (tuple(w_shape[2:]) == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1
                and max(padding) <= 2 and cpu_module("winograd") is not None):
            return False
        Ho, Wo = x_shape[2] + 2 * padding[0] - 2, x_shape[3] + 2 * padding[1] - 2
        tiles = x_shape[0] * ((Ho + 1) // 2) * ((Wo + 1) // 2)
        return Ho >= 1 and Wo >= 1 and 4 * tiles >= max(w_shape[0], w_shape[1])

    @classmethod
    def _winograd_units(cls, N, th, tw, rows, itemsize):
        """Work units (n0, n1, i0, i1) -- images [n0, n1), tile rows [i0, i1) -- and the most
        tiles a unit holds. rows = 16 (C + O): the transformed values per tile.

        Small images go several to a unit: about pack_bytes of tiles, but at least
        min_pack_columns / 4 tiles per GEMM (a tile stands for 4 output pixels), in equal
        groups. An image whose tiles exceed pack_bytes, and that has enough tiles for GEMMs of
        that width, goes alone in bands of tile rows of that size.
        """
        tiles, min_tiles = th * tw, -(-cls.min_pack_columns // 4)
        if rows * tiles * itemsize > cls.pack_bytes and tiles > min_tiles:
            band = max(cls.pack_bytes // (rows * tw * itemsize), -(-min_tiles // tw), 1)
            band = min(th, -(-th // -(-th // band)))                # equal bands
            return [(n, n + 1, i0, min(th, i0 + band)) for n in range(N) for i0 in range(0, th, band)], band * tw
        fit = max(cls.pack_bytes // (rows * tiles * itemsize), -(-min_tiles // tiles), 1)
        per = -(-N // -(-N // min(N, fit)))                         # equal groups of images
        return [(n0, min(N, n0 + per), 0, th) for n0 in range(0, N, per)], per * tiles

    @classmethod
    def _winograd_forward(cls, x, U, b, padding):
        """y = conv(x, w) + b, 3x3, stride 1, from U = _winograd_weights(w) (16, O, C): per unit,
        V = B^T d B of every tile, M[xi] = U[xi] @ V[xi] for the 16 tile positions xi,
        y = A^T M A (ext/winograd.pyx)."""
        kernels = cpu_module("winograd")
        N, C, H, W = x.shape
        O = U.shape[1]
        ph, pw = padding
        Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
        th, tw = (Ho + 1) // 2, (Wo + 1) // 2
        x = np.ascontiguousarray(x)
        y = np.empty((N, O, Ho, Wo), dtype=x.dtype)
        bias = np.empty(0, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
        units, most = cls._winograd_units(N, th, tw, 16 * (C + O), x.itemsize)
        buf = _scratch(16 * (C + O) * most, x.dtype)
        for n0, n1, i0, i1 in units:
            T = (n1 - n0) * (i1 - i0) * tw
            V = buf[:16 * C * T].reshape(16, C, n1 - n0, i1 - i0, tw)
            kernels.input_tiles(x[n0:n1], V, ph, pw, i0)
            M = np.matmul(U, V.reshape(16, C, T), out=buf[16 * C * T:16 * (C + O) * T].reshape(16, O, T))
            kernels.output_tiles(M.reshape(16, O, n1 - n0, i1 - i0, tw), y[n0:n1], bias, i0)
        return y

    @classmethod
    def _winograd_grad_weight(cls, gy, x, padding):
        """dW = G^T [ sum over tiles of (A dY A^T) * (B^T d B) ] G: the 16 products
        (A dY A^T)[xi] @ V[xi]^T, summed over the units, then back to 3x3."""
        kernels = cpu_module("winograd")
        N, C = x.shape[:2]
        O, Ho, Wo = gy.shape[1:]
        th, tw = (Ho + 1) // 2, (Wo + 1) // 2
        x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
        units, most = cls._winograd_units(N, th, tw, 16 * (C + O), x.itemsize)
        buf = _scratch(16 * (C + O) * most, x.dtype)
        gu = None
        for n0, n1, i0, i1 in units:
            T = (n1 - n0) * (i1 - i0) * tw
            V = buf[:16 * C * T].reshape(16, C, n1 - n0, i1 - i0, tw)
            kernels.input_tiles(x[n0:n1], V, *padding, i0)
            Wt = buf[16 * C * T:16 * (C + O) * T].reshape(16, O, n1 - n0, i1 - i0, tw)
            kernels.gradient_tiles(gy[n0:n1], Wt, i0)
            gu = _add_product(gu, _matmul_abt(Wt.reshape(16, O, T), V.reshape(16, C, T)))
        return _winograd_weights_grad(gu)


# Winograd F(2x2, 3x3)'s filter transform U = G g G^T, as one matrix on the flattened 3x3
# filter: vec(G g G^T) = (G kron G) vec(g), row-major; its entries (products of 0, +-1/2, 1)
# are exact in float32.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_WINOGRAD_GG = {np.dtype(t): np.kron(_WINOGRAD_G, _WINOGRAD_G).astype(t) for t in (np.float32, np.float64)}


def _winograd_weights(w, flipped=False):
    """U (16, O, C): the 4x4 transform G w[o, c] G^T of every 3x3 filter, position-major, as one
    (16, 9) @ (9, O*C) product (BLAS reads w transposed; a transposed copy of the product took
    10x longer than the product itself at 256 channels).

    flipped: U (16, C, O) of the filters flipped in space with their channels transposed,
    w[o, c, ::-1, ::-1] at [c, o] (grad_input): the flip reverses the 9 taps, i.e. the columns
    of G kron G, and the transposed channels are a view (BLAS reads each U[xi] transposed).
    """
    O, C = w.shape[:2]
    GG = _WINOGRAD_GG[w.dtype]
    U = ((GG[:, ::-1] if flipped else GG) @ w.reshape(O * C, 9).T).reshape(16, O, C)
    return U.transpose(0, 2, 1) if flipped else U


def _winograd_weights_grad(gu):
    """The adjoint of _winograd_weights: (16, O, C) -> (O, C, 3, 3), G^T gu[:, o, c] G."""
    O, C = gu.shape[1:]
    return (gu.reshape(16, O * C).T @ _WINOGRAD_GG[gu.dtype]).reshape(O, C, 3, 3)


def _use_cpu(a):
    """NumPy float32/float64 arrays take the compiled path (where ext/conv.pyx is built); CuPy
    (and float16) the reference."""
    return isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) \
        and cpu_module("conv") is not None


def _conv_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv(x, w) + b on raw arrays (b may be None)."""
    if _use_cpu(x):
        return _CPU.forward(x, w, b, stride, padding, dilation, groups)
    y = _Reference.forward(x, w, stride, padding, dilation, groups)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _conv_grad_input(gy, w, x_shape, stride, padding, dilation, groups):
    impl = _CPU if _use_cpu(gy) else _Reference
    return impl.grad_input(gy, w, x_shape, stride, padding, dilation, groups)


def _conv_grad_weight(gy, x, kernel_size, stride, padding, dilation, groups):
    impl = _CPU if _use_cpu(gy) else _Reference
    return impl.grad_weight(gy, x, kernel_size, stride, padding, dilation, groups)


def _bias_grad(gy):
    """db[o] = sum_{n, h, w} dy[n, o, h, w]."""
    return gy.sum(axis=(0, 2, 3))          # also right for an empty batch (N = 0)


def _needs_grad(function, index):
    inputs = getattr(function, "inputs", ())
    return index >= len(inputs) or inputs[index].requires_grad


# ---------------------------------------------------------------------------------------
# the ops
# ---------------------------------------------------------------------------------------
class Conv2d(Function):
    """$y = w \\star x + b$ (see the module docstring). Inputs: x, w[, b]."""

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        return _conv_forward(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, gy):
        args = self.stride, self.padding, self.dilation, self.groups
        gx = _conv_grad_input(gy, self.w, self.x.shape, *args) if _needs_grad(self, 0) else None
        gw = _conv_grad_weight(gy, self.x, self.w.shape[2:], *args) if _needs_grad(self, 1) else None
        if not self.has_bias:
            return gx, gw
        return gx, gw, _bias_grad(gy)


class ConvTranspose2d(Function):
    """The adjoint of Conv2d in its input: $y = $ col2im$(W^T x) + b$. Inputs: x, w[, b].

    x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw), y (N, C_out, Ho, Wo) with
    Ho = (H - 1) sh - 2 ph + dh (kh - 1) + output_padding_h + 1.
    """

    def __init__(self, stride, padding, output_padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.output_padding = output_padding

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        N, _, H, W = x.shape
        kh, kw = w.shape[2:]
        Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + self.output_padding[0] + 1
        Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + self.output_padding[1] + 1
        y_shape = (N, w.shape[1] * self.groups, Ho, Wo)
        y = _conv_grad_input(x, w, y_shape, self.stride, self.padding, self.dilation, self.groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        args = self.stride, self.padding, self.dilation, self.groups
        gx = None
        if _needs_grad(self, 0):
            H, W = self.x.shape[2:]   # output_padding >= stride gives conv2d extra rows: crop
            gx = _conv_forward(gy, self.w, None, *args)[:, :, :H, :W]
        # the roles of conv2d swap: x plays the output gradient, gy the image
        gw = _conv_grad_weight(self.x, gy, self.w.shape[2:], *args) if _needs_grad(self, 1) else None
        if not self.has_bias:
            return gx, gw
        return gx, gw, _bias_grad(gy)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution: x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) or None.

    Returns (N, O, Ho, Wo), Ho = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1. stride,
    padding and dilation are ints or (h, w) pairs; torch.nn.functional.conv2d semantics.
    """
    stride, padding, dilation = _check_conv2d(x, weight, bias, stride, padding, dilation, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(stride, padding, dilation, groups)(*inputs)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution ("deconvolution"): x (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw).

    The gradient of conv2d with respect to its input, used as a layer: each input pixel
    scatters ``x[n, c] * w[c]`` onto a stride-spaced grid. Returns (N, C_out, Ho, Wo) with
    Ho = (H - 1) sh - 2 ph + dh (kh - 1) + output_padding_h + 1 (torch semantics; note the
    argument order, output_padding before groups, as in torch).
    """
    stride, padding, output_padding, dilation = _check_conv_transpose2d(
        x, weight, bias, stride, padding, output_padding, groups, dilation)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ConvTranspose2d(stride, padding, output_padding, dilation, groups)(*inputs)


# ---------------------------------------------------------------------------------------
# the checks at the door (messages name the argument and the value)
# ---------------------------------------------------------------------------------------
def _check_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """conv2d's arguments -> (stride, padding, dilation) as pairs of ints."""
    op = "conv2d"
    xa, wa = as_array(x), as_array(weight)
    ba = None if bias is None else as_array(bias)
    stride, padding = int_pair(stride, "stride", op, 1), int_pair(padding, "padding", op, 0)
    dilation = int_pair(dilation, "dilation", op, 1)
    _check_conv_args(op, xa, wa, ba, groups, wa.shape[0] if wa.ndim == 4 else None)
    N, C, H, W = xa.shape
    O, Cg, kh, kw = wa.shape
    if O % groups:
        raise ValueError(f"{op}: weight has {O} output channels, not divisible by groups={groups}")
    if Cg * groups != C:
        raise ValueError(f"{op}: weight has {Cg} input channels per group but input has {C} "
                         f"channels with groups={groups}")
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: weight has an empty kernel, shape {tuple(wa.shape)}")
    Ho, Wo = _conv_out_hw(H, W, kh, kw, stride, padding, dilation)
    if not (1 <= Ho <= INT32_MAX and 1 <= Wo <= INT32_MAX):
        raise ValueError(f"{op}: output size would be {Ho}x{Wo} for input {H}x{W}, kernel {kh}x{kw}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}")
    return stride, padding, dilation


def _check_conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation):
    """conv_transpose2d's arguments -> (stride, padding, output_padding, dilation) as pairs."""
    op = "conv_transpose2d"
    xa, wa = as_array(x), as_array(weight)
    ba = None if bias is None else as_array(bias)
    stride, padding = int_pair(stride, "stride", op, 1), int_pair(padding, "padding", op, 0)
    dilation = int_pair(dilation, "dilation", op, 1)
    output_padding = int_pair(output_padding, "output_padding", op, 0)
    out_channels = None
    if wa.ndim == 4 and is_int(groups):
        out_channels = wa.shape[1] * groups
    _check_conv_args(op, xa, wa, ba, groups, out_channels)
    N, C, H, W = xa.shape
    Cin, Cout_g, kh, kw = wa.shape
    if Cin != C:
        raise ValueError(f"{op}: weight has {Cin} input channels (dim 0) but input has {C} channels")
    if C % groups:
        raise ValueError(f"{op}: input has {C} channels, not divisible by groups={groups}")
    for k in range(2):
        if output_padding[k] >= max(stride[k], dilation[k]):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than either "
                             f"stride {stride} or dilation {dilation}")
    Ho = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    Wo = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    if not (1 <= Ho <= INT32_MAX and 1 <= Wo <= INT32_MAX):
        raise ValueError(f"{op}: output size would be {Ho}x{Wo} for input {H}x{W}, kernel {kh}x{kw}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}")
    return stride, padding, output_padding, dilation


def _check_floating(op, **arrays):
    for name, a in arrays.items():
        if a is not None and a.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a floating array, got dtype {a.dtype}")


def _check_conv_args(op, x, w, b, groups, out_channels):
    """Shape checks shared by conv2d and conv_transpose2d (messages name the values)."""
    _check_floating(op, input=x, weight=w, bias=b)
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D, got shape {tuple(w.shape)}")
    positive_int(groups, "groups", op)
    if b is not None and tuple(b.shape) != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},), got {tuple(b.shape)}")


# ---------------------------------------------------------------------------------------
# gradient checks (float64, full Jacobian; kept small)
# ---------------------------------------------------------------------------------------
register_case("conv2d", "3x3_pad1_bias", lambda x, w, b: conv2d(x, w, b, padding=1),
              lambda r: [r.standard_normal((2, 3, 5, 6)), r.standard_normal((4, 3, 3, 3)),
                         r.standard_normal(4)])
register_case("conv2d", "stride2_pad1_groups2_nobias",
              lambda x, w: conv2d(x, w, stride=2, padding=1, groups=2),
              lambda r: [r.standard_normal((2, 4, 7, 7)), r.standard_normal((6, 2, 3, 3))])
register_case("conv2d", "dilation2_stride_hw_pad_hw",
              lambda x, w, b: conv2d(x, w, b, stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
              lambda r: [r.standard_normal((1, 2, 7, 8)), r.standard_normal((3, 2, 3, 2)),
                         r.standard_normal(3)])
register_case("conv2d", "1x1_stride2_noncontiguous",
              lambda x, w, b: conv2d(x, w, b, stride=2),
              lambda r: [r.standard_normal((2, 3, 9, 14))[..., ::2], r.standard_normal((4, 3, 1, 1)),
                         r.standard_normal(4)])
register_case("conv2d", "1x1_pointwise_groups3",
              lambda x, w: conv2d(x, w, groups=3),
              lambda r: [r.standard_normal((2, 6, 4, 5)), r.standard_normal((9, 2, 1, 1))])
register_case("conv_transpose2d", "2x2_stride2_bias",
              lambda x, w, b: conv_transpose2d(x, w, b, stride=2),
              lambda r: [r.standard_normal((2, 3, 4, 3)), r.standard_normal((3, 2, 2, 2)),
                         r.standard_normal(2)])
register_case("conv_transpose2d", "4x4_stride2_pad1_groups2_outpad",
              lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2),
              lambda r: [r.standard_normal((1, 4, 3, 4))[:, :, :, ::-1],
                         r.standard_normal((4, 1, 4, 4))])
register_case("conv_transpose2d", "3x3_dilation2_outpad_ge_stride",
              lambda x, w: conv_transpose2d(x, w, padding=1, output_padding=(1, 0), dilation=2),
              lambda r: [r.standard_normal((1, 2, 3, 4)), r.standard_normal((2, 2, 3, 3))])
register_case("conv_transpose2d", "3x3_dilation2_stride_hw",
              lambda x, w, b: conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=2),
              lambda r: [r.standard_normal((1, 2, 3, 4)), r.standard_normal((2, 3, 3, 3)),
                         r.standard_normal(3)])
