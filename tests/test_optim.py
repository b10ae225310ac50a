"""optim: SGD's update against hand computations, param groups, state dicts, the LR schedule."""
import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import nn, optim


def _param(value):
    return nn.Parameter(np.array([value], np.float64))


def _run(opt, p, grads):
    values = []
    for g in grads:
        p.grad = np.array([g], np.float64)
        opt.step()
        values.append(p.data[0])
    return values


def test_sgd_momentum_weight_decay_by_hand():
    # lr 0.1, momentum 0.9, weight decay 0.5; p0 = 1, gradients 1, 2, -1
    #   step 1: d = 1 + 0.5*1 = 1.5           buf = 1.5                   p = 1 - 0.15 = 0.85
    #   step 2: d = 2 + 0.5*0.85 = 2.425      buf = 0.9*1.5 + 2.425 = 3.775     p = 0.85 - 0.3775 = 0.4725
    #   step 3: d = -1 + 0.5*0.4725 = -0.76375  buf = 0.9*3.775 - 0.76375 = 2.63375  p = 0.4725 - 0.263375
    p = _param(1.0)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    assert _run(opt, p, [1, 2, -1]) == pytest.approx([0.85, 0.4725, 0.209125], abs=1e-12)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], [2.63375])


def test_sgd_nesterov_and_dampening_by_hand():
    # nesterov: the step is d + momentum * buf
    #   step 1: d = 1.5, buf = 1.5, step = 1.5 + 1.35 = 2.85               p = 1 - 0.285 = 0.715
    #   step 2: d = 2 + 0.3575 = 2.3575, buf = 1.35 + 2.3575 = 3.7075,
    #           step = 2.3575 + 0.9*3.7075 = 5.69425                      p = 0.715 - 0.569425
    p = _param(1.0)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5, nesterov=True)
    assert _run(opt, p, [1, 2]) == pytest.approx([0.715, 0.145575], abs=1e-12)
    # dampening 0.5 (not on the first step, as torch): buf = 1, then 0.9 + 0.5 = 1.4
    p = _param(1.0)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    assert _run(opt, p, [1, 1]) == pytest.approx([0.9, 0.76], abs=1e-12)
    # plain SGD
    p = _param(1.0)
    assert _run(optim.SGD([p], lr=0.5), p, [1, 1]) == pytest.approx([0.5, 0.0])


def test_param_groups_settings_and_skipped_grads():
    w, b, frozen = _param(1.0), _param(1.0), _param(1.0)
    opt = optim.SGD([{"params": [w]}, {"params": [b, frozen], "weight_decay": 0, "lr": 1.0}],
                    lr=0.1, weight_decay=1.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [1.0, 0]
    w.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    assert w.data[0] == pytest.approx(1 - 0.1 * (1 + 1)) and b.data[0] == pytest.approx(0.0)
    assert frozen.data[0] == 1.0 and frozen not in opt.state       # grad None: untouched
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_sgd_updates_in_place_and_model_params():
    lin = nn.Linear(3, 2)
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    weight_array = lin.weight.data
    x = mr.Tensor(np.ones((4, 3), np.float32))
    lin(x).sum().backward()
    expected = weight_array - 0.1 * lin.weight.grad
    opt.step()
    assert lin.weight.data is weight_array and lin.weight.dtype == np.float32
    np.testing.assert_allclose(lin.weight.data, expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-0.1), "lr must be a number >= 0, got -0.1"),
    (dict(lr=0.1, momentum=-1), "momentum"),
    (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "nesterov"),
])
def test_sgd_bad_settings_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.SGD([_param(1.0)], **kwargs)


def test_sgd_bad_params():
    p = _param(1.0)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown setting"):
        optim.SGD([{"params": [p], "betas": 1}], lr=0.1)
    with pytest.raises(ValueError, match="lr must be .* \\(param group 1\\)"):
        optim.SGD([{"params": [p]}, {"params": [_param(1.0)], "lr": -1}], lr=0.1)


def test_sgd_state_dict_round_trip():
    def make():
        a, b = _param(1.0), _param(2.0)
        return [a, b], optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, momentum=0.9)
    (a1, b1), opt1 = make()
    for g in (1.0, -0.5):
        a1.grad, b1.grad = np.array([g]), np.array([2 * g])
        opt1.step()
    sd = opt1.state_dict()
    assert sorted(sd["state"]) == [0, 1] and sd["param_groups"][1]["params"] == [1]
    assert sd["param_groups"][1]["lr"] == 0.2
    (a2, b2), opt2 = make()
    a2.data[...], b2.data[...] = a1.data, b1.data
    opt2.load_state_dict(sd)
    for p1, p2 in ((a1, a2), (b1, b2)):
        p1.grad = p2.grad = np.array([0.3])
    opt1.step()
    opt2.step()
    assert a2.data[0] == a1.data[0] and b2.data[0] == b1.data[0]
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([a2], lr=0.1).load_state_dict(sd)


# ---- schedule ------------------------------------------------------------------------------
def _opt(lr=0.02):
    return optim.SGD([_param(1.0)], lr=lr, momentum=0.9)


def test_warmup_multistep_values():
    opt = _opt()
    sched = optim.WarmupMultiStepLR(opt, milestones=[10, 20], gamma=0.1, warmup_factor=1 / 3,
                                    warmup_iters=5)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(24):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.02 / 3)                       # iteration 0
    assert lrs[1] == pytest.approx(0.02 * (1 / 3 * 0.8 + 0.2))      # linear ramp
    assert lrs[4] == pytest.approx(0.02 * (1 / 3 * 0.2 + 0.8))
    assert lrs[5:10] == pytest.approx([0.02] * 5)
    assert lrs[10:20] == pytest.approx([0.002] * 10)
    assert lrs[20:] == pytest.approx([0.0002] * 5)
    assert sched.get_last_lr() == pytest.approx([0.0002])


def test_warmup_constant_and_groups_and_defaults():
    a, b = _param(1.0), _param(1.0)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.04}], lr=0.02)
    sched = optim.WarmupMultiStepLR(opt, [3], warmup_factor=0.001, warmup_iters=2,
                                    warmup_method="constant")
    assert sched.get_last_lr() == pytest.approx([0.00002, 0.00004])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.02, 0.04])
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.002, 0.004])
    d = optim.WarmupMultiStepLR(_opt(), [100])
    assert (d.warmup_factor, d.warmup_iters, d.warmup_method, d.gamma) == (1 / 3, 500, "linear", 0.1)


def test_warmup_state_dict_resumes():
    opt = _opt()
    sched = optim.WarmupMultiStepLR(opt, [6], warmup_iters=4)
    for _ in range(5):
        sched.step()
    sd = sched.state_dict()
    opt2 = _opt()
    sched2 = optim.WarmupMultiStepLR(opt2, [6], warmup_iters=4)
    sched2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == pytest.approx([0.002])


@pytest.mark.parametrize("kwargs, match", [
    (dict(milestones=[20, 10]), r"milestones must be strictly increasing, got \[20, 10\]"),
    (dict(milestones=[10, 10]), "strictly increasing"),
    (dict(milestones=[1.5]), "milestones must be non-negative ints"),
    (dict(milestones=[10], gamma=0), "gamma"),
    (dict(milestones=[10], warmup_method="cosine"), "warmup_method"),
    (dict(milestones=[10], warmup_iters=-1), "warmup_iters"),
    (dict(milestones=[10], warmup_factor=0), "warmup_factor"),
])
def test_warmup_bad_values_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.WarmupMultiStepLR(_opt(), **kwargs)
