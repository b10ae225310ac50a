"""RoIPool (Girshick, Fast R-CNN, 2015): the quantized max-pooling that RoIAlign replaces.

Mask R-CNN's Section 3 describes its two quantizations, which this op keeps on purpose (Table
2c/2d compare it with RoIAlign). With exactly the conventions of ``torchvision.ops.roi_pool``,
for RoI k = [b, x1, y1, x2, y2] and ``spatial_scale`` s:

    x_start = round(x1*s),  x_end = round(x2*s)          round half away from zero: "[x/16]"
    roi_w = max(x_end - x_start + 1, 1),  bin_w = roi_w / PW                (y likewise)
    bin (ph, pw) = rows [floor(ph*bin_h), ceil((ph+1)*bin_h)) + y_start
                   x cols [floor(pw*bin_w), ceil((pw+1)*bin_w)) + x_start,  clipped to the map
    out[k, c, ph, pw] = max of input[b, c] over the bin      (0 for an empty bin)

The box is snapped to whole pixels (x_start..x_end inclusive) and each bin to whole pixels again
(floor / ceil), so neighbouring bins may overlap by a pixel. The gradient flows only to the
arg-max pixel of each bin (the first one, in row-major order, on ties), and is summed where
several bins or RoIs chose the same pixel. (One deliberate difference from torchvision: the
running max starts at the bin's first value rather than at -FLT_MAX, which only matters for
values below -3.4e38.)

CPU: Cython (ext/roi_pool.pyx); GPU: CUDA (ext/roi_pool.cu) through cupy.RawModule;
:func:`roi_pool_reference`: plain NumPy/CuPy for reading and testing. The argument checks are
RoIAlign's (minimrcnn/ops/checks.py): boxes with x2 < x1 or y2 < y1 are refused.
"""
import numpy as np

from .. import _ext
from ..autograd import Function
from ..autograd.registry import register_case
from ..autograd.tensor import as_array
from ..backend import as_numpy, get_array_module
from .checks import check_roi_args

__all__ = ["roi_pool", "RoIPool", "roi_pool_reference", "roi_pool_reference_backward",
           "quantize_boxes"]

# |round(coordinate * spatial_scale)| must stay below this (integer bin arithmetic in the kernels)
MAX_COORDINATE = 1 << 28


def _round_half_away(v):
    """C's round(): halves go away from zero (NumPy's np.round sends them to the even integer)."""
    a = np.abs(v)
    r = np.floor(a)
    r = r + (a - r >= 0.5)            # a - r is exact, so no double rounding near .5
    return np.copysign(r, v)


def quantize_boxes(rois, spatial_scale, op="roi_pool"):
    """RoIPool's quantization: (K, 4) int64 boxes [x_start, y_start, x_end, y_end] on the
    feature map, round(coordinate * spatial_scale) computed in the rois' dtype. Host arrays."""
    r = as_numpy(rois)
    scaled = r[:, 1:] * r.dtype.type(spatial_scale)
    bad = ~(np.abs(scaled) < MAX_COORDINATE)
    if bad.any():
        k, j = np.argwhere(bad)[0]
        raise ValueError(f"{op}: rois[{k}, {j + 1}] = {r[k, j + 1]:g} times spatial_scale="
                         f"{spatial_scale} is out of range (|value| < 2^28)")
    return _round_half_away(scaled).astype(np.int64)


# ---- the op ------------------------------------------------------------------------------------

class RoIPool(Function):
    """RoIPool as an autograd node: ``forward(input, rois)``, differentiable in ``input``.

    Takes already-checked arguments (see :func:`roi_pool`).
    """

    def __init__(self, output_size, spatial_scale=1.0):
        self.output_size = tuple(output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, x, rois):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        PH, PW = self.output_size
        K = len(rois)
        self.input_shape = x.shape
        self.rois = rois
        if K == 0 or C == 0:
            self.argmax = xp.full((K, C, PH, PW), -1, dtype=np.int32)
            return xp.zeros((K, C, PH, PW), dtype=x.dtype)
        if xp is np:
            ext = _ext.cpu_module("roi_pool")
            if ext is None:
                out, self.argmax = roi_pool_reference(x, rois, self.output_size, self.spatial_scale)
                return out
            out, self.argmax = ext.roi_pool_forward(np.ascontiguousarray(x),
                                                    np.ascontiguousarray(rois), PH, PW,
                                                    self.spatial_scale)
            return out
        x = xp.ascontiguousarray(x)
        out = xp.empty((K, C, PH, PW), dtype=x.dtype)
        self.argmax = xp.empty((K, C, PH, PW), dtype=np.int32)
        _ext.launch("roi_pool", "roi_pool_forward", x.dtype, out.size,
                     (x, xp.ascontiguousarray(rois), x.dtype.type(self.spatial_scale), np.int32(C),
                      np.int32(H), np.int32(W), np.int32(PH), np.int32(PW), out, self.argmax))
        return out

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        N, C, H, W = self.input_shape
        K = len(self.rois)
        if K == 0 or C == 0:
            return xp.zeros(self.input_shape, dtype=grad_output.dtype), None
        if xp is np:
            ext = _ext.cpu_module("roi_pool")
            if ext is None:
                return roi_pool_reference_backward(grad_output, self.argmax, self.rois,
                                                   self.input_shape), None
            grad_input = ext.roi_pool_backward(np.ascontiguousarray(grad_output), self.argmax,
                                               np.ascontiguousarray(self.rois), N, H, W)
            return grad_input, None
        grad_output = xp.ascontiguousarray(grad_output)
        grad_input = xp.zeros(self.input_shape, dtype=grad_output.dtype)
        _ext.launch("roi_pool", "roi_pool_backward", grad_output.dtype, grad_output.size,
                     (grad_output, self.argmax, xp.ascontiguousarray(self.rois), np.int32(C),
                      np.int32(H), np.int32(W), np.int32(grad_output.shape[2]),
                      np.int32(grad_output.shape[3]), grad_input))
        return grad_input, None


def roi_pool(input, rois, output_size, spatial_scale=1.0):
    """RoIPool: (N, C, H, W) features and (K, 5) RoIs -> (K, C, PH, PW); torchvision semantics.

    Arguments as :func:`minimrcnn.ops.roi_align` (input float32/float64 Tensor or array; rois
    rows [batch_index, x1, y1, x2, y2] in image coordinates; output_size int or (PH, PW)).
    """
    _, rois, size, scale = check_roi_args("roi_pool", input, rois, output_size, spatial_scale)
    quantize_boxes(rois, scale)               # refuses coordinates the int kernels cannot hold
    return RoIPool(size, scale)(input, rois)


# ---- the reference (for reading and testing) ---------------------------------------------------

def _bin_edges(start, end, size, pooled, dtype):
    """[lo, hi) of each bin along one axis, clipped to [0, size]."""
    dt = np.dtype(dtype).type
    bin_size = dt(max(end - start + 1, 1)) / dt(pooled)
    i = np.arange(pooled, dtype=dtype)
    lo = np.clip(np.floor(i * bin_size).astype(np.int64) + start, 0, size)
    hi = np.clip(np.ceil((i + dt(1)) * bin_size).astype(np.int64) + start, 0, size)
    return lo, hi


def roi_pool_reference(input, rois, output_size, spatial_scale=1.0):
    """RoIPool in plain NumPy/CuPy, one bin at a time (vectorized over channels).

    Returns ``(output (K, C, PH, PW), argmax (K, C, PH, PW) int32)``; argmax holds y * W + x of
    the max in ``input[b, c]``, or -1 for an empty bin.
    """
    x, rois, size, scale = check_roi_args("roi_pool", input, rois, output_size, spatial_scale)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    PH, PW = size
    boxes = quantize_boxes(rois, scale)
    batch = as_numpy(rois)[:, 0].astype(np.int64)
    out = xp.zeros((len(boxes), C, PH, PW), dtype=x.dtype)
    argmax = xp.full((len(boxes), C, PH, PW), -1, dtype=np.int32)
    for k, (x_start, y_start, x_end, y_end) in enumerate(boxes):
        rows = _bin_edges(y_start, y_end, H, PH, x.dtype)
        cols = _bin_edges(x_start, x_end, W, PW, x.dtype)
        for ph in range(PH):
            h0, h1 = int(rows[0][ph]), int(rows[1][ph])
            for pw in range(PW):
                w0, w1 = int(cols[0][pw]), int(cols[1][pw])
                if h1 <= h0 or w1 <= w0:
                    continue
                window = x[batch[k], :, h0:h1, w0:w1].reshape(C, -1)       # (C, h*w)
                j = window.argmax(axis=1)                                  # first max
                out[k, :, ph, pw] = window[xp.arange(C), j]
                argmax[k, :, ph, pw] = (h0 + j // (w1 - w0)) * W + w0 + j % (w1 - w0)
    return out, argmax


def roi_pool_reference_backward(grad_output, argmax, rois, input_shape):
    """Gradient of RoIPool:
    grad_input[b, c].flat[argmax[k, c, ph, pw]] += grad_output[k, c, ph, pw]."""
    g = as_array(grad_output)
    xp = get_array_module(g)
    N, C, H, W = input_shape
    batch = xp.asarray(as_numpy(rois)[:, 0].astype(np.int64))
    grad_input = xp.zeros((N, C, H * W), dtype=g.dtype)
    K = g.shape[0]
    kk, cc = xp.meshgrid(xp.arange(K), xp.arange(C), indexing="ij")        # (K, C)
    flat = argmax.reshape(K, C, -1)
    keep = flat >= 0
    image = xp.broadcast_to(batch[kk][..., None], flat.shape)
    channel = xp.broadcast_to(cc[..., None], flat.shape)
    values = g.reshape(K, C, -1)
    if xp is np:
        np.add.at(grad_input, (image[keep], channel[keep], flat[keep]), values[keep])
    else:
        import cupyx
        cupyx.scatter_add(grad_input, (image[keep], channel[keep], flat[keep]), values[keep])
    return grad_input.reshape(input_shape)


# ---- gradient checks ---------------------------------------------------------------------------
# distinct, well-separated values (a shuffled ramp, steps of 0.1 >> eps) so that no argmax flips
# under the finite-difference step; boxes inside, partly outside, tiny, on both images.

_GRAD_ROIS = np.array([[0, 2.0, 3.0, 17.0, 14.0],
                       [1, -6.0, -5.0, 9.0, 10.0],
                       [1, 15.0, 13.0, 33.0, 30.0],
                       [0, 10.2, 8.3, 10.9, 9.1],
                       [1, 5.0, 6.0, 5.0, 6.0]])


def _distinct_input(rng):
    shape = (2, 3, 6, 7)
    return [rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + 0.05]


register_case("roi_pool", "scale0.25_2x3", lambda x: roi_pool(x, _GRAD_ROIS, (2, 3), 0.25),
              _distinct_input)
register_case("roi_pool", "scale0.5_3x3", lambda x: roi_pool(x, _GRAD_ROIS, 3, 0.5),
              _distinct_input)
