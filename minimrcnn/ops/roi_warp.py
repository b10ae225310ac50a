"""RoIWarp (Dai et al., MNC, 2016): bilinear sampling of a *quantized* RoI.

Mask R-CNN's Table 2c compares RoIPool, RoIWarp and RoIAlign. In the paper's words, "RoIWarp
overlooked the alignment issue and was implemented in [10] as quantizing RoI just like RoIPool.
So even though RoIWarp also adopts bilinear resampling ..., it performs on par with RoIPool",
and (Section 4.2) "RoIWarp still quantizes the RoI, losing alignment with the input". So that
the ablation isolates exactly that one factor, this RoIWarp is

    quantized box (RoIPool's):  x_start = round(x1*s), x_end = round(x2*s)   (half away from 0)
                                the box covers pixels x_start..x_end, i.e. the real interval
                                [x_start - 1/2, x_end + 1/2] in pixel-centre coordinates
    then RoIAlign's sampling:   PH x PW equal bins of  bin_h = (y_end - y_start + 1) / PH,
                                g x g bilinear samples per bin (g = sampling_ratio),
                                y(ph, iy) = y_start - 1/2 + ph * bin_h + (iy + 1/2) * bin_h / g
                                (g = 1: the bin centre), averaged or (mode="max") maxed

which is, literally, ``roi_align(input, [b, x_start, y_start, x_end + 1, y_end + 1],
output_size, spatial_scale=1, sampling_ratio, aligned=True, mode)``: the RoIPool box, and
RoIAlign's bilinear interpolation with its boundary rules and its aggregation. Against RoIPool it
changes only "bilinear? n -> y"; against RoIAlign with the same sampling_ratio and mode only
"align? y -> n" (the two columns of Table 2c) -- the pooler passes its sampling_ratio (2) on, so
that its RoIWarp and RoIAlign differ by the quantized box alone. With one sample per bin
(sampling_ratio=1, the default here) max and average aggregation coincide; with 2 x 2 samples
they differ (the paper's two RoIWarp rows differ by 0.1 AP).

Why not MNC's own layer verbatim: its Caffe code (roi_warping_layer.cu in the MNC release)
samples each bin once at its top-left corner, start + ph * (end - start) / PH, using a width of
end - start in the forward pass but end - start + 1 in the backward pass. Sampling at the bin
centre of RoIPool's box keeps the paper's comparison about quantization alone and the forward
and backward passes consistent; the gradient is RoIAlign's (exact, input only; in max mode it
goes to each bin's arg-max sample).
"""
import numpy as np

from ..autograd.registry import register_case
from ..backend import as_numpy, get_array_module
from .checks import check_align_args, check_pool_mode, check_roi_args
from .roi_align import RoIAlign, roi_align_reference
from .roi_pool import quantize_boxes

__all__ = ["roi_warp", "roi_warp_reference", "warp_boxes"]


def warp_boxes(rois, spatial_scale):
    """The (K, 5) RoIs that RoIAlign(spatial_scale=1, sampling_ratio=1, aligned=True) samples
    for RoIWarp: [b, x_start, y_start, x_end + 1, y_end + 1] on the feature map, in the rois'
    dtype and on their device."""
    xp = get_array_module(rois)
    r = as_numpy(rois)
    q = quantize_boxes(r, spatial_scale, op="roi_warp").astype(r.dtype)
    q[:, 2:] += 1                           # pixels start..end inclusive -> [start, end + 1)
    return xp.asarray(np.concatenate([r[:, :1], q], axis=1))


def roi_warp(input, rois, output_size, spatial_scale=1.0, sampling_ratio=1, mode="avg"):
    """RoIWarp: (N, C, H, W) features and (K, 5) RoIs -> (K, C, PH, PW), differentiable in input.

    Arguments and checks as :func:`minimrcnn.ops.roi_align`: sampling_ratio samples per bin along
    each axis of the quantized box (1: the bin centre; <= 0: adaptive), mode "avg" | "max" over
    them; see the module docstring for the exact definition.
    """
    mode = check_pool_mode("roi_warp", mode)
    sampling_ratio, _ = check_align_args("roi_warp", sampling_ratio, True)
    _, rois, size, scale = check_roi_args("roi_warp", input, rois, output_size, spatial_scale)
    return RoIAlign(size, 1.0, sampling_ratio, True, mode)(input, warp_boxes(rois, scale))


def roi_warp_reference(input, rois, output_size, spatial_scale=1.0, sampling_ratio=1, mode="avg"):
    """RoIWarp through :func:`minimrcnn.ops.roi_align_reference` (NumPy/CuPy, for testing)."""
    mode = check_pool_mode("roi_warp", mode)
    sampling_ratio, _ = check_align_args("roi_warp", sampling_ratio, True)
    _, rois, size, scale = check_roi_args("roi_warp", input, rois, output_size, spatial_scale)
    return roi_align_reference(input, warp_boxes(rois, scale), size, 1.0, sampling_ratio, True,
                               mode)


# ---- gradient checks ---------------------------------------------------------------------------

_GRAD_ROIS = np.array([[0, 2.0, 3.0, 17.0, 14.0],
                       [1, -6.0, -5.0, 9.0, 10.0],
                       [1, 15.0, 13.0, 33.0, 30.0],
                       [0, 10.2, 8.3, 10.9, 9.1]])

register_case("roi_warp", "scale0.25_3x2", lambda x: roi_warp(x, _GRAD_ROIS, (3, 2), 0.25),
              lambda rng: [rng.standard_normal((2, 3, 6, 7))])
register_case("roi_warp", "max_ratio2_3x2",
              lambda x: roi_warp(x, _GRAD_ROIS, (3, 2), 0.25, 2, "max"),
              lambda rng: [rng.standard_normal((2, 3, 6, 7))])
