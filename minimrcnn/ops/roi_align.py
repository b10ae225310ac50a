"""RoIAlign (He et al., 2017, Section 3): RoI features without quantization.

RoIPool rounds an RoI to the feature grid and rounds its bins to pixels; the features it
extracts are misaligned with the RoI by up to a pixel of the feature map (16 image pixels at
stride 16). RoIAlign keeps every coordinate real ("x/16 instead of [x/16]"): it cuts the RoI into
PH x PW equal bins, reads the feature map at a few regularly spaced points in each bin by bilinear
interpolation, and averages them.

The math, with exactly the conventions of ``torchvision.ops.roi_align``. For RoI
k = [b, x1, y1, x2, y2] (input-image coordinates; ``spatial_scale`` s maps them onto the feature
map) and o = 0.5 if ``aligned`` else 0:

    y0 = y1*s - o,   roi_h = (y2*s - o) - y0   (forced >= 1 when not aligned),   bin_h = roi_h / PH
    gh = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / PH)           (x likewise)
    y(ph, iy) = y0 + ph*bin_h + (iy + 1/2) * bin_h / gh                      0 <= iy < gh

    out[k, c, ph, pw] = 1 / max(gh*gw, 1) * sum_{iy, ix} bilinear(input[b, c], y(ph, iy), x(pw, ix))

where bilinear() uses pixel centres at integer coordinates, is 0 for a sample with y < -1,
y > H, x < -1 or x > W, reads row 0 for -1 <= y <= 0 and the last row for y >= H - 1 (x
likewise). ``aligned=True`` shifts the box by half a pixel so that a pixel's centre sits at
i + 0.5 -- the correct alignment, used by Detectron2; ``aligned=False`` is the original
Mask R-CNN (and torchvision maskrcnn_resnet50_fpn) convention.

The gradient is the transpose: each output gradient is scattered back to the pixels of its
samples with the same bilinear weights, divided by the count. It is taken with respect to the
input only; RoIs are constants, as in torchvision.

Three implementations of one function:

* CPU: the Cython kernel ``minimrcnn._ext.roi_align`` (ext/roi_align.pyx), parallel (OpenMP),
  with torchvision's per-RoI table of bilinear positions and weights reused across channels.
* GPU: CUDA kernels (ext/roi_align.cu) compiled at first use by ``cupy.RawModule``.
* :func:`roi_align_reference`: NumPy/CuPy written for reading. Since the sample grid is a
  product of a y-grid and an x-grid and the boundary rules act on y and x separately, the
  bilinear weights of one RoI factor into two small interpolation matrices and RoIAlign is

      out[k, c] = A_y @ input[b, c] @ A_x.T / (gh*gw)       A_y: (PH, H),  A_x: (PW, W)

  (and its gradient is  grad_input[b, c] += A_y.T @ grad_out[k, c] @ A_x / (gh*gw)).

Input checks (minimrcnn/ops/checks.py, shared with roi_pool and roi_warp): ``input`` (N, C, H, W) float32/float64 with
H, W >= 1; ``rois`` (K, 5), cast to the input's dtype, with an integral batch index in [0, N),
finite coordinates and x1 <= x2, y1 <= y2. torchvision accepts inverted boxes (and makes them
1x1 when not aligned); here they are an error, since no detector stage produces them and an
inverted box is almost always a swapped-coordinates bug (xywh passed as xyxy, say). Empty
boxes (x1 == x2) are allowed. K = 0 gives an empty (0, C, PH, PW) result.
"""
import numpy as np

from .. import _ext
from ..autograd import Function
from ..autograd.registry import register_case
from ..autograd.tensor import as_array
from ..backend import as_numpy, get_array_module
from .checks import check_align_args, check_roi_args

__all__ = ["roi_align", "RoIAlign", "roi_align_reference", "roi_align_reference_backward"]

# a single RoI may not ask for more bilinear samples than this (PH * PW * gh * gw); see
# ext/roi_align.pyx, which refuses the same
MAX_SAMPLES_PER_ROI = 1 << 24


def _roi_geometry(rois, spatial_scale, output_size, sampling_ratio, aligned):
    """Per RoI, in the rois' dtype and with the kernels' order of operations (host arrays):
    batch index, (y0, x0), (bin_h, bin_w) and the sampling grid (gh, gw)."""
    r = as_numpy(rois)
    dt = r.dtype.type
    PH, PW = output_size
    s, o = dt(spatial_scale), dt(0.5 if aligned else 0.0)
    x0, y0 = r[:, 1] * s - o, r[:, 2] * s - o
    roi_w, roi_h = (r[:, 3] * s - o) - x0, (r[:, 4] * s - o) - y0
    if not aligned:                       # malformed RoIs are forced to be at least 1x1
        roi_w, roi_h = np.maximum(roi_w, dt(1)), np.maximum(roi_h, dt(1))
    finite = np.isfinite(x0) & np.isfinite(y0) & np.isfinite(roi_w) & np.isfinite(roi_h)
    if not finite.all():
        k = int(np.argmin(finite))
        raise ValueError(f"roi_align: rois[{k}] = {r[k].tolist()} scaled by spatial_scale="
                         f"{spatial_scale} is not finite")
    if sampling_ratio > 0:
        gh = gw = np.full(len(r), float(sampling_ratio))
    else:
        gh = np.maximum(np.ceil(roi_h / dt(PH)), 0).astype(np.float64)
        gw = np.maximum(np.ceil(roi_w / dt(PW)), 0).astype(np.float64)
    samples = gh * gw * PH * PW
    if len(r) and samples.max() > MAX_SAMPLES_PER_ROI:
        k = int(np.argmax(samples))
        raise ValueError(f"roi_align: rois[{k}] = {r[k].tolist()} needs a {gh[k]:.0f} x "
                         f"{gw[k]:.0f} sampling grid per bin ({samples[k]:.0f} samples); pass a "
                         f"fixed sampling_ratio or check the box")
    return (r[:, 0].astype(np.int64), y0, x0, roi_h / dt(PH), roi_w / dt(PW),
            gh.astype(np.int64), gw.astype(np.int64))


# ---- kernels -----------------------------------------------------------------------------------

def _forward(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    xp = get_array_module(x)
    N, C, H, W = x.shape
    PH, PW = output_size
    K = len(rois)
    if K == 0 or C == 0:
        return xp.zeros((K, C, PH, PW), dtype=x.dtype)
    if xp is np:
        ext = _ext.cpu_module("roi_align")
        if ext is None:
            return roi_align_reference(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
        return ext.roi_align_forward(np.ascontiguousarray(x), np.ascontiguousarray(rois), PH, PW,
                                     spatial_scale, sampling_ratio, aligned)
    _roi_geometry(rois, spatial_scale, output_size, sampling_ratio, aligned)  # bounds the grid
    x = xp.ascontiguousarray(x)
    rois = xp.ascontiguousarray(rois)
    out = xp.empty((K, C, PH, PW), dtype=x.dtype)
    _ext.launch("roi_align", "roi_align_forward", x.dtype, out.size,
                 (x, rois, x.dtype.type(spatial_scale), np.int32(C), np.int32(H), np.int32(W),
                  np.int32(PH), np.int32(PW), np.int32(sampling_ratio), np.int32(aligned), out))
    return out


def _backward(grad_output, rois, input_shape, spatial_scale, sampling_ratio, aligned):
    xp = get_array_module(grad_output)
    N, C, H, W = input_shape
    K, _, PH, PW = grad_output.shape
    if K == 0 or C == 0:
        return xp.zeros(input_shape, dtype=grad_output.dtype)
    if xp is np:
        ext = _ext.cpu_module("roi_align")
        if ext is None:
            return roi_align_reference_backward(grad_output, rois, input_shape, (PH, PW),
                                                spatial_scale, sampling_ratio, aligned)
        return ext.roi_align_backward(np.ascontiguousarray(grad_output), np.ascontiguousarray(rois),
                                      N, H, W, spatial_scale, sampling_ratio, aligned)
    grad_output = xp.ascontiguousarray(grad_output)
    grad_input = xp.zeros(input_shape, dtype=grad_output.dtype)
    _ext.launch("roi_align", "roi_align_backward", grad_output.dtype, grad_output.size,
                 (grad_output, xp.ascontiguousarray(rois), grad_output.dtype.type(spatial_scale),
                  np.int32(C), np.int32(H), np.int32(W), np.int32(PH), np.int32(PW),
                  np.int32(sampling_ratio), np.int32(aligned), grad_input))
    return grad_input


# ---- the op ------------------------------------------------------------------------------------

class RoIAlign(Function):
    """RoIAlign as an autograd node: ``forward(input, rois)``, differentiable in ``input``.

    Takes already-checked arguments (see :func:`roi_align`): output_size a pair, rois (K, 5) of
    the input's dtype and device.
    """

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        self.output_size = tuple(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = max(int(sampling_ratio), 0)
        self.aligned = bool(aligned)

    def forward(self, x, rois):
        self.input_shape = x.shape
        self.rois = rois
        return _forward(x, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                        self.aligned)

    def backward(self, grad_output):
        grad_input = _backward(grad_output, self.rois, self.input_shape, self.spatial_scale,
                               self.sampling_ratio, self.aligned)
        return grad_input, None


def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: (N, C, H, W) features and (K, 5) RoIs -> (K, C, PH, PW); torchvision semantics.

    input: Tensor or array (NumPy or CuPy), float32 or float64. rois: (K, 5) rows
    [batch_index, x1, y1, x2, y2] in input-image coordinates (array, Tensor or nested list; cast
    to the input's dtype and moved to its device). output_size: int or (PH, PW).
    spatial_scale: feature-map size / image size (1/16 for a stride-16 map). sampling_ratio:
    samples per bin along each axis, or <= 0 for ceil(roi size / output size). aligned: shift the
    box by -0.5 pixel (Detectron2's correct alignment) instead of the original convention.
    """
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    _, rois, size, scale = check_roi_args("roi_align", input, rois, output_size, spatial_scale)
    return RoIAlign(size, scale, sampling_ratio, aligned)(input, rois)


# ---- the reference (for reading and testing) ---------------------------------------------------

def _interpolation_matrix(xp, start, bin_size, pooled, grid, size, dtype):
    """A (pooled, size): A[i, p] = sum of the bilinear weights that the ``grid`` samples of bin i
    put on pixel p, along one axis (the same arithmetic and boundary rules as the kernels)."""
    dt = np.dtype(dtype).type
    i = xp.arange(pooled, dtype=dtype)[:, None]
    t = xp.arange(grid, dtype=dtype)[None, :] + dt(0.5)
    pos = start + i * bin_size + t * bin_size / dt(max(grid, 1))    # (pooled, grid)
    valid = (pos >= -1) & (pos <= size)                # outside [-1, size]: the sample is zero
    pos = xp.clip(pos, dt(0), dt(size))                # -1 <= pos <= 0 reads pixel 0
    low = xp.floor(pos).astype(np.int64)
    edge = low >= size - 1                             # at or beyond the last pixel: read it
    low = xp.where(edge, size - 1, low)
    high = xp.where(edge, size - 1, low + 1)
    frac = xp.where(edge, dt(0), pos - low.astype(dtype)) * valid
    near = (dt(1) - frac) * valid
    pixels = xp.arange(size)
    a = ((low[..., None] == pixels) * near[..., None]
         + (high[..., None] == pixels) * frac[..., None]).sum(axis=1)
    if grid == 0:
        return a.astype(dtype), 0, 0
    return a.astype(dtype), int(low.min()), int(high.max()) + 1


def _reference_matrices(rois, H, W, output_size, spatial_scale, sampling_ratio, aligned, xp, dtype):
    """For each RoI: (k, batch index, A_y window, rows, A_x window, cols, count)."""
    batch, y0, x0, bin_h, bin_w, gh, gw = _roi_geometry(rois, spatial_scale, output_size,
                                                        sampling_ratio, aligned)
    PH, PW = output_size
    for k in range(len(batch)):
        ay, r0, r1 = _interpolation_matrix(xp, y0[k], bin_h[k], PH, int(gh[k]), H, dtype)
        ax, c0, c1 = _interpolation_matrix(xp, x0[k], bin_w[k], PW, int(gw[k]), W, dtype)
        count = max(int(gh[k] * gw[k]), 1)
        yield k, int(batch[k]), ay[:, r0:r1], slice(r0, r1), ax[:, c0:c1], slice(c0, c1), count


def roi_align_reference(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                        aligned=False):
    """RoIAlign forward in plain NumPy/CuPy: out[k, c] = A_y @ input[b, c] @ A_x.T / (gh*gw).

    Same arguments, checks and result as :func:`roi_align` (an array, no graph); one small
    matrix product per RoI, restricted to the rows and columns the RoI's samples touch.
    """
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    x, rois, size, scale = check_roi_args("roi_align", input, rois, output_size, spatial_scale)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.zeros((len(rois), C) + size, dtype=x.dtype)
    matrices = _reference_matrices(rois, H, W, size, scale, sampling_ratio, aligned, xp, x.dtype)
    for k, b, ay, rows, ax, cols, count in matrices:
        out[k] = ay @ x[b, :, rows, cols] @ ax.T / count           # (PH, h) @ (C, h, w) @ (w, PW)
    return out


def roi_align_reference_backward(grad_output, rois, input_shape, output_size, spatial_scale=1.0,
                                 sampling_ratio=-1, aligned=False):
    """Gradient of :func:`roi_align_reference` w.r.t. its input:
    grad_input[b, c] += A_y.T @ grad_output[k, c] @ A_x / (gh*gw)."""
    g = as_array(grad_output)
    xp = get_array_module(g)
    N, C, H, W = input_shape
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    _, rois, size, scale = check_roi_args("roi_align", xp.zeros((N, 0, H, W), g.dtype), rois,
                                           output_size, spatial_scale)
    if g.shape != (len(rois), C) + size:
        raise ValueError(f"roi_align: grad_output has shape {g.shape}, expected "
                         f"{(len(rois), C) + size}")
    grad_input = xp.zeros(input_shape, dtype=g.dtype)
    matrices = _reference_matrices(rois, H, W, size, scale, sampling_ratio, aligned, xp, g.dtype)
    for k, b, ay, rows, ax, cols, count in matrices:
        grad_input[b, :, rows, cols] += ay.T @ g[k] @ ax / count   # (h, PH) @ (C, PH, PW) @ (PW, w)
    return grad_input


# ---- gradient checks ---------------------------------------------------------------------------
# float64 inputs (2, 3, 6, 7); boxes in image coordinates for spatial_scale 0.25 (a 24 x 28
# image): inside, partly outside (left/top and right/bottom), tiny, empty, on image 1.

_GRAD_ROIS = np.array([[0, 2.0, 3.0, 17.0, 14.0],
                       [1, -6.0, -5.0, 9.0, 10.0],
                       [1, 15.0, 13.0, 33.0, 30.0],
                       [0, 10.2, 8.3, 10.9, 9.1],
                       [1, 5.0, 6.0, 5.0, 6.0]])


def _grad_input(rng):
    return [rng.standard_normal((2, 3, 6, 7))]


for _aligned in (False, True):
    for _ratio in (2, -1):
        register_case("roi_align", f"aligned{int(_aligned)}_ratio{_ratio}",
                      lambda x, a=_aligned, s=_ratio: roi_align(x, _GRAD_ROIS, (3, 2), 0.25, s, a),
                      _grad_input)
register_case("roi_align", "scale1_ratio3",
              lambda x: roi_align(x, _GRAD_ROIS * [1, 0.25, 0.25, 0.25, 0.25], 2, 1.0, 3, False),
              _grad_input)
