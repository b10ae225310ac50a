"""RoIAlign (He et al., 2017, Section 3): RoI features without quantization.

RoIPool rounds an RoI to the feature grid and rounds its bins to pixels; the features it
extracts are misaligned with the RoI by up to a pixel of the feature map (16 image pixels at
stride 16). RoIAlign keeps every coordinate real ("x/16 instead of [x/16]"): it cuts the RoI into
PH x PW equal bins, reads the feature map at a few regularly spaced points in each bin by bilinear
interpolation, and averages them (or, ``mode="max"``, takes their maximum: Table 2c's "RoIAlign
max", as mmcv's RoIAlign with pool_mode="max").

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

``mode="max"`` keeps the same samples and replaces the average by a maximum:

    out[k, c, ph, pw] = max_{iy, ix} bilinear(input[b, c], y(ph, iy), x(pw, ix))
    argmax[k, c, ph, pw] = iy * gw + ix of the first sample attaining it

An out-of-range sample counts as the value 0 (it can win: a bin whose samples inside the map are
all negative gives 0); a bin without samples (gh*gw = 0: an empty box, aligned, adaptive) gives 0
and argmax -1; a NaN sample wins over any number, as in NumPy, so a NaN is never hidden. The max
is piecewise the bilinear function of its winning sample, so its gradient goes to that sample's
four pixels with its bilinear weights (summed where bins or RoIs share pixels):

    grad_input[b, c, y_j, x_j] += w_j * grad_out[k, c, ph, pw]      j = the arg-max sample's 4 pixels

The forward pass saves argmax (int32, K x C x PH x PW) for the backward pass. At a tie between
different samples the max is not differentiable; the first sample takes the gradient (as the
first pixel does in RoIPool).

Three implementations of one function:

* CPU: the Cython kernel ``minimrcnn._ext.roi_align`` (ext/roi_align.pyx), parallel (OpenMP),
  with torchvision's per-RoI table of bilinear positions and weights reused across channels.
* GPU: CUDA kernels (ext/roi_align.cu) compiled at first use by ``cupy.RawModule``.
* :func:`roi_align_reference`: NumPy/CuPy written for reading. Since the sample grid is a
  product of a y-grid and an x-grid and the boundary rules act on y and x separately, the
  bilinear weights of one RoI factor into per-sample interpolation matrices S_y (PH*gh, H) and
  S_x (PW*gw, W) -- row ph*gh + iy of S_y holds the y-weights of sample row iy of bin row ph --
  and every sample of the RoI is one entry of

      samples[k, c] = S_y @ input[b, c] @ S_x.T         (PH*gh, PW*gw) -> (PH, gh, PW, gw)

  The average is the mean over (gh, gw); summing a bin's rows first, A_y = the sum of the gh rows
  of each bin of S_y (PH, H) (A_x likewise), it is out[k, c] = A_y @ input[b, c] @ A_x.T / (gh*gw),
  with gradient grad_input[b, c] += A_y.T @ grad_out[k, c] @ A_x / (gh*gw). The max is the max
  over (gh, gw); its gradient is the same transpose applied to a sample-level gradient that is
  grad_out at each bin's arg-max sample and 0 elsewhere: grad_input[b, c] += S_y.T @ G @ S_x.

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
from .checks import check_align_args, check_pool_mode, check_roi_args

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

def _forward(x, rois, output_size, spatial_scale, sampling_ratio, aligned, mode="avg"):
    """(out (K, C, PH, PW), argmax): argmax (K, C, PH, PW) int32 in max mode (the winning
    sample iy * gw + ix of each bin, -1 for a bin without samples), None in avg mode."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    PH, PW = output_size
    K = len(rois)
    if K == 0 or C == 0:
        argmax = xp.full((K, C, PH, PW), -1, dtype=np.int32) if mode == "max" else None
        return xp.zeros((K, C, PH, PW), dtype=x.dtype), argmax
    if xp is np:
        ext = _ext.cpu_module("roi_align")
        if ext is None:
            return _reference_forward(x, rois, output_size, spatial_scale, sampling_ratio,
                                      aligned, mode)
        args = (np.ascontiguousarray(x), np.ascontiguousarray(rois), PH, PW, spatial_scale,
                sampling_ratio, aligned)
        if mode == "max":
            return ext.roi_align_forward_max(*args)
        return ext.roi_align_forward(*args), None
    _roi_geometry(rois, spatial_scale, output_size, sampling_ratio, aligned)  # bounds the grid
    x = xp.ascontiguousarray(x)
    rois = xp.ascontiguousarray(rois)
    out = xp.empty((K, C, PH, PW), dtype=x.dtype)
    args = (x, rois, x.dtype.type(spatial_scale), np.int32(C), np.int32(H), np.int32(W),
            np.int32(PH), np.int32(PW), np.int32(sampling_ratio), np.int32(aligned), out)
    if mode == "max":
        argmax = xp.empty((K, C, PH, PW), dtype=np.int32)
        _ext.launch("roi_align", "roi_align_forward_max", x.dtype, out.size, args + (argmax,))
        return out, argmax
    _ext.launch("roi_align", "roi_align_forward", x.dtype, out.size, args)
    return out, None


def _backward(grad_output, rois, input_shape, spatial_scale, sampling_ratio, aligned,
              argmax=None):
    """grad_input (N, C, H, W): the average's transpose, or (argmax given) the max's."""
    xp = get_array_module(grad_output)
    N, C, H, W = input_shape
    K, _, PH, PW = grad_output.shape
    if K == 0 or C == 0:
        return xp.zeros(input_shape, dtype=grad_output.dtype)
    if xp is np:
        ext = _ext.cpu_module("roi_align")
        if ext is None:
            if argmax is not None:
                return _reference_backward_max(grad_output, argmax, rois, input_shape, (PH, PW),
                                               spatial_scale, sampling_ratio, aligned)
            return roi_align_reference_backward(grad_output, rois, input_shape, (PH, PW),
                                                spatial_scale, sampling_ratio, aligned)
        if argmax is not None:
            return ext.roi_align_backward_max(np.ascontiguousarray(grad_output), argmax,
                                              np.ascontiguousarray(rois), N, H, W, spatial_scale,
                                              sampling_ratio, aligned)
        return ext.roi_align_backward(np.ascontiguousarray(grad_output), np.ascontiguousarray(rois),
                                      N, H, W, spatial_scale, sampling_ratio, aligned)
    grad_output = xp.ascontiguousarray(grad_output)
    grad_input = xp.zeros(input_shape, dtype=grad_output.dtype)
    scalars = (grad_output.dtype.type(spatial_scale), np.int32(C), np.int32(H), np.int32(W),
               np.int32(PH), np.int32(PW), np.int32(sampling_ratio), np.int32(aligned))
    if argmax is not None:
        _ext.launch("roi_align", "roi_align_backward_max", grad_output.dtype, grad_output.size,
                     (grad_output, xp.ascontiguousarray(argmax), xp.ascontiguousarray(rois))
                     + scalars + (grad_input,))
        return grad_input
    _ext.launch("roi_align", "roi_align_backward", grad_output.dtype, grad_output.size,
                 (grad_output, xp.ascontiguousarray(rois)) + scalars + (grad_input,))
    return grad_input


# ---- the op ------------------------------------------------------------------------------------

class RoIAlign(Function):
    """RoIAlign as an autograd node: ``forward(input, rois)``, differentiable in ``input``.

    Takes already-checked arguments (see :func:`roi_align`): output_size a pair, rois (K, 5) of
    the input's dtype and device. ``mode`` "avg" | "max"; in max mode forward keeps
    ``self.argmax`` (K, C, PH, PW) int32, the winning sample of each bin, for backward.
    """

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
                 mode="avg"):
        self.output_size = tuple(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = max(int(sampling_ratio), 0)
        self.aligned = bool(aligned)
        self.mode = check_pool_mode("RoIAlign", mode)
        self.argmax = None

    def forward(self, x, rois):
        self.input_shape = x.shape
        self.rois = rois
        out, self.argmax = _forward(x, rois, self.output_size, self.spatial_scale,
                                    self.sampling_ratio, self.aligned, self.mode)
        return out

    def backward(self, grad_output):
        grad_input = _backward(grad_output, self.rois, self.input_shape, self.spatial_scale,
                               self.sampling_ratio, self.aligned, self.argmax)
        return grad_input, None


def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
              mode="avg"):
    """RoIAlign: (N, C, H, W) features and (K, 5) RoIs -> (K, C, PH, PW); torchvision semantics.

    input: Tensor or array (NumPy or CuPy), float32 or float64. rois: (K, 5) rows
    [batch_index, x1, y1, x2, y2] in input-image coordinates (array, Tensor or nested list; cast
    to the input's dtype and moved to its device). output_size: int or (PH, PW).
    spatial_scale: feature-map size / image size (1/16 for a stride-16 map). sampling_ratio:
    samples per bin along each axis, or <= 0 for ceil(roi size / output size). aligned: shift the
    box by -0.5 pixel (Detectron2's correct alignment) instead of the original convention.
    mode: "avg" (the paper's RoIAlign) or "max" over each bin's samples (Table 2c's max rows).
    """
    mode = check_pool_mode("roi_align", mode)
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    _, rois, size, scale = check_roi_args("roi_align", input, rois, output_size, spatial_scale)
    return RoIAlign(size, scale, sampling_ratio, aligned, mode)(input, rois)


# ---- the reference (for reading and testing) ---------------------------------------------------

def _sample_matrix(xp, start, bin_size, pooled, grid, size, dtype):
    """S (pooled*grid, size): S[i*grid + t, p] = the bilinear weight that sample t of bin i puts
    on pixel p, along one axis (the same arithmetic and boundary rules as the kernels); and the
    window [lo, hi) of pixels that any sample touches."""
    dt = np.dtype(dtype).type
    i = xp.arange(pooled, dtype=dtype)[:, None]
    t = xp.arange(grid, dtype=dtype)[None, :] + dt(0.5)
    ### BEGIN SOLUTION roi_align_forward
    pos = start + i * bin_size + t * bin_size / dt(max(grid, 1))    # (pooled, grid)
    valid = (pos >= -1) & (pos <= size)                # outside [-1, size]: the sample is zero
    pos = xp.clip(pos, dt(0), dt(size))                # -1 <= pos <= 0 reads pixel 0
    low = xp.floor(pos).astype(np.int64)
    edge = low >= size - 1                             # at or beyond the last pixel: read it
    low = xp.where(edge, size - 1, low)
    high = xp.where(edge, size - 1, low + 1)
    frac = xp.where(edge, dt(0), pos - low.astype(dtype)) * valid
    near = (dt(1) - frac) * valid
    ### END SOLUTION
    pixels = xp.arange(size)
    s = ((low[..., None] == pixels) * near[..., None]
         + (high[..., None] == pixels) * frac[..., None])   # (pooled, grid, size)
    s = s.astype(dtype).reshape(pooled * grid, size)
    if grid == 0:
        return s, 0, 0
    return s, int(low.min()), int(high.max()) + 1


def _bin_sums(s, pooled, grid):
    """A (pooled, size) from S (pooled*grid, size): the sum of each bin's ``grid`` rows."""
    return s.reshape(pooled, grid, s.shape[1]).sum(axis=1)


def _reference_matrices(rois, H, W, output_size, spatial_scale, sampling_ratio, aligned, xp, dtype):
    """For each RoI: (k, batch index, S_y window, rows, S_x window, cols, gh, gw)."""
    batch, y0, x0, bin_h, bin_w, gh, gw = _roi_geometry(rois, spatial_scale, output_size,
                                                        sampling_ratio, aligned)
    PH, PW = output_size
    for k in range(len(batch)):
        sy, r0, r1 = _sample_matrix(xp, y0[k], bin_h[k], PH, int(gh[k]), H, dtype)
        sx, c0, c1 = _sample_matrix(xp, x0[k], bin_w[k], PW, int(gw[k]), W, dtype)
        yield (k, int(batch[k]), sy[:, r0:r1], slice(r0, r1), sx[:, c0:c1], slice(c0, c1),
               int(gh[k]), int(gw[k]))


def _bin_samples(samples, C, PH, PW, gh, gw):
    """(C, PH*gh, PW*gw) -> (C, PH, PW, gh*gw): the samples of each bin, in the order iy * gw + ix."""
    return samples.reshape(C, PH, gh, PW, gw).transpose(0, 1, 3, 2, 4).reshape(C, PH, PW, gh * gw)


def _reference_forward(x, rois, size, scale, sampling_ratio, aligned, mode):
    """(out, argmax or None) of checked arguments; see :func:`roi_align_reference`."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    PH, PW = size
    out = xp.zeros((len(rois), C) + size, dtype=x.dtype)
    argmax = xp.full((len(rois), C) + size, -1, dtype=np.int32) if mode == "max" else None
    matrices = _reference_matrices(rois, H, W, size, scale, sampling_ratio, aligned, xp, x.dtype)
    for k, b, sy, rows, sx, cols, gh, gw in matrices:
        if mode == "avg":
            ay, ax = _bin_sums(sy, PH, gh), _bin_sums(sx, PW, gw)    # (PH, h), (PW, w)
            ### BEGIN SOLUTION roi_align_forward
            out[k] = ay @ x[b, :, rows, cols] @ ax.T / max(gh * gw, 1)   # (PH, h) @ (C, h, w) @ (w, PW)
            ### END SOLUTION
        elif gh * gw > 0:                                            # else: no samples, 0 and -1
            samples = _bin_samples(sy @ x[b, :, rows, cols] @ sx.T, C, PH, PW, gh, gw)
            argmax[k] = samples.argmax(axis=-1)                      # the first max (or NaN)
            out[k] = samples.max(axis=-1)
    return out, argmax


def _reference_backward_max(g, argmax, rois, input_shape, size, scale, sampling_ratio, aligned):
    """grad_input[b, c] += S_y.T @ G @ S_x, G (PH*gh, PW*gw) = grad_out at each bin's arg-max
    sample, 0 at its other samples (checked arguments; argmax as the forward pass gives it)."""
    xp = get_array_module(g)
    N, C, H, W = input_shape
    PH, PW = size
    grad_input = xp.zeros(input_shape, dtype=g.dtype)
    matrices = _reference_matrices(rois, H, W, size, scale, sampling_ratio, aligned, xp, g.dtype)
    for k, b, sy, rows, sx, cols, gh, gw in matrices:
        if gh * gw == 0:
            continue
        winner = argmax[k][..., None] == xp.arange(gh * gw)         # (C, PH, PW, gh*gw)
        G = (winner * g[k][..., None]).reshape(C, PH, PW, gh, gw)
        G = G.transpose(0, 1, 3, 2, 4).reshape(C, PH * gh, PW * gw)
        grad_input[b, :, rows, cols] += sy.T @ G @ sx               # (h, PH*gh) @ (C, ., .) @ (PW*gw, w)
    return grad_input


def roi_align_reference(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                        aligned=False, mode="avg"):
    """RoIAlign forward in plain NumPy/CuPy, one RoI at a time, restricted to the rows and columns
    its samples touch:

        avg: out[k, c] = A_y @ input[b, c] @ A_x.T / (gh*gw)
        max: out[k, c] = max over (gh, gw) of (S_y @ input[b, c] @ S_x.T).reshape(PH, gh, PW, gw)

    Same arguments, checks and result as :func:`roi_align` (an array, no graph).
    """
    mode = check_pool_mode("roi_align", mode)
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    x, rois, size, scale = check_roi_args("roi_align", input, rois, output_size, spatial_scale)
    return _reference_forward(x, rois, size, scale, sampling_ratio, aligned, mode)[0]


def roi_align_reference_backward(grad_output, rois, input_shape, output_size, spatial_scale=1.0,
                                 sampling_ratio=-1, aligned=False, mode="avg", input=None):
    """Gradient of :func:`roi_align_reference` w.r.t. its input, (N, C, H, W):

        avg: grad_input[b, c] += A_y.T @ grad_output[k, c] @ A_x / (gh*gw)
        max: grad_input[b, c] += S_y.T @ G @ S_x,  G = grad_output[k, c] at each bin's arg-max
             sample (of the reference forward pass), 0 at its other samples

    The average's gradient depends on the input's shape only; the max's depends on which sample
    won, i.e. on the input's values, so ``input`` (N, C, H, W) is required in max mode (and
    ignored in avg mode). The reference recomputes the arg-max from it instead of taking the
    kernel's saved one, so that a test of the kernels' argmax bookkeeping is independent of it.
    """
    g = as_array(grad_output)
    xp = get_array_module(g)
    mode = check_pool_mode("roi_align", mode)
    N, C, H, W = input_shape
    sampling_ratio, aligned = check_align_args("roi_align", sampling_ratio, aligned)
    if mode == "max":
        if input is None:
            raise ValueError("roi_align: mode='max' needs the forward input (input=...): the "
                             "gradient goes to each bin's arg-max sample, which depends on it")
        x, rois, size, scale = check_roi_args("roi_align", input, rois, output_size, spatial_scale)
        if tuple(x.shape) != tuple(input_shape):
            raise ValueError(f"roi_align: input has shape {tuple(x.shape)} but input_shape is "
                             f"{tuple(input_shape)}")
    else:
        _, rois, size, scale = check_roi_args("roi_align", xp.zeros((N, 0, H, W), g.dtype), rois,
                                               output_size, spatial_scale)
    if g.shape != (len(rois), C) + size:
        raise ValueError(f"roi_align: grad_output has shape {g.shape}, expected "
                         f"{(len(rois), C) + size}")
    if mode == "max":
        _, argmax = _reference_forward(x, rois, size, scale, sampling_ratio, aligned, mode)
        return _reference_backward_max(g, argmax, rois, input_shape, size, scale, sampling_ratio,
                                       aligned)
    grad_input = xp.zeros(input_shape, dtype=g.dtype)
    PH, PW = size
    matrices = _reference_matrices(rois, H, W, size, scale, sampling_ratio, aligned, xp, g.dtype)
    for k, b, sy, rows, sx, cols, gh, gw in matrices:
        ay, ax = _bin_sums(sy, PH, gh), _bin_sums(sx, PW, gw)
        ### BEGIN SOLUTION roi_align_backward
        grad_input[b, :, rows, cols] += ay.T @ g[k] @ ax / max(gh * gw, 1)   # (h, PH) @ (C, PH, PW) @ (PW, w)
        ### END SOLUTION
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
        register_case("roi_align", f"max_aligned{int(_aligned)}_ratio{_ratio}",
                      lambda x, a=_aligned, s=_ratio: roi_align(x, _GRAD_ROIS, (3, 2), 0.25, s, a,
                                                                "max"),
                      _grad_input)
register_case("roi_align", "scale1_ratio3",
              lambda x: roi_align(x, _GRAD_ROIS * [1, 0.25, 0.25, 0.25, 0.25], 2, 1.0, 3, False),
              _grad_input)
