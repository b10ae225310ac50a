"""RoIAlign / RoIWarp with mode="max" (Mask R-CNN Table 2c's max rows): the Cython kernel against
the NumPy reference on many RoIs, against a literal brute-force loop, its tie / empty / NaN
rules, the margin that makes the registered gradient checks meaningful, the argument checks,
and the pooler / config / model wiring. (The registered gradcheck cases run in
tests/test_gradcheck.py; the CUDA kernels are tested in tests/test_gpu_roi_ops.py.)"""
import math
import sys

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import Tensor, functional as F, ops
from minimrcnn.autograd.registry import all_cases
from minimrcnn.config import ConfigError, get_config
from minimrcnn.models import build_model
from minimrcnn.modeling.poolers import MultiScaleRoIPooler
from minimrcnn.ops.roi_align import RoIAlign

from .test_roi_ops import ALIGN_TOL, random_rois


# ---- a brute-force RoIAlign max, written from the definition ---------------------------------

def bilinear(plane, y, x):
    """(value, taps) of the bilinear sample (y, x) of an (H, W) plane, pixel centres at integers:
    0 and no taps outside [-1, H] x [-1, W]; y in [-1, 0] reads row 0, y >= H - 1 the last row
    (x likewise). taps: [(row, col, weight)] of the four neighbours."""
    H, W = plane.shape
    if y < -1 or y > H or x < -1 or x > W:
        return 0.0, []
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_low = y_high = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    taps = [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx),
            (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]
    return sum(w * plane[i, j] for i, j, w in taps), taps


def bin_samples(roi, PH, PW, scale, ratio, aligned, ph, pw):
    """The (y, x) positions of the samples of bin (ph, pw) of an RoI, in the order iy * gw + ix."""
    _, x1, y1, x2, y2 = roi
    o = 0.5 if aligned else 0.0
    x0, y0 = x1 * scale - o, y1 * scale - o
    roi_w, roi_h = x2 * scale - o - x0, y2 * scale - o - y0
    if not aligned:
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / PH, roi_w / PW
    gh = ratio if ratio > 0 else math.ceil(roi_h / PH)
    gw = ratio if ratio > 0 else math.ceil(roi_w / PW)
    return [(y0 + ph * bin_h + (iy + 0.5) * bin_h / gh, x0 + pw * bin_w + (ix + 0.5) * bin_w / gw)
            for iy in range(gh) for ix in range(gw)]


def brute_force_max(x, rois, PH, PW, scale, ratio, aligned, grad_out):
    """out[k, c, ph, pw] = the max of the bin's bilinear samples (the first on ties, 0 for no
    samples) and the gradient of sum(out * grad_out): grad_out to the winner's taps."""
    K, C = len(rois), x.shape[1]
    out = np.zeros((K, C, PH, PW))
    grad = np.zeros_like(x)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    best, best_taps = None, []
                    for y, xx in bin_samples(roi, PH, PW, scale, ratio, aligned, ph, pw):
                        v, taps = bilinear(x[b, c], y, xx)
                        if best is None or v > best:
                            best, best_taps = v, taps
                    out[k, c, ph, pw] = 0.0 if best is None else best
                    for i, j, w in best_taps:
                        grad[b, c, i, j] += w * grad_out[k, c, ph, pw]
    return out, grad


@pytest.mark.parametrize("aligned, ratio", [(False, 2), (True, 2), (False, -1), (True, -1),
                                            (False, 3)])
def test_max_equals_a_literal_loop_over_bins_and_samples(aligned, ratio):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6))
    rois = np.array([[0, 1.0, 2.0, 15.0, 13.0],        # inside (scale 0.5 -> a 10 x 12 image)
                     [1, -4.0, -3.0, 6.0, 5.0],         # over the top-left corner
                     [1, 8.0, 6.0, 14.5, 12.9],         # over the bottom-right corner
                     [0, 4.2, 4.1, 4.6, 4.4],           # tiny
                     [1, 3.0, 3.0, 3.0, 3.0],           # empty (aligned + adaptive: no samples)
                     [0, -30.0, -20.0, -24.0, -10.0]])  # outside: every sample is 0
    g = rng.standard_normal((len(rois), 3, 3, 2))
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_align(xt, rois, (3, 2), 0.5, ratio, aligned, "max")
    F.sum(out * Tensor(g)).backward()
    expected, expected_grad = brute_force_max(x, rois, 3, 2, 0.5, ratio, aligned, g)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xt.grad, expected_grad, rtol=1e-12, atol=1e-14)
    assert np.all(out.data[5] == 0)                     # outside: the zeros win
    assert np.any(out.data != ops.roi_align(x, rois, (3, 2), 0.5, ratio, aligned).data)


# ---- the kernel against the reference, many RoIs ------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 1, 2, 3])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_kernel_matches_reference_on_many_rois(dtype, aligned, ratio, mode):
    """Three images, 5 channels (a block of four and a remainder), 300 RoIs: inside, partly or
    wholly outside, tiny, empty; forward and backward."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 12, 10)).astype(dtype)
    rois = random_rois(rng, 300, 3, (48, 40), 36)
    rois[:20, 3:] = rois[:20, 1:3] + rng.uniform(0, 1.5, (20, 2))   # tiny
    rois[20:30, 3:] = rois[20:30, 1:3]                                 # empty
    size, scale = (4, 3), 0.25
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_align(xt, rois, size, scale, ratio, aligned, mode)
    np.testing.assert_allclose(out.data, ops.roi_align_reference(x, rois, size, scale, ratio,
                                                                 aligned, mode),
                               **ALIGN_TOL[dtype])
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    expected = ops.roi_align_reference_backward(g, rois, x.shape, size, scale, ratio, aligned,
                                                mode, input=x)
    np.testing.assert_allclose(xt.grad, expected, **ALIGN_TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saved_argmax_is_the_references(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 6, 9, 11)).astype(dtype)
    rois = random_rois(rng, 80, 2, (36, 44), 30).astype(dtype)
    f = RoIAlign((3, 4), 0.25, 2, False, "max")
    out = f(Tensor(x), rois)
    assert f.argmax.dtype == np.int32 and f.argmax.shape == out.shape
    reference = sys.modules["minimrcnn.ops.roi_align"]._reference_forward
    ref_out, ref_argmax = reference(x, rois, (3, 4), 0.25, 2, False, "max")
    np.testing.assert_array_equal(f.argmax, ref_argmax)
    assert set(np.unique(f.argmax)) <= {0, 1, 2, 3}


# ---- the rules: max >= avg, one sample, ties, empty bins, NaN ----------------------------------

def test_max_is_at_least_the_average_and_equals_it_with_one_sample():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 9, 11))
    rois = random_rois(rng, 40, 2, (36, 44), 30)
    for ratio in (-1, 2, 3):
        avg = ops.roi_align(x, rois, 3, 0.25, ratio).data
        mx = ops.roi_align(x, rois, 3, 0.25, ratio, mode="max").data
        assert np.all(mx >= avg - 1e-12) and np.any(mx > avg + 1e-3)
    np.testing.assert_array_equal(ops.roi_align(x, rois, 3, 0.25, 1, mode="max").data,
                                  ops.roi_align(x, rois, 3, 0.25, 1).data)


def test_ties_go_to_the_first_sample():
    """On an all-zero map every sample is exactly 0: argmax 0 everywhere, and the gradient goes
    to sample (iy, ix) = (0, 0) of each bin alone."""
    x = np.zeros((1, 1, 8, 8))
    roi = np.array([[0, 1.0, 1.0, 5.0, 5.0]])
    f = RoIAlign((2, 2), 1.0, 2, False, "max")
    xt = Tensor(x, requires_grad=True)
    out = f(xt, roi)
    assert np.all(f.argmax == 0) and np.all(out.data == 0)
    out.backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((8, 8))
    for ph in range(2):
        for pw in range(2):
            y, xx = bin_samples(roi[0], 2, 2, 1.0, 2, False, ph, pw)[0]
            for i, j, w in bilinear(x[0, 0], y, xx)[1]:
                expected[i, j] += w
    np.testing.assert_array_equal(xt.grad[0, 0], expected)   # samples at pixel centres + 1/2
    assert expected.sum() == 4


def test_out_of_range_samples_count_as_zero_and_take_no_gradient():
    """A box half above the map on a negative map: the samples inside are < 0, the ones outside
    (y < -1) are 0 and win, so the output is 0 and the gradient is 0."""
    x = -1.0 - np.random.default_rng(8).random((1, 2, 6, 6))
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_align(xt, [[0, 1.0, -6.0, 5.0, 2.0]], 1, 1.0, 2, False, "max")
    # samples at y = -4, 0: the first is outside (0), the second reads row 0 (< 0)
    assert np.all(out.data == 0)
    out.backward(np.ones(out.shape))
    assert np.all(xt.grad == 0)
    assert np.all(ops.roi_align(x, [[0, 1.0, -6.0, 5.0, 2.0]], 1, 1.0, 2).data < 0)   # avg


def test_bins_without_samples_are_zero_with_argmax_minus_one():
    x = np.random.default_rng(9).standard_normal((1, 2, 6, 6))
    f = RoIAlign((2, 2), 1.0, 0, True, "max")        # aligned + adaptive: an empty box, 0 x 0
    xt = Tensor(x, requires_grad=True)
    out = f(xt, np.array([[0, 3.0, 3.0, 3.0, 3.0]]))
    assert np.all(out.data == 0) and np.all(f.argmax == -1)
    out.backward(np.ones(out.shape))
    assert np.all(xt.grad == 0)


def test_a_nan_sample_is_never_hidden():
    """A NaN pixel gives NaN in every bin with a sample that reads it (even when another
    sample is larger), and only there."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 1, 8, 8))
    x[0, 0, 3, 4] = np.nan
    roi = np.array([0, 0.5, 0.5, 7.0, 7.0])
    out = ops.roi_align(x, roi[None], (3, 3), 1.0, 2, False, "max").data[0, 0]
    expected = np.zeros((3, 3), bool)
    for ph in range(3):
        for pw in range(3):
            for y, xx in bin_samples(roi, 3, 3, 1.0, 2, False, ph, pw):
                expected[ph, pw] |= any((i, j) == (3, 4) for i, j, _ in bilinear(x[0, 0], y, xx)[1])
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(np.isnan(out), expected)


def test_the_first_nan_sample_is_the_arg_max():
    """NaN at pixel (5, 5), a 3 x 3 grid in the bin [3, 6] x [3, 6]: samples at 3.5, 4.5, 5.5;
    the first to read pixel 5 in both axes is (iy, ix) = (1, 1), index 4 -- in a channel of the
    kernel's blocks of four (1) and in the remainder (4)."""
    x = np.random.default_rng(15).standard_normal((1, 5, 6, 6))
    x[0, 1, 5, 5] = x[0, 4, 5, 5] = np.nan
    f = RoIAlign((2, 2), 1.0, 3, False, "max")
    out = f(Tensor(x), np.array([[0, 0.0, 0.0, 6.0, 6.0]]))
    assert np.argwhere(np.isnan(out.data[0])).tolist() == [[1, 1, 1], [4, 1, 1]]
    assert f.argmax[0, 1, 1, 1] == 4 and f.argmax[0, 4, 1, 1] == 4


# ---- RoIWarp -----------------------------------------------------------------------------------

def test_roi_warp_is_roi_align_of_the_quantized_box_in_both_modes():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 11))
    rois = random_rois(rng, 30, 2, (36, 44), 30)
    boxes = ops.warp_boxes(rois, 0.25)
    for ratio in (1, 2, -1):
        for mode in ("avg", "max"):
            np.testing.assert_array_equal(ops.roi_warp(x, rois, (3, 4), 0.25, ratio, mode).data,
                                          ops.roi_align(x, boxes, (3, 4), 1.0, ratio, True, mode).data)
    # one sample per bin: max and average coincide; two by two: they differ
    np.testing.assert_array_equal(ops.roi_warp(x, rois, 3, 0.25, 1, "max").data,
                                  ops.roi_warp(x, rois, 3, 0.25).data)
    assert np.abs(ops.roi_warp(x, rois, 3, 0.25, 2, "max").data
                  - ops.roi_warp(x, rois, 3, 0.25, 2).data).max() > 1e-2


# ---- the registered gradient checks ------------------------------------------------------------

def _max_case_settings():
    """The registered max-mode cases: id -> (rois, output_size, scale, ratio, aligned) on the
    feature map's own coordinates (RoIWarp's quantized boxes)."""
    align_rois = sys.modules["minimrcnn.ops.roi_align"]._GRAD_ROIS
    warp_rois = sys.modules["minimrcnn.ops.roi_warp"]._GRAD_ROIS
    settings = {f"roi_align[max_aligned{int(a)}_ratio{r}]": (align_rois, (3, 2), 0.25, r, a)
                for a in (False, True) for r in (2, -1)}
    settings["roi_warp[max_ratio2_3x2]"] = (ops.warp_boxes(warp_rois, 0.25), (3, 2), 1.0, 2, True)
    return settings


def test_max_cases_are_registered_and_compute_what_the_margin_check_assumes():
    cases = {c.id: c for c in all_cases()}
    for case_id, (rois, size, scale, ratio, aligned) in _max_case_settings().items():
        assert case_id in cases, case_id
        (x,) = cases[case_id].inputs()
        np.testing.assert_array_equal(cases[case_id].fn(x).data,
                                      ops.roi_align(x.data, rois, size, scale, ratio, aligned,
                                                    "max").data)


@pytest.mark.parametrize("case_id", sorted(_max_case_settings()))
def test_gradcheck_inputs_keep_the_winner_clear_of_the_finite_difference_step(case_id):
    """Central differences with eps = 1e-6 see the max's gradient only if no other sample of a
    bin comes within ~eps of the winner: in every bin of the registered inputs the runner-up is
    at least 1e-3 below (samples at the same point, e.g. two clamped to the last row, or two
    outside the map, are the same function and may tie)."""
    case = {c.id: c for c in all_cases()}[case_id]
    rois, (PH, PW), scale, ratio, aligned = _max_case_settings()[case_id]
    (x,) = case.inputs()
    x = x.data
    assert case.eps <= 1e-6
    smallest = np.inf
    for roi in rois:
        b = int(roi[0])
        for c in range(x.shape[1]):
            for ph in range(PH):
                for pw in range(PW):
                    values = [bilinear(x[b, c], y, xx)
                              for y, xx in bin_samples(roi, PH, PW, scale, ratio, aligned, ph, pw)]
                    if not values:
                        continue
                    best, best_taps = max(values, key=lambda v: v[0])
                    others = [v for v, taps in values if taps != best_taps]
                    if others:
                        smallest = min(smallest, best - max(others))
    assert 1e-3 < smallest < np.inf, smallest


# ---- argument checks ---------------------------------------------------------------------------

def test_an_unknown_mode_is_refused_naming_the_argument_and_the_value():
    x = np.zeros((1, 1, 4, 4))
    rois = [[0, 0.0, 0.0, 2.0, 2.0]]
    calls = {"roi_align": lambda: ops.roi_align(x, rois, 2, mode="median"),
             "roi_warp": lambda: ops.roi_warp(x, rois, 2, mode="median")}
    for op, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{op}: mode must be one of \('avg', 'max'\), got 'median'$"):
            call()
    with pytest.raises(ValueError, match="mode must be one of .* got 'median'"):
        ops.roi_align_reference(x, rois, 2, mode="median")
    with pytest.raises(ValueError, match="mode must be one of .* got None"):
        ops.roi_align(x, rois, 2, mode=None)
    with pytest.raises(ValueError, match="MultiScaleRoIPooler: mode must be one of .* got 'median'"):
        MultiScaleRoIPooler(["0"], 2, 2, mode="median")
    with pytest.raises(ConfigError, match="'pooler_mode' must be one of \\('avg', 'max'\\), got 'median'"):
        get_config("classroom_fpn", pooler_mode="median")


def test_the_max_reference_backward_needs_the_input():
    x = np.random.default_rng(12).standard_normal((1, 1, 4, 4))
    rois = [[0, 0.0, 0.0, 3.0, 3.0]]
    g = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"mode='max' needs the forward input \(input=...\)"):
        ops.roi_align_reference_backward(g, rois, x.shape, 2, mode="max")
    with pytest.raises(ValueError, match=r"input has shape \(1, 1, 4, 4\) but input_shape is \(1, 1, 5, 4\)"):
        ops.roi_align_reference_backward(g, rois, (1, 1, 5, 4), 2, mode="max", input=x)


def test_the_max_kernels_check_bounds_themselves():
    """Called directly, past the Python checks, the Cython max kernels refuse a batch index out
    of range, an argmax of the wrong shape and sample indices outside a bin's grid."""
    from minimrcnn._ext import roi_align as ext
    x = np.zeros((2, 3, 8, 8))
    good = np.array([[1.0, 0, 0, 4, 4]])
    g = np.zeros((1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"rois\[0, 0\] = 2.0 is not a batch index in \[0, 2\)"):
        ext.roi_align_forward_max(x, np.array([[2.0, 0, 0, 4, 4]]), 2, 2, 1.0, 2, False)
    out, argmax = ext.roi_align_forward_max(x, good, 2, 2, 1.0, 2, False)
    assert out.shape == argmax.shape == (1, 3, 2, 2) and argmax.dtype == np.int32
    ext.roi_align_backward_max(g, argmax, good, 2, 8, 8, 1.0, 2, False)          # accepted
    with pytest.raises(ValueError, match=r"grad_output \(1, 3, 2, 2\), argmax \(1, 3, 2, 1\)"):
        ext.roi_align_backward_max(g, argmax[..., :1].copy(), good, 2, 8, 8, 1.0, 2, False)
    for value in (4, -2):                                   # 2 x 2 samples: indices -1..3
        bad = argmax.copy()
        bad[0, 2, 1, 0] = value
        with pytest.raises(ValueError, match=r"argmax\[0\] holds sample indices outside \[-1, 4\)"):
            ext.roi_align_backward_max(g, bad, good, 2, 8, 8, 1.0, 2, False)
    with pytest.raises(ValueError, match="is not a batch index"):
        ext.roi_align_backward_max(g, argmax, np.array([[2.0, 0, 0, 4, 4]]), 2, 8, 8, 1.0, 2,
                                   False)


# ---- pooler, config, model ---------------------------------------------------------------------

def test_pooler_passes_mode_and_sampling_ratio_on():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)      # stride 16 of a 64 x 80 image
    boxes = np.array([[3.3, 5.1, 40.7, 30.2], [0, 0, 63, 50]], np.float32)
    rois = np.concatenate([np.zeros((2, 1), np.float32), boxes], axis=1)
    for method, op in (("roi_align", lambda m: ops.roi_align(x, rois, 3, 1 / 16, 2, False, m)),
                       ("roi_warp", lambda m: ops.roi_warp(x, rois, 3, 1 / 16, 2, m))):
        outs = {}
        for mode in ("avg", "max"):
            pooler = MultiScaleRoIPooler(["0"], 3, 2, method=method, mode=mode)
            outs[mode] = pooler({"0": Tensor(x)}, [boxes], [(64, 80)]).data
            np.testing.assert_array_equal(outs[mode], op(mode).data)
        assert np.all(outs["max"] >= outs["avg"] - 1e-6) and np.any(outs["max"] > outs["avg"] + 1e-3)
    assert "mode='max'" in repr(MultiScaleRoIPooler(["0"], 3, 2, mode="max"))
    # RoIPool is a max by definition and ignores the mode
    pool = {m: MultiScaleRoIPooler(["0"], 3, 2, method="roi_pool", mode=m)({"0": Tensor(x)}, [boxes],
                                                                          [(64, 80)]).data
            for m in ("avg", "max")}
    np.testing.assert_array_equal(pool["avg"], pool["max"])


@pytest.mark.parametrize("pooler", ["roi_align", "roi_warp"])
def test_classroom_model_with_max_pooling_trains(pooler):
    """The classroom model with pooler_mode="max": every pooler (box, mask, keypoint) uses it,
    and a forward + backward gives finite losses and gradients in the heads."""
    mr.nn.init.manual_seed(0)
    cfg = get_config("classroom_fpn", num_classes=3, pooler=pooler, pooler_mode="max",
                     keypoint_on=True, num_keypoints=3, keypoint_head_layers=(8,),
                     min_size=64, max_size=96, rpn_pre_nms_top_n_train=64,
                     rpn_post_nms_top_n_train=16, rpn_batch_size_per_image=32,
                     box_batch_size_per_image=8)
    model = build_model(cfg)
    heads = model.roi_heads
    for p in (heads.box_roi_pool, heads.mask_roi_pool, heads.keypoint_roi_pool):
        assert p.mode == "max" and p.method == pooler
    rng = np.random.default_rng(14)
    image = rng.random((3, 64, 80), dtype=np.float32)
    boxes = np.array([[8, 10, 40, 50], [40, 12, 76, 60]], np.float32)
    masks = np.zeros((2, 64, 80), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1 + 2:y2 - 2, x1 + 2:x2 - 2] = 1
    xy = rng.uniform(boxes[:, None, :2], boxes[:, None, 2:], (2, 3, 2))
    keypoints = np.concatenate([xy, np.full((2, 3, 1), 2.0)], axis=2).astype(np.float32)
    target = dict(boxes=boxes, labels=np.array([1, 2], np.int64), masks=masks, keypoints=keypoints)
    model.train()
    losses = model([image], [target])
    assert {"loss_mask", "loss_keypoint"} <= set(losses)
    assert all(np.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("roi_heads.") and p.requires_grad:
            assert p.grad is not None and np.all(np.isfinite(p.grad)), name
