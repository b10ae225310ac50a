"""Parity with torch.nn.functional: interpolate, the norms and the losses, forward and backward,
in float64 on random shapes for every mode and option (skipped where torch is not installed)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = torch.nn.functional

from minimrcnn import Tensor  # noqa: E402
from minimrcnn.functional.loss import (binary_cross_entropy_with_logits, cross_entropy,  # noqa: E402
                                       l1_loss, smooth_l1_loss)
from minimrcnn.functional.norm import batch_norm, frozen_batch_norm, group_norm  # noqa: E402
from minimrcnn.functional.resize import interpolate  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12


def pair(a, grad=True):
    """The same float64 values as a minimrcnn Tensor and a torch tensor."""
    a = np.ascontiguousarray(a)
    return Tensor(a.copy(), requires_grad=grad), torch.tensor(a, requires_grad=grad)


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def run_both(ours_fn, theirs_fn, ours_in, theirs_in, rng):
    """Forward both, backward both with one random upstream gradient; compare everything."""
    y, yt = ours_fn(*ours_in), theirs_fn(*theirs_in)
    close(y.data, yt)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    for a, at in zip(ours_in, theirs_in):
        if isinstance(at, torch.Tensor) and at.requires_grad:
            close(a.grad, at.grad)


# =======================================================================================
# interpolate
# =======================================================================================
SHAPES = [(2, 3, 5, 7), (1, 2, 8, 4), (3, 1, 1, 6)]
RESIZES = [dict(size=(10, 14)), dict(size=(3, 5)), dict(size=(7, 7)), dict(size=6),
           dict(scale_factor=2.0), dict(scale_factor=(0.6, 1.7)), dict(scale_factor=0.5),
           dict(scale_factor=(2.5, 1 / 3)), dict(scale_factor=(1.05, 2.05))]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


def _nonempty(shape, resize):
    """Shape/resize pairs whose output has at least one pixel (torch refuses the others)."""
    scales = np.broadcast_to(resize.get("scale_factor", 1), 2)
    return min(int(np.floor(n * s)) for n, s in zip(shape[2:], scales)) >= 1


RESIZE_CASES = [pytest.param(shape, resize, id=f"{shape}-" + "_".join(f"{k}={v}" for k, v in resize.items()))
                for shape in SHAPES for resize in RESIZES if _nonempty(shape, resize)]


@pytest.mark.parametrize("mode, align", MODES)
@pytest.mark.parametrize("shape, resize", RESIZE_CASES)
def test_interpolate(shape, resize, mode, align):
    rng = np.random.default_rng(0)
    x, xt = pair(rng.standard_normal(shape))
    run_both(lambda a: interpolate(a, mode=mode, align_corners=align, **resize),
             lambda a: TF.interpolate(a, mode=mode, align_corners=align, **resize), [x], [xt], rng)


def test_interpolate_noncontiguous_and_recompute_scale_factor():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((2, 3, 6, 10))
    x = Tensor(base[..., ::2], requires_grad=True)                 # a strided view
    xt = torch.tensor(base[..., ::2].copy(), requires_grad=True)
    for kwargs in [dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
                   dict(scale_factor=1.7, mode="nearest", recompute_scale_factor=True),
                   dict(size=(9, 4), mode="bilinear", align_corners=False)]:
        x.grad, xt.grad = None, None
        run_both(lambda a: interpolate(a, **kwargs), lambda a: TF.interpolate(a, **kwargs), [x], [xt], rng)


def test_interpolate_nearest_indices_match_torch_exactly():
    # torch computes the nearest source index in float32: floor(o * float32(in / out)); the
    # float64 formula differs for many sizes (e.g. 2 -> 82). Compare on float32 data.
    for n_in in range(1, 40):
        x = np.arange(n_in, dtype=np.float32).reshape(1, 1, 1, n_in)
        for n_out in range(1, 100, 3):
            ours = interpolate(Tensor(x), size=(1, n_out)).data
            theirs = TF.interpolate(torch.from_numpy(x), size=(1, n_out)).numpy()
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{n_in} -> {n_out}")
        for s in (0.3, 0.7, 1.3, 1.7, 2.05, 2.5, 3.0):
            if int(n_in * s) >= 1:
                ours = interpolate(Tensor(x), scale_factor=(1.0, s)).data
                theirs = TF.interpolate(torch.from_numpy(x), scale_factor=(1.0, s)).numpy()
                np.testing.assert_array_equal(ours, theirs, err_msg=f"{n_in} x {s}")


@pytest.mark.parametrize("align", [False, True])
def test_interpolate_bilinear_float32_close_to_torch(align):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 13, 17)).astype(np.float32)
    for kwargs in [dict(size=(29, 40)), dict(scale_factor=(0.45, 2.3)), dict(size=(5, 6))]:
        ours = interpolate(Tensor(x), mode="bilinear", align_corners=align, **kwargs).data
        theirs = TF.interpolate(torch.from_numpy(x), mode="bilinear", align_corners=align, **kwargs)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)


# =======================================================================================
# batch norm / frozen batch norm / group norm
# =======================================================================================
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (3, 2, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("buffers", [True, False])
def test_batch_norm_training(shape, affine, buffers):
    rng = np.random.default_rng(3)
    C = shape[1]
    x, xt = pair(rng.standard_normal(shape) * 2 + 0.5)
    w, wt = pair(rng.standard_normal(C))
    b, bt = pair(rng.standard_normal(C))
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    ours_in, theirs_in = ([x, w, b], [xt, wt, bt]) if affine else ([x], [xt])
    run_both(lambda *a: batch_norm(a[0], rm if buffers else None, rv if buffers else None, *a[1:],
                                   training=True, momentum=0.3, eps=1e-4),
             lambda *a: TF.batch_norm(a[0], rmt if buffers else None, rvt if buffers else None, *a[1:],
                                      training=True, momentum=0.3, eps=1e-4),
             ours_in, theirs_in, rng)
    if buffers:
        close(rm, rmt)
        close(rv, rvt)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval(affine):
    rng = np.random.default_rng(4)
    x, xt = pair(rng.standard_normal((2, 3, 4, 4)))
    w, wt = pair(rng.standard_normal(3))
    b, bt = pair(rng.standard_normal(3))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    ours_in, theirs_in = ([x, w, b], [xt, wt, bt]) if affine else ([x], [xt])
    run_both(lambda *a: batch_norm(a[0], rm, rv, *a[1:], training=False),
             lambda *a: TF.batch_norm(a[0], torch.tensor(rm), torch.tensor(rv), *a[1:], training=False),
             ours_in, theirs_in, rng)


def _torchvision_frozen_bn(x, weight, bias, running_mean, running_var, eps):
    """torchvision.ops.misc.FrozenBatchNorm2d.forward, written out with torch ops."""
    w, b = weight.reshape(1, -1, 1, 1), bias.reshape(1, -1, 1, 1)
    rv, rm = running_var.reshape(1, -1, 1, 1), running_mean.reshape(1, -1, 1, 1)
    scale = w * (rv + eps).rsqrt()
    shift = b - rm * scale
    return x * scale + shift


@pytest.mark.parametrize("eps", [1e-5, 0.0])
def test_frozen_batch_norm(eps):
    rng = np.random.default_rng(5)
    C = 4
    arrays = [rng.standard_normal((2, C, 3, 5)), rng.standard_normal(C), rng.standard_normal(C),
              rng.standard_normal(C), rng.uniform(0.5, 2, C)]
    ours_in, theirs_in = zip(*(pair(a) for a in arrays))
    run_both(lambda *a: frozen_batch_norm(*a, eps=eps), lambda *a: _torchvision_frozen_bn(*a, eps=eps),
             list(ours_in), list(theirs_in), rng)


@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 4), 3), ((2, 6, 3, 4), 1), ((2, 6, 3, 4), 6),
                                           ((3, 4, 7), 2), ((1, 8, 2, 2, 2), 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(shape, groups, affine):
    rng = np.random.default_rng(6)
    C = shape[1]
    x, xt = pair(rng.standard_normal(shape) * 3 + 1)
    w, wt = pair(rng.standard_normal(C))
    b, bt = pair(rng.standard_normal(C))
    ours_in, theirs_in = ([x, w, b], [xt, wt, bt]) if affine else ([x], [xt])
    run_both(lambda *a: group_norm(a[0], groups, *a[1:], eps=1e-4),
             lambda *a: TF.group_norm(a[0], groups, *a[1:], eps=1e-4), ours_in, theirs_in, rng)


# =======================================================================================
# losses
# =======================================================================================
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4, 5), (3, 5, 7)])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_cross_entropy(shape, weighted, reduction, ignore_index):
    rng = np.random.default_rng(7)
    C = shape[1]
    target_shape = (shape[0],) + shape[2:]
    target = rng.integers(0, C, target_shape)
    if ignore_index == -100:
        target.reshape(-1)[::3] = -100
    x, xt = pair(rng.standard_normal(shape) * 3)
    w = rng.uniform(0.2, 3, C)
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    run_both(lambda a: cross_entropy(a, target, weight=Tensor(w) if weighted else None, **kw),
             lambda a: TF.cross_entropy(a, torch.tensor(target), weight=torch.tensor(w) if weighted else None,
                                        **kw),
             [x], [xt], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weight_gradient(reduction):
    # torch refuses weight gradients for cross_entropy; compare with the loss written out
    rng = np.random.default_rng(8)
    target = np.array([0, 2, -100, 1, 2, 2])
    x, xt = pair(rng.standard_normal((6, 3)))
    w, wt = pair(rng.uniform(0.5, 2, 3))

    def by_hand(a, weight):
        valid = torch.tensor(target != -100)
        t = torch.tensor(np.where(target != -100, target, 0))
        nll = -a.log_softmax(1).gather(1, t[:, None])[:, 0]
        wi = weight[t] * valid
        losses = wi * nll
        return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / wi.sum()}[reduction]

    run_both(lambda a, ww: cross_entropy(a, target, weight=ww, reduction=reduction), by_hand,
             [x, w], [xt, wt], rng)


def test_cross_entropy_unbatched():
    rng = np.random.default_rng(9)
    for reduction in REDUCTIONS:
        x, xt = pair(rng.standard_normal(5))
        run_both(lambda a: cross_entropy(a, np.array(3), reduction=reduction),
                 lambda a: TF.cross_entropy(a, torch.tensor(3), reduction=reduction), [x], [xt], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (4,), (3, 1), (3, 4)])
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_with_logits(reduction, weight_shape, pos_weight):
    rng = np.random.default_rng(10)
    x, xt = pair(rng.standard_normal((3, 4)) * 4)
    t, tt = pair(rng.uniform(0, 1, (3, 4)))
    w = rng.uniform(0.2, 2, weight_shape) if weight_shape else None
    p = rng.uniform(0.5, 4, 4) if pos_weight else None
    run_both(lambda a, b: binary_cross_entropy_with_logits(
                 a, b, None if w is None else Tensor(w), reduction, None if p is None else Tensor(p)),
             lambda a, b: TF.binary_cross_entropy_with_logits(
                 a, b, None if w is None else torch.tensor(w), reduction=reduction,
                 pos_weight=None if p is None else torch.tensor(p)),
             [x, t], [xt, tt], rng)


def test_bce_with_logits_weight_gradients_and_extremes():
    # torch has no weight / pos_weight gradients here; compare with the loss written out
    rng = np.random.default_rng(11)
    x, xt = pair(np.array([[-50.0, -3.0, 0.0, 2.0], [0.5, 8.0, 40.0, -0.1]]))
    t, tt = pair(rng.uniform(0, 1, (2, 4)))
    w, wt = pair(rng.uniform(0.5, 2, (2, 1)))
    p, pt = pair(rng.uniform(0.5, 3, 4))

    def by_hand(a, b, ww, pw):
        log_sig, log_one_minus = TF.logsigmoid(a), TF.logsigmoid(-a)
        return (-ww * (pw * b * log_sig + (1 - b) * log_one_minus)).sum()

    run_both(lambda *a: binary_cross_entropy_with_logits(a[0], a[1], a[2], "sum", pos_weight=a[3]),
             by_hand, [x, t, w, p], [xt, tt, wt, pt], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 1 / 9, 0.0, 2.5])
def test_smooth_l1_loss(reduction, beta):
    rng = np.random.default_rng(12)
    x, xt = pair(rng.standard_normal((5, 4)) * 2)
    t, tt = pair(rng.standard_normal((5, 4)))
    run_both(lambda a, b: smooth_l1_loss(a, b, beta=beta, reduction=reduction),
             lambda a, b: TF.smooth_l1_loss(a, b, beta=beta, reduction=reduction), [x, t], [xt, tt], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_l1_loss(reduction):
    rng = np.random.default_rng(13)
    x, xt = pair(rng.standard_normal((2, 3, 4)))
    t, tt = pair(rng.standard_normal((2, 3, 4)))
    run_both(lambda a, b: l1_loss(a, b, reduction=reduction),
             lambda a, b: TF.l1_loss(a, b, reduction=reduction), [x, t], [xt, tt], rng)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_inputs_reduce_as_torch(reduction):
    e = np.zeros((0, 3))
    cases = [
        (cross_entropy(Tensor(e), np.zeros(0, np.int64), reduction=reduction),
         TF.cross_entropy(torch.tensor(e), torch.zeros(0, dtype=torch.long), reduction=reduction)),
        (cross_entropy(Tensor(np.ones((2, 3))), np.full(2, -100), reduction=reduction),
         TF.cross_entropy(torch.ones(2, 3, dtype=torch.float64), torch.full((2,), -100), reduction=reduction)),
        (binary_cross_entropy_with_logits(Tensor(e), Tensor(e), reduction=reduction),
         TF.binary_cross_entropy_with_logits(torch.tensor(e), torch.tensor(e), reduction=reduction)),
        (smooth_l1_loss(Tensor(e), Tensor(e), reduction=reduction),
         TF.smooth_l1_loss(torch.tensor(e), torch.tensor(e), reduction=reduction)),
        (l1_loss(Tensor(e), Tensor(e), reduction=reduction),
         TF.l1_loss(torch.tensor(e), torch.tensor(e), reduction=reduction)),
    ]
    for ours, theirs in cases:
        np.testing.assert_array_equal(ours.data, theirs.numpy())      # nan == nan here
