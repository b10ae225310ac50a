"""interpolate, batch/frozen/group norm and the losses: shapes, hand-checked values, running
statistics, gradients against hand-derived ones, and the errors bad arguments get.

(Gradient checks by finite differences live in the registry: tests/test_gradcheck.py.
Comparisons with torch are in tests/parity/test_resize_norm_loss_parity.py.)
"""
import math

import numpy as np
import pytest

from minimrcnn import Tensor
from minimrcnn.backend import as_numpy
from minimrcnn.functional.loss import (binary_cross_entropy_with_logits, cross_entropy, l1_loss,
                                       smooth_l1_loss)
from minimrcnn.functional.norm import batch_norm, frozen_batch_norm, group_norm
from minimrcnn.functional.resize import interpolate


def T(a, grad=False, dtype=np.float64):
    return Tensor(np.asarray(a, dtype=dtype), requires_grad=grad)


# =======================================================================================
# interpolate
# =======================================================================================
@pytest.mark.parametrize("kwargs, expected", [
    (dict(size=6), (6, 6)),
    (dict(size=(3, 9)), (3, 9)),
    (dict(scale_factor=2), (8, 10)),
    (dict(scale_factor=(0.5, 1.5)), (2, 7)),          # floor(4 * 0.5), floor(5 * 1.5)
    (dict(scale_factor=0.3), (1, 1)),                 # floor(1.2), floor(1.5)
])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolate_output_shape(kwargs, expected, mode):
    x = T(np.zeros((2, 3, 4, 5)), dtype=np.float32)
    y = interpolate(x, mode=mode, **kwargs)
    assert y.shape == (2, 3) + expected and y.dtype == np.float32


def test_interpolate_nearest_values_by_hand():
    x = T([[[[1, 2], [3, 4]]]])
    np.testing.assert_array_equal(interpolate(x, scale_factor=2).data[0, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # 2 -> 3: ratio 2/3, source floor(0), floor(0.67), floor(1.33) = 0, 0, 1
    np.testing.assert_array_equal(interpolate(x, size=(2, 3)).data[0, 0], [[1, 1, 2], [3, 3, 4]])
    # 4 -> floor(2.4) = 2 with scale_factor 0.6: ratio 1/0.6, source floor(0), floor(1.67) = 0, 1
    x4 = T(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(interpolate(x4, scale_factor=0.6).data[0, 0], [[0, 1], [4, 5]])
    # (3 * 0.6 = 1.7999999999999998 in floating point: 3 -> 1, as in torch)
    assert interpolate(T(np.zeros((1, 1, 3, 3))), scale_factor=0.6).shape[2:] == (1, 1)


def test_interpolate_scale_factor_sets_the_ratio_not_the_size():
    # 10 -> floor(10 * 1.05) = 10: same size, copied (torch's special case);
    # 4 -> floor(4 * 1.3) = 5 with ratio 1/1.3, unlike size=5 (ratio 4/5)
    x = T(np.arange(10.0).reshape(1, 1, 1, 10))
    np.testing.assert_array_equal(interpolate(x, scale_factor=(1.0, 1.05), mode="bilinear").data, x.data)
    x = T(np.arange(4.0).reshape(1, 1, 1, 4))
    by_scale = interpolate(x, scale_factor=(1, 1.3), mode="bilinear").data[0, 0, 0]
    by_size = interpolate(x, size=(1, 5), mode="bilinear").data[0, 0, 0]
    src = np.maximum((np.arange(5) + 0.5) / 1.3 - 0.5, 0)            # i.e. np.interp
    np.testing.assert_allclose(by_scale, np.interp(src, np.arange(4), np.arange(4.0)))
    assert not np.allclose(by_scale, by_size)
    recomputed = interpolate(x, scale_factor=(1, 1.3), mode="bilinear", recompute_scale_factor=True)
    np.testing.assert_allclose(recomputed.data[0, 0, 0], by_size)


def test_interpolate_bilinear_values_by_hand():
    x = T([[[[0.0, 3.0]]]])                                     # (1, 1, 1, 2)
    corners = interpolate(x, size=(1, 4), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(corners.data[0, 0, 0], [0, 1, 2, 3])
    # half-pixel: src = (o + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped)
    centres = interpolate(T([[[[0.0, 4.0]]]]), size=(1, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(centres.data[0, 0, 0], [0, 1, 3, 4])
    assert np.allclose(interpolate(T([[[[0.0, 4.0]]]]), size=(1, 4), mode="bilinear").data,
                       centres.data)                              # None means False
    # 2-D: the centre of a 2x2 image resized to 3x3 with corners aligned is the mean
    y = interpolate(T([[[[1.0, 2.0], [3.0, 6.0]]]]), size=3, mode="bilinear", align_corners=True)
    assert y.data[0, 0, 1, 1] == pytest.approx(3.0)


@pytest.mark.parametrize("mode, align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("size", [(8, 10), (3, 2), (5, 13)])
def test_interpolate_backward_is_the_transposed_map(mode, align, size):
    rng = np.random.default_rng(0)
    x = T(rng.standard_normal((2, 3, 4, 5)), grad=True)
    gy = rng.standard_normal((2, 3) + size)
    y = interpolate(x, size=size, mode=mode, align_corners=align)
    y.backward(gy)
    # <A x, g> == <x, A^T g> for a linear map
    assert np.sum(y.data * gy) == pytest.approx(np.sum(x.data * x.grad), rel=1e-10)
    if mode == "bilinear" or size[0] >= 4 and size[1] >= 5:     # every row of A sums to 1
        y.creator = None
        x.grad = None
        interpolate(x, size=size, mode=mode, align_corners=align).backward(np.ones((2, 3) + size))
        assert x.grad.sum() == pytest.approx(2 * 3 * size[0] * size[1])


def test_interpolate_nearest_2x_gradient_counts_four():
    x = T(np.zeros((1, 2, 3, 4)), grad=True)
    interpolate(x, scale_factor=2).backward(np.ones((1, 2, 6, 8)))
    np.testing.assert_array_equal(x.grad, np.full((1, 2, 3, 4), 4.0))


def test_interpolate_errors():
    x = T(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        interpolate(x)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners=False can only be set with mode 'bilinear'"):
        interpolate(x, size=3, align_corners=False)
    with pytest.raises(ValueError, match="mode must be one of .* got 'bicubic'"):
        interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\), got shape \(4, 4\)"):
        interpolate(T(np.zeros((4, 4))), size=3)
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        interpolate(x, size=0)
    with pytest.raises(ValueError, match=r"size must be an int or a pair of ints, got 2.0"):
        interpolate(x, size=2.0)
    with pytest.raises(ValueError, match=r"size must be at most 2147483647, got \(2, 2147483648\)"):
        interpolate(x, size=(2, 2 ** 31))
    with pytest.raises(ValueError, match=r"size must be at most 2147483647, got 1099511627776"):
        interpolate(x, size=2 ** 40)
    with pytest.raises(ValueError, match=r"into \(4000000000000, 4000000000000\); every output size "
                                         r"must be in \[1, 2147483647\]"):
        interpolate(x, scale_factor=1e12)
    with pytest.raises(ValueError, match=r"size must be an int or a pair of ints, got \(2, 2, 2\)"):
        interpolate(x, size=(2, 2, 2))
    with pytest.raises(ValueError, match=r"scale_factor=0.1 turns the input size \(4, 4\) into \(0, 0\)"):
        interpolate(x, scale_factor=0.1)
    with pytest.raises(ValueError, match="positive and finite, got -2"):
        interpolate(x, scale_factor=-2)
    with pytest.raises(TypeError, match="bilinear needs a floating x, got dtype int64"):
        interpolate(Tensor(np.zeros((1, 1, 2, 2), np.int64)), size=3, mode="bilinear")


def test_interpolate_nearest_keeps_integer_masks():
    m = Tensor(np.array([[[[0, 1], [2, 3]]]], np.uint8))
    y = interpolate(m, size=(4, 4))
    assert y.dtype == np.uint8 and not y.requires_grad
    assert y.data[0, 0, 3, 3] == 3


# =======================================================================================
# batch norm
# =======================================================================================
def test_batch_norm_training_normalizes_and_updates_running_stats():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2, 5)) * [[[[2.0]], [[0.5]], [[3.0]]]] + 7
    rm, rv = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0])
    rm0, rv0 = rm.copy(), rv.copy()
    w, b = np.array([1.0, 2.0, -1.0]), np.array([0.0, 0.5, 1.0])
    y = batch_norm(T(x), rm, rv, T(w), T(b), training=True, momentum=0.2).data

    axes = (0, 2, 3)
    z = (y - b[:, None, None]) / w[:, None, None]
    np.testing.assert_allclose(z.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(z.var(axis=axes), x.var(axis=axes) / (x.var(axis=axes) + 1e-5))
    n = 4 * 2 * 5
    np.testing.assert_allclose(rm, 0.8 * rm0 + 0.2 * x.mean(axis=axes))
    np.testing.assert_allclose(rv, 0.8 * rv0 + 0.2 * x.var(axis=axes) * n / (n - 1))


def test_batch_norm_updates_tensor_buffers_in_place_even_without_grad():
    from minimrcnn import no_grad
    rm, rv = Tensor(np.zeros(2, np.float32)), Tensor(np.ones(2, np.float32))
    x = T(np.arange(12.0).reshape(3, 2, 2), dtype=np.float32)
    with no_grad():
        batch_norm(x, rm, rv, training=True)
    np.testing.assert_allclose(rm.data, 0.1 * np.array([4.5, 6.5]), rtol=1e-6)
    var = np.array([np.var([0, 1, 4, 5, 8, 9], ddof=1), np.var([2, 3, 6, 7, 10, 11], ddof=1)])
    np.testing.assert_allclose(rv.data, 0.9 + 0.1 * var, rtol=1e-6)


def test_batch_norm_eval_uses_running_stats_and_leaves_them():
    x = T([[1.0, 2.0], [3.0, 6.0]])
    rm, rv = np.array([1.0, 2.0]), np.array([4.0, 16.0])
    y = batch_norm(x, rm, rv, T([2.0, 1.0]), T([0.0, 1.0]), training=False, eps=1e-12)
    np.testing.assert_allclose(y.data, [[0.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(rm, [1.0, 2.0])
    np.testing.assert_array_equal(rv, [4.0, 16.0])


def test_batch_norm_backward_matches_hand_formula():
    rng = np.random.default_rng(2)
    x, w, b = T(rng.standard_normal((5, 2)), True), T([1.5, -0.5], True), T([0.1, 0.2], True)
    gy = rng.standard_normal((5, 2))
    batch_norm(x, None, None, w, b, training=True).backward(gy)
    mu, var = x.data.mean(0), x.data.var(0)
    x_hat = (x.data - mu) / np.sqrt(var + 1e-5)
    g_hat = gy * w.data
    gx = (g_hat - g_hat.mean(0) - x_hat * (g_hat * x_hat).mean(0)) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(x.grad, gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.grad, (gy * x_hat).sum(0))
    np.testing.assert_allclose(b.grad, gy.sum(0))


def test_batch_norm_errors():
    x = T(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"more than 1 value per channel .* shape \(1, 3\)"):
        batch_norm(T(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\) but x has 3 channels"):
        batch_norm(x, None, None, T(np.ones(4)), training=True)
    with pytest.raises(ValueError, match=r"running_var has shape \(2,\) but x has 3 channels"):
        batch_norm(x, np.zeros(3), np.ones(2), training=False)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], got None"):
        batch_norm(x, np.zeros(3), np.ones(3), training=True, momentum=None)
    with pytest.raises(ValueError, match="eval mode .* needs running_mean and running_var"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="at least 2 dimensions, got shape \\(3,\\)"):
        batch_norm(T(np.zeros(3)), np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match="x must be floating, got dtype int64"):
        batch_norm(Tensor(np.zeros((2, 3), np.int64)), np.zeros(3), np.ones(3))


# =======================================================================================
# frozen batch norm
# =======================================================================================
def test_frozen_batch_norm_equals_batch_norm_in_eval():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 3))
    w, b, rm = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)
    rv = rng.uniform(0.5, 2, 4)
    frozen = frozen_batch_norm(T(x), T(w), T(b), T(rm), T(rv)).data
    bn = batch_norm(T(x), rm, rv, T(w), T(b), training=False).data
    np.testing.assert_allclose(frozen, bn, rtol=1e-12, atol=1e-12)
    scale = w / np.sqrt(rv)                                        # eps = 0, as torchvision's COCO models
    by_hand = x * scale[:, None, None] + (b - rm * scale)[:, None, None]
    np.testing.assert_allclose(frozen_batch_norm(T(x), T(w), T(b), T(rm), T(rv), eps=0.0).data,
                               by_hand, rtol=1e-12)


def test_frozen_batch_norm_gradients_only_where_asked():
    x = T(np.ones((2, 2, 2)), grad=True)
    w, b, rm, rv = T([2.0, 3.0]), T([0.0, 1.0]), T([0.0, 0.5]), T([4.0, 9.0])
    frozen_batch_norm(x, w, b, rm, rv, eps=0.0).backward(np.ones((2, 2, 2)))
    np.testing.assert_allclose(x.grad[:, 0], 1.0)                  # scale = 2 / 2
    np.testing.assert_allclose(x.grad[:, 1], 1.0)                  # scale = 3 / 3
    assert w.grad is None and rv.grad is None


def test_frozen_batch_norm_errors():
    x = T(np.zeros((1, 2, 3, 3)))
    ones = T(np.ones(2))
    with pytest.raises(ValueError, match=r"running_mean has shape \(3,\) but x has 2 channels"):
        frozen_batch_norm(x, ones, ones, T(np.zeros(3)), ones)
    with pytest.raises(ValueError, match="bias is required"):
        frozen_batch_norm(x, ones, None, ones, ones)
    with pytest.raises(ValueError, match="eps must be >= 0, got -1"):
        frozen_batch_norm(x, ones, ones, ones, ones, eps=-1)


# =======================================================================================
# group norm
# =======================================================================================
def test_group_norm_normalizes_each_group_of_each_sample():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 3, 3)) * 5 + 2
    y = group_norm(T(x), 3).data.reshape(2, 3, -1)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    v = x.reshape(2, 3, -1).var(-1)
    np.testing.assert_allclose(y.var(-1), v / (v + 1e-5))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    affine = group_norm(T(x), 3, T(w), T(b)).data
    np.testing.assert_allclose(affine, y.reshape(x.shape) * w[:, None, None] + b[:, None, None])


def test_group_norm_errors():
    x = T(np.zeros((2, 6, 3)))
    with pytest.raises(ValueError, match="6 channels, not divisible by num_groups=4"):
        group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups must be a positive int, got 0"):
        group_norm(x, 0)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\) but x has 6 channels"):
        group_norm(x, 2, T(np.ones(6)), T(np.ones(3)))


# =======================================================================================
# cross entropy
# =======================================================================================
def test_cross_entropy_values_by_hand():
    x = T([[0.0, 0.0], [math.log(3.0), 0.0]])
    t = np.array([0, 1])
    # -log(1/2) and -log(1/4)
    assert cross_entropy(x, t, reduction="none").data == pytest.approx([math.log(2), math.log(4)])
    assert cross_entropy(x, t).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert cross_entropy(x, t, reduction="sum").item() == pytest.approx(math.log(8))
    # weighted mean divides by the weights of the targets: (1*log2 + 3*log4) / (1 + 3)
    w = T([1.0, 3.0])
    assert cross_entropy(x, t, weight=w).item() == pytest.approx((math.log(2) + 3 * math.log(4)) / 4)
    # ignored targets count for nothing, in the sum and in the mean's denominator
    assert cross_entropy(x, np.array([0, -100])).item() == pytest.approx(math.log(2))
    assert cross_entropy(x, np.array([7, 1]), ignore_index=7).item() == pytest.approx(math.log(4))


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    x = T([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]], grad=True)
    t = np.array([2, 0, -100])
    cross_entropy(x, t).backward()
    p = np.exp(x.data) / np.exp(x.data).sum(1, keepdims=True)
    expected = (p - np.eye(3)[[2, 0, 0]]) / 2
    expected[2] = 0
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


def test_cross_entropy_spatial_and_unbatched():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 5))
    t = rng.integers(0, 3, (2, 4, 5))
    flat = cross_entropy(T(x.transpose(0, 2, 3, 1).reshape(-1, 3)), t.reshape(-1), reduction="none")
    spatial = cross_entropy(T(x), t, reduction="none")
    assert spatial.shape == (2, 4, 5)
    np.testing.assert_allclose(spatial.data.reshape(-1), flat.data)
    one = T(x[0, :, 0, 0], grad=True)
    loss = cross_entropy(one, np.array(t[0, 0, 0]), reduction="none")
    assert loss.shape == () and loss.item() == pytest.approx(flat.data[0])
    loss.backward(np.array(1.0))
    assert one.grad.shape == (3,)


def test_cross_entropy_is_stable_for_huge_logits():
    x = T([[1000.0, 0.0], [-1000.0, 1000.0]], grad=True, dtype=np.float32)
    loss = cross_entropy(x, np.array([1, 1]))
    assert loss.dtype == np.float32 and loss.item() == pytest.approx(500.0)
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_cross_entropy_nothing_to_count_gives_nan_and_zero_grad():
    x = T(np.ones((3, 4)), grad=True)
    loss = cross_entropy(x, np.full(3, -100))
    assert np.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(x.grad, 0)
    empty = T(np.zeros((0, 4)), grad=True)
    assert np.isnan(cross_entropy(empty, np.zeros(0, np.int64)).item())
    assert cross_entropy(empty, np.zeros(0, np.int64), reduction="sum").item() == 0
    assert cross_entropy(empty, np.zeros(0, np.int64), reduction="none").shape == (0,)


def test_cross_entropy_errors():
    x = T(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"target has shape \(3,\) but input of shape \(4, 3\) needs "
                                         r"a target of shape \(4,\) \(batch size 4"):
        cross_entropy(x, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="target must hold integer class indices, got dtype float32"):
        cross_entropy(x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="target value 3 is out of range for 3 classes"):
        cross_entropy(x, np.array([0, 1, 3, -100]))
    with pytest.raises(ValueError, match="target value -1 is out of range"):
        cross_entropy(x, np.array([0, 1, -1, 2]))
    with pytest.raises(ValueError, match=r"weight has shape \(2,\) but input has 3 classes"):
        cross_entropy(x, np.zeros(4, np.int64), weight=T(np.ones(2)))
    with pytest.raises(ValueError, match="reduction must be one of .* got 'avg'"):
        cross_entropy(x, np.zeros(4, np.int64), reduction="avg")
    with pytest.raises(TypeError, match="input must be a floating array, got int64"):
        cross_entropy(Tensor(np.zeros((4, 3), np.int64)), np.zeros(4, np.int64))


# =======================================================================================
# binary cross entropy with logits
# =======================================================================================
@pytest.mark.ex_bce_with_logits
def test_bce_with_logits_values_by_hand():
    x = T([0.0, 100.0, -100.0, 2.0])
    t = T([1.0, 0.0, 0.0, 0.25])
    losses = binary_cross_entropy_with_logits(x, t, reduction="none").data
    s = 1 / (1 + math.exp(-2.0))
    expected = [math.log(2), 100.0, math.exp(-100.0), -(0.25 * math.log(s) + 0.75 * math.log(1 - s))]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    # pos_weight p multiplies the positive term: -(p t log s + (1 - t) log(1 - s))
    p = T([3.0, 3.0, 3.0, 3.0])
    weighted = binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=p).data
    assert weighted[3] == pytest.approx(-(3 * 0.25 * math.log(s) + 0.75 * math.log(1 - s)))
    w = T([2.0, 0.0, 0.0, 0.0])
    assert binary_cross_entropy_with_logits(x, t, w, reduction="sum").item() == pytest.approx(2 * math.log(2))


@pytest.mark.ex_bce_with_logits
def test_bce_with_logits_gradient_is_sigmoid_minus_target():
    x, t = T([[-3.0, 0.5], [40.0, -40.0]], grad=True), T([[0.0, 1.0], [0.5, 1.0]], grad=True)
    binary_cross_entropy_with_logits(x, t).backward()
    np.testing.assert_allclose(x.grad, (1 / (1 + np.exp(-x.data)) - t.data) / 4, rtol=1e-12)
    np.testing.assert_allclose(t.grad, -x.data / 4)


def test_bce_with_logits_errors():
    x = T(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"target has shape \(4, 2\) but input has shape \(4, 3\)"):
        binary_cross_entropy_with_logits(x, T(np.zeros((4, 2))))
    with pytest.raises(TypeError, match="target must be a floating array, got int64"):
        binary_cross_entropy_with_logits(x, Tensor(np.zeros((4, 3), np.int64)))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\) does not broadcast"):
        binary_cross_entropy_with_logits(x, T(np.zeros((4, 3))), pos_weight=T(np.ones(4)))
    with pytest.raises(ValueError, match=r"weight of shape \(2, 4, 3\) does not broadcast"):
        binary_cross_entropy_with_logits(x, T(np.zeros((4, 3))), weight=T(np.ones((2, 4, 3))))


# =======================================================================================
# smooth L1 and L1
# =======================================================================================
def test_smooth_l1_values_and_gradient_by_hand():
    x, t = T([0.5, -2.0, 0.05, 3.0], grad=True), T([0.0, 0.0, 0.0, 0.0], grad=True)
    loss = smooth_l1_loss(x, t, reduction="none")
    np.testing.assert_allclose(loss.data, [0.125, 1.5, 0.00125, 2.5])
    smooth_l1_loss(x, t, reduction="sum").backward()
    np.testing.assert_allclose(x.grad, [0.5, -1.0, 0.05, 1.0])
    np.testing.assert_allclose(t.grad, -x.grad)
    # torchvision's box loss: beta = 1/9
    small = smooth_l1_loss(T([0.1, 0.5]), T([0.0, 0.0]), beta=1 / 9, reduction="none").data
    np.testing.assert_allclose(small, [0.5 * 0.01 * 9, 0.5 - 0.5 / 9])


def test_smooth_l1_beta_zero_is_l1_and_l1_by_hand():
    rng = np.random.default_rng(6)
    x, t = T(rng.standard_normal((3, 4))), T(rng.standard_normal((3, 4)))
    np.testing.assert_allclose(smooth_l1_loss(x, t, beta=0.0).data, l1_loss(x, t).data)
    assert l1_loss(T([1.0, -2.0]), T([0.0, 0.0])).item() == pytest.approx(1.5)
    xg = T([1.0, -2.0, 0.0], grad=True)
    l1_loss(xg, T([0.0, 0.0, 0.0]), reduction="sum").backward()
    np.testing.assert_array_equal(xg.grad, [1.0, -1.0, 0.0])       # sign(0) = 0, as torch


@pytest.mark.parametrize("loss", [smooth_l1_loss, l1_loss])
def test_regression_losses_on_empty_inputs(loss):
    e = T(np.zeros((0, 4)), grad=True)
    assert np.isnan(loss(e, T(np.zeros((0, 4)))).item())
    total = loss(e, T(np.zeros((0, 4))), reduction="sum")
    assert total.item() == 0
    total.backward()
    assert e.grad.shape == (0, 4)


def test_regression_loss_errors():
    x = T(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="beta must be >= 0, got -1"):
        smooth_l1_loss(x, x, beta=-1)
    with pytest.raises(ValueError, match=r"target has shape \(4, 1\) but input has shape \(4, 3\)"):
        smooth_l1_loss(x, T(np.zeros((4, 1))))
    with pytest.raises(TypeError, match="target must be a floating array, got int64"):
        l1_loss(x, Tensor(np.zeros((4, 3), np.int64)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        l1_loss(x, x, reduction="elementwise_mean")


@pytest.mark.parametrize("fn", ["ce", "bce", "smooth_l1", "l1"])
def test_losses_run_on_every_backend(fn, xp):
    rng = np.random.default_rng(7)
    x = Tensor(xp.asarray(rng.standard_normal((4, 3))), requires_grad=True)
    if fn == "ce":
        loss = cross_entropy(x, Tensor(xp.asarray([0, 2, -100, 1])), weight=Tensor(xp.ones(3)))
    elif fn == "bce":
        loss = binary_cross_entropy_with_logits(x, Tensor(xp.full((4, 3), 0.5)),
                                                pos_weight=Tensor(xp.ones(3)))
    elif fn == "smooth_l1":
        loss = smooth_l1_loss(x, Tensor(xp.zeros((4, 3))), beta=1 / 9)
    else:
        loss = l1_loss(x, Tensor(xp.zeros((4, 3))))
    loss.backward()
    assert np.isfinite(float(as_numpy(loss))) and x.grad.shape == (4, 3)


def test_resize_and_norms_run_on_every_backend(xp):
    rng = np.random.default_rng(8)
    x = Tensor(xp.asarray(rng.standard_normal((2, 4, 3, 5))), requires_grad=True)
    w, b = Tensor(xp.ones(4)), Tensor(xp.zeros(4))
    rm, rv = xp.zeros(4), xp.ones(4)
    ys = [interpolate(x, size=(6, 10)), interpolate(x, scale_factor=0.7, mode="bilinear"),
          batch_norm(x, rm, rv, w, b, training=True), batch_norm(x, rm, rv, w, b),
          frozen_batch_norm(x, w, b, Tensor(rm), Tensor(rv)), group_norm(x, 2, w, b)]
    for y in ys:
        x.grad = None
        y.backward(xp.ones(y.shape))
        assert x.grad.shape == x.shape and bool(xp.isfinite(x.grad).all())
    assert float(as_numpy(rm).sum()) != 0                          # updated in place
