"""nn: Module bookkeeping, state dicts, modes, init statistics and layer shapes/semantics."""
import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import functional as F, nn


class Block(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.register_buffer("scale", np.ones(4, np.float32))
        self.register_buffer("cache", np.zeros(2, np.float32), persistent=False)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(np.zeros(1, np.float32))
        self.layer1 = nn.Sequential(Block(3), Block(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.layer1(x).mean(dim=(2, 3))
        return self.head(y) + self.alpha


# ---- registration and naming ---------------------------------------------------------------
def test_named_parameters_order_and_torch_names():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["alpha",
                     "layer1.0.conv.weight", "layer1.0.bn.weight", "layer1.0.bn.bias",
                     "layer1.1.conv.weight", "layer1.1.bn.weight", "layer1.1.bn.bias",
                     "head.weight", "head.bias"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in Net().parameters())


def test_buffers_children_modules():
    net = Net()
    assert [n for n, _ in net.named_children()] == ["layer1", "head"]
    assert [n for n, _ in net.named_modules()] == [
        "", "layer1", "layer1.0", "layer1.0.conv", "layer1.0.bn", "layer1.1", "layer1.1.conv",
        "layer1.1.bn", "head"]
    bufs = [n for n, _ in net.named_buffers()]
    assert "layer1.0.cache" in bufs and "layer1.0.bn.num_batches_tracked" in bufs
    assert len(list(net.buffers())) == len(bufs)
    assert list(net.children())[1] is net.head


def test_shared_parameter_listed_once_and_reassignment_moves_registry():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    m = nn.Module()
    m.x = nn.Parameter(np.zeros(2, np.float32))
    m.x = nn.Linear(1, 1)                      # a parameter name reused for a module
    assert "x" not in m._parameters and "x" in m._modules
    with pytest.raises(TypeError, match="'w'"):
        m.register_parameter("w", np.zeros(3))
    m.register_parameter("w", None)
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = mr.Tensor(np.zeros(3, np.float32))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        m.nope
    with pytest.raises(AttributeError, match=r"super\(\)\.__init__"):
        class Bad(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(np.zeros(1, np.float32))
        Bad()


def test_repr_like_torch():
    text = repr(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.ReLU()))
    assert text == ("Sequential(\n"
                    "  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)\n"
                    "  (1): ReLU()\n)")


def test_containers():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    assert len(layers) == 4 and isinstance(layers[-1], nn.ReLU) and len(layers[1:]) == 3
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    d = nn.ModuleDict(OrderedDict(a=nn.Linear(1, 1), b=nn.ReLU()))
    assert list(d.keys()) == ["a", "b"] and "a" in d
    seq = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 1, 1), act=nn.ReLU()))
    assert list(seq.state_dict()) == ["conv.weight", "conv.bias"]
    assert isinstance(seq[1], nn.ReLU) and isinstance(seq[:1], nn.Sequential)
    with pytest.raises(IndexError, match="5"):
        seq[5]


# ---- state dict ----------------------------------------------------------------------------
def test_state_dict_keys_and_round_trip():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert list(sd) == ["alpha",
                        "layer1.0.scale", "layer1.0.conv.weight", "layer1.0.bn.weight",
                        "layer1.0.bn.bias", "layer1.0.bn.running_mean", "layer1.0.bn.running_var",
                        "layer1.0.bn.num_batches_tracked",
                        "layer1.1.scale", "layer1.1.conv.weight", "layer1.1.bn.weight",
                        "layer1.1.bn.bias", "layer1.1.bn.running_mean", "layer1.1.bn.running_var",
                        "layer1.1.bn.num_batches_tracked", "head.weight", "head.bias"]
    assert "layer1.0.cache" not in sd                      # non-persistent
    assert sd["layer1.0.bn.num_batches_tracked"].dtype == np.int64
    sd["layer1.0.bn.running_mean"][:] = 3.0
    sd["head.weight"] = sd["head.weight"].astype(np.float64)   # cast back on load
    sd["layer1.0.bn.num_batches_tracked"][...] = 7
    w_before = b.head.weight
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.head.weight is w_before and b.head.weight.dtype == np.float32   # in place
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    # a state dict is a snapshot
    snapshot = a.state_dict()
    a.head.weight.data += 1
    assert not np.array_equal(snapshot["head.weight"], a.head.weight.data)


def test_load_state_dict_strict_errors_name_keys_and_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["head.bias"]
    sd["head.extra"] = np.zeros(1)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys (1): head.bias" in msg and "unexpected keys (1): head.extra" in msg
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.bias"] and result.unexpected_keys == ["head.extra"]

    sd = net.state_dict()
    sd["layer1.0.conv.weight"] = np.zeros((4, 3, 7, 7), np.float32)
    sd["head.weight"] = sd["head.weight"] + 1
    with pytest.raises(RuntimeError, match=r"shape mismatch for layer1\.0\.conv\.weight: "
                                           r"checkpoint \(4, 3, 7, 7\) vs model \(4, 3, 3, 3\)"):
        net.load_state_dict(sd, strict=False)        # shapes are checked even when not strict
    np.testing.assert_array_equal(net.head.weight.data + 1, sd["head.weight"])  # nothing half-loaded


def test_batchnorm_checkpoint_compatibility():
    # a torchvision ResNet checkpoint (BatchNorm2d) loads into FrozenBatchNorm2d ...
    bn = nn.BatchNorm2d(3)
    frozen = nn.FrozenBatchNorm2d(3)
    frozen.load_state_dict(bn.state_dict())
    assert list(frozen.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert list(frozen.parameters()) == []
    # ... and an old one without the counter loads into BatchNorm2d
    sd = bn.state_dict()
    del sd["num_batches_tracked"]
    nn.BatchNorm2d(3).load_state_dict(sd)


# ---- modes, grads, apply, dtype/device -----------------------------------------------------
def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.layer1.eval()
    assert net.training and not net.layer1[1].bn.training


def test_zero_grad_and_backward_reaches_every_parameter():
    net = Net()
    x = mr.Tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_apply_requires_grad_double_and_deepcopy():
    net = Net()
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and visited.index("Conv2d") < visited.index("Block")

    def init_linear(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)
    net.apply(init_linear)
    assert np.all(net.head.weight.data == 0.5)
    net.layer1.requires_grad_(False)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["alpha", "head.weight", "head.bias"]

    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.layer1[0].bn.running_mean.dtype == np.float64
    assert net.layer1[0].bn.num_batches_tracked.dtype == np.int64
    assert net.to("cpu") is net

    twin = copy.deepcopy(net)
    twin.head.weight.data += 1
    assert np.all(net.head.weight.data == 0.5) and twin.head.weight._id != net.head.weight._id


def test_forward_hook():
    net = Net()
    seen = []
    handle = net.layer1.register_forward_hook(lambda m, inputs, out: seen.append(out.shape))
    net(mr.Tensor(np.zeros((1, 3, 4, 4), np.float32)))
    handle.remove()
    net(mr.Tensor(np.zeros((1, 3, 4, 4), np.float32)))
    assert seen == [(1, 4, 4, 4)]


# ---- init ----------------------------------------------------------------------------------
def test_fan_and_gain_as_torch():
    w = np.empty((64, 32, 3, 5), np.float32)
    assert nn.init._calculate_fan_in_and_fan_out(w) == (32 * 15, 64 * 15)
    with pytest.raises(ValueError, match="fewer than 2"):
        nn.init._calculate_fan_in_and_fan_out(np.empty(3))
    assert nn.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_normal_(w, mode="fan_middle")


@pytest.mark.parametrize("fn, expected_std", [
    (lambda t: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / (64 * 9))),
    (lambda t: nn.init.kaiming_uniform_(t, a=1), math.sqrt(2 / (1 + 1)) / math.sqrt(32 * 9)),
    (lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5)), 1 / math.sqrt(32 * 9) / math.sqrt(3)),
    (lambda t: nn.init.xavier_uniform_(t), math.sqrt(2 / (32 * 9 + 64 * 9))),
    (lambda t: nn.init.normal_(t, std=0.01), 0.01),
])
def test_init_statistics(fn, expected_std):
    w = nn.Parameter(np.empty((64, 32, 3, 3), np.float32))
    fn(w)
    assert w.dtype == np.float32
    assert abs(w.data.mean()) < 0.05 * expected_std
    assert w.data.std() == pytest.approx(expected_std, rel=0.03)


def test_init_reproducible_and_constant():
    nn.init.manual_seed(3)
    a = nn.Conv2d(4, 8, 3).weight.data.copy()
    nn.init.manual_seed(3)
    np.testing.assert_array_equal(a, nn.Conv2d(4, 8, 3).weight.data)
    b = nn.init.uniform_(np.empty(1000), -2, 3, generator=np.random.default_rng(1))
    assert b.min() >= -2 and b.max() <= 3 and b.mean() == pytest.approx(0.5, abs=0.15)
    assert np.all(nn.init.ones_(np.empty(3)) == 1) and np.all(nn.init.zeros_(np.empty(3)) == 0)


def test_layer_default_init_bounds_as_torch():
    conv = nn.Conv2d(16, 8, 3)                         # fan_in = 144: U(-1/12, 1/12)
    assert np.abs(conv.weight.data).max() <= 1 / 12 and np.abs(conv.bias.data).max() <= 1 / 12
    assert conv.weight.data.std() == pytest.approx(1 / 12 / math.sqrt(3), rel=0.1)
    lin = nn.Linear(100, 50)
    assert np.abs(lin.weight.data).max() <= 0.1 and np.abs(lin.bias.data).max() <= 0.1
    deconv = nn.ConvTranspose2d(8, 4, 2, stride=2)      # weight (8, 4, 2, 2): fan_in = 4 * 4
    assert deconv.weight.shape == (8, 4, 2, 2) and np.abs(deconv.bias.data).max() <= 0.25


# ---- layers --------------------------------------------------------------------------------
def _x(*shape, seed=0):
    return mr.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("layer, in_shape, out_shape", [
    (lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 9, 9), (2, 8, 5, 5)),
    (lambda: nn.Conv2d(4, 6, (1, 3), groups=2, bias=False), (1, 4, 5, 5), (1, 6, 5, 3)),
    (lambda: nn.Conv2d(2, 2, 3, padding=2, dilation=2), (1, 2, 6, 6), (1, 2, 6, 6)),
    (lambda: nn.ConvTranspose2d(4, 3, 2, stride=2), (2, 4, 7, 7), (2, 3, 14, 14)),
    (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), (1, 4, 5, 5), (1, 2, 10, 10)),
    (lambda: nn.Linear(5, 3), (4, 2, 5), (4, 2, 3)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 8, 8), (1, 2, 4, 4)),
    (lambda: nn.MaxPool2d(2), (1, 2, 7, 7), (1, 2, 3, 3)),
    (lambda: nn.MaxPool2d(2, ceil_mode=True), (1, 2, 7, 7), (1, 2, 4, 4)),
    (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4), (2, 3, 4, 4)),
    (lambda: nn.FrozenBatchNorm2d(3), (2, 3, 4, 4), (2, 3, 4, 4)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3), (2, 4, 3, 3)),
    (lambda: nn.Flatten(), (2, 3, 4, 4), (2, 48)),
    (lambda: nn.Identity(), (2, 3), (2, 3)),
    (lambda: nn.ReLU(inplace=True), (2, 3), (2, 3)),
])
def test_layer_output_shapes(layer, in_shape, out_shape):
    y = layer()(_x(*in_shape))
    assert y.shape == out_shape and y.dtype == np.float32


@pytest.mark.parametrize("make, match", [
    (lambda: nn.Conv2d(3, 8, 3, groups=2), "in_channels=3 must be divisible by groups=2"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), "out_channels=6 must be divisible by groups=4"),
    (lambda: nn.Conv2d(3, 8, 0), "kernel_size must be >= 1"),
    (lambda: nn.Conv2d(3, 8, 3, stride=(1, 2, 3)), "stride must be an int or a pair"),
    (lambda: nn.Conv2d(3, 8, 3, padding=-1), "padding must be >= 0"),
    (lambda: nn.Conv2d(0, 8, 3), "in_channels must be a positive int"),
    (lambda: nn.Conv2d(3, 8, 2.0), "kernel_size must be an int or a pair of ints, got 2.0"),
    (lambda: nn.Conv2d(3, 8, (1, 2 ** 40)), r"kernel_size must be at most 2147483647, got \(1, 1099511627776\)"),
    (lambda: nn.Conv2d(3, 8, 3, stride=2 ** 40), "stride must be at most 2147483647"),
    (lambda: nn.MaxPool2d(2, stride=0.5), "stride must be an int or a pair of ints, got 0.5"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2), "output_padding=2"),
    (lambda: nn.Linear(3.5, 2), "in_features"),
    (lambda: nn.GroupNorm(3, 8), "num_channels=8 must be divisible by num_groups=3"),
    (lambda: nn.BatchNorm2d(4, momentum=2), "momentum"),
    (lambda: nn.MaxPool2d(2, padding=2), "padding"),
    (lambda: nn.Linear(3, 2, dtype=np.int32), "dtype"),
])
def test_constructor_errors_name_the_argument(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_norm_layers_check_channels():
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm2d(3)(_x(2, 4, 3, 3))
    with pytest.raises(ValueError, match="4-D"):
        nn.FrozenBatchNorm2d(3)(_x(2, 3, 3))


def test_batchnorm2d_running_stats_torch_semantics():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm2d(3, momentum=0.1)
    xs = [rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1 for _ in range(3)]
    mean, var = np.zeros(3), np.ones(3)
    for x in xs:
        y = bn(mr.Tensor(x)).data
        m = x.mean(axis=(0, 2, 3))
        v_biased, v_unbiased = x.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
        expected = (x - m[None, :, None, None]) / np.sqrt(v_biased + 1e-5)[None, :, None, None]
        np.testing.assert_allclose(y, expected, atol=1e-4)
        mean, var = 0.9 * mean + 0.1 * m, 0.9 * var + 0.1 * v_unbiased
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 3
    bn.eval()                                   # eval: running statistics, no update
    x = xs[0]
    y = bn(mr.Tensor(x)).data
    expected = (x - mean[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None]
    np.testing.assert_allclose(y, expected, atol=1e-4)
    assert int(bn.num_batches_tracked) == 3
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5)


def test_batchnorm2d_cumulative_average_and_no_tracking():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm2d(2, momentum=None)
    xs = [rng.standard_normal((3, 2, 4, 4)).astype(np.float32) + i for i in range(3)]
    for x in xs:
        bn(mr.Tensor(x))
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(axis=(0, 2, 3)) for x in xs], axis=0),
                               rtol=1e-5)
    free = nn.BatchNorm2d(2, track_running_stats=False, affine=False).eval()
    assert list(free.state_dict()) == [] and list(free.parameters()) == []
    y = free(mr.Tensor(xs[2])).data                     # batch statistics even in eval
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_frozen_batchnorm_and_groupnorm_math():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    fbn = nn.FrozenBatchNorm2d(4)
    fbn.weight[:] = [1, 2, 3, 4]
    fbn.bias[:] = 0.5
    fbn.running_mean[:] = 0.25
    fbn.running_var[:] = 4.0
    expected = (x - 0.25) / np.sqrt(4 + 1e-5) * np.array([1, 2, 3, 4])[None, :, None, None] + 0.5
    np.testing.assert_allclose(fbn(mr.Tensor(x)).data, expected, rtol=1e-5, atol=1e-5)

    gn = nn.GroupNorm(2, 4)
    g = x.reshape(2, 2, -1)
    expected = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(gn(mr.Tensor(x)).data, expected, atol=1e-5)


def test_double_module_passes_gradcheck_and_bad_device():
    nn.init.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4),
                        nn.ConvTranspose2d(4, 2, 2, stride=2)).double()
    x = mr.Tensor(np.random.default_rng(0).standard_normal((1, 2, 3, 3)), requires_grad=True)
    mr.gradcheck(lambda t: net(t), [x])
    with pytest.raises(ValueError, match="'gpu'"):
        net.to("gpu")
