"""nn layers, SGD and the warmup schedule against torch (skipped where torch is missing).

Layers get torch's weights through ``load_state_dict`` of torch's own state dict (so the key
names are checked too), then forward outputs and parameter gradients must agree.
"""
import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import nn, optim

torch = pytest.importorskip("torch")


def _copy_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _compare(ours, theirs, x_shape, seed=0, train=True, atol=1e-9):
    """Same input and upstream gradient through both; compare y, dL/dx and dL/dparams."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    ours.train(train)
    theirs.train(train)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    r = rng.standard_normal(tuple(ty.shape))
    (ty * torch.tensor(r)).sum().backward()
    mx = mr.Tensor(x, requires_grad=True)
    my = ours(mx)
    (my * mr.Tensor(r)).sum().backward()
    np.testing.assert_allclose(my.data, ty.detach().numpy(), atol=atol, rtol=1e-7)
    np.testing.assert_allclose(mx.grad, tx.grad.numpy(), atol=atol, rtol=1e-7)
    theirs_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name, p in ours_params.items():
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), atol=atol, rtol=1e-7,
                                   err_msg=name)
    return ours, theirs


@pytest.mark.parametrize("make_ours, make_theirs, x_shape", [
    (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64),
     lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 6)),
    (lambda: nn.Conv2d(3, 5, (3, 1), dilation=2, bias=False, dtype=np.float64),
     lambda: torch.nn.Conv2d(3, 5, (3, 1), dilation=2, bias=False), (1, 3, 8, 5)),
    (lambda: nn.ConvTranspose2d(4, 2, 2, stride=2, dtype=np.float64),
     lambda: torch.nn.ConvTranspose2d(4, 2, 2, stride=2), (2, 4, 3, 3)),
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=np.float64),
     lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (1, 4, 4, 5)),
    (lambda: nn.Linear(5, 3, dtype=np.float64), lambda: torch.nn.Linear(5, 3), (4, 2, 5)),
    (lambda: nn.GroupNorm(2, 6, dtype=np.float64), lambda: torch.nn.GroupNorm(2, 6), (3, 6, 4, 5)),
])
def test_layers_match_torch(make_ours, make_theirs, x_shape):
    torch.manual_seed(0)
    theirs = make_theirs().double()
    with torch.no_grad():       # non-trivial affine parameters for the norm layers
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ours = make_ours()
    _copy_from_torch(ours, theirs)
    _compare(ours, theirs, x_shape)


def test_batchnorm2d_matches_torch_train_then_eval():
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    with torch.no_grad():
        theirs.weight.add_(torch.randn(3))
        theirs.bias.add_(torch.randn(3))
    ours = nn.BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    _copy_from_torch(ours, theirs)
    for seed in range(3):                          # training: batch stats, running stats move
        ours.zero_grad()
        theirs.zero_grad()
        _compare(ours, theirs, (4, 3, 5, 5), seed=seed, train=True)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-10, err_msg=key)
    ours.zero_grad()
    theirs.zero_grad()
    _compare(ours, theirs, (2, 3, 5, 5), seed=9, train=False)   # eval: running stats


def test_frozen_batchnorm_matches_torch_batchnorm_eval():
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        theirs.running_mean.normal_()
        theirs.running_var.uniform_(0.5, 2)
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = nn.FrozenBatchNorm2d(4, dtype=np.float64)
    _copy_from_torch(ours, theirs)                 # num_batches_tracked is dropped on load
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(ours(mr.Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(),
                               atol=1e-12)


def test_default_init_distribution_matches_torch():
    # torch's reset_parameters: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    torch.manual_seed(0)
    nn.init.manual_seed(0)
    for ours, theirs in ((nn.Conv2d(64, 32, 3), torch.nn.Conv2d(64, 32, 3)),
                         (nn.Linear(256, 128), torch.nn.Linear(256, 128)),
                         (nn.ConvTranspose2d(32, 16, 2), torch.nn.ConvTranspose2d(32, 16, 2))):
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
        assert nn.init._calculate_fan_in_and_fan_out(ours.weight) == (fan_in, _)
        bound = 1 / np.sqrt(fan_in)
        for name, p in ours.named_parameters():
            t = dict(theirs.named_parameters())[name].detach().numpy()
            assert p.shape == t.shape and p.dtype == t.dtype
            assert np.abs(p.data).max() <= bound and np.abs(t).max() <= bound, name
            if p.size >= 1000:   # (1 - 0.1)^n: a 16-element bias misses 0.9*bound 18% of the time
                assert np.abs(p.data).max() > 0.9 * bound, name
        assert ours.weight.data.std() == pytest.approx(theirs.weight.detach().numpy().std(), rel=0.05)


@pytest.mark.parametrize("settings", [
    dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
    dict(lr=0.1, momentum=0.5, dampening=0.3),
    dict(lr=0.02),
])
def test_sgd_matches_torch(settings):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (2, 1, 3)]
    init = [rng.standard_normal(s) for s in shapes]
    ours = [nn.Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    # torch-style groups: the second parameter (a "bias") without weight decay, half the lr
    groups = lambda ps: [{"params": [ps[0], ps[2]]},  # noqa: E731
                         {"params": [ps[1]], "weight_decay": 0, "lr": settings["lr"] / 2}]
    opt_ours = optim.SGD(groups(ours), **settings)
    opt_theirs = torch.optim.SGD(groups(theirs), **settings)
    for step in range(5):
        for o, t in zip(ours, theirs):
            g = rng.standard_normal(o.shape)
            o.grad, t.grad = g.copy(), torch.tensor(g)
        if step == 2:                                 # a parameter without a gradient is skipped
            ours[2].grad, theirs[2].grad = None, None
        opt_ours.step()
        opt_theirs.step()
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o.data, t.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_warmup_multistep_matches_torch_linear_then_multistep():
    def make(lr):
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    t_opt = make(0.02)
    t_sched = torch.optim.lr_scheduler.ChainedScheduler([
        torch.optim.lr_scheduler.LinearLR(t_opt, start_factor=1e-3, end_factor=1.0, total_iters=10),
        torch.optim.lr_scheduler.MultiStepLR(t_opt, milestones=[15, 25], gamma=0.1)])
    o_opt = optim.SGD([nn.Parameter(np.zeros(1, np.float32))], lr=0.02)
    o_sched = optim.WarmupMultiStepLR(o_opt, [15, 25], gamma=0.1, warmup_factor=1e-3, warmup_iters=10)
    for it in range(30):
        assert o_opt.param_groups[0]["lr"] == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-9), it
        t_opt.step()
        o_opt.step()
        t_sched.step()
        o_sched.step()
