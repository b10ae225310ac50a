"""Parity of the ResNet/ResNeXt-FPN backbones with torchvision's, weights copied by name.

torchvision's backbones start with random weights and identity FrozenBatchNorm statistics; the
statistics are set to random but ImageNet-like values (positive scales, small shifts), so that
every term of the frozen normalisation is exercised.
"""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models import resnet as tv_resnet  # noqa: E402
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: E402
from torchvision.ops import misc as tv_misc  # noqa: E402

import minimrcnn as mr  # noqa: E402
from minimrcnn import nn  # noqa: E402
from minimrcnn.config import get_config  # noqa: E402
from minimrcnn.modeling.backbone import build_backbone  # noqa: E402
from minimrcnn.modeling.resnet import (ResNet, get_norm_layer, resnet50, resnet101,  # noqa: E402
                                       resnext101_32x8d)


def _torchvision_fpn_backbone(arch, trainable_layers=3, seed=0):
    torch.manual_seed(seed)
    body = getattr(tv_resnet, arch)(weights=None, norm_layer=tv_misc.FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, trainable_layers)
    g = torch.Generator().manual_seed(seed)
    for m in backbone.modules():
        if isinstance(m, tv_misc.FrozenBatchNorm2d):
            n = m.weight.numel()
            m.weight.copy_(0.2 + 0.6 * torch.rand(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return backbone.eval()


def _load_by_name(ours, theirs):
    sd = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    assert set(sd) == set(ours.state_dict()), set(sd) ^ set(ours.state_dict())
    ours.load_state_dict(sd)


def _compare(ours, theirs, image, dtype, rtol):
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours.astype(dtype)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(image.astype(dtype)))
    with mr.no_grad():
        got = ours(mr.Tensor(image.astype(dtype)))
    assert list(got) == list(expected) == ["0", "1", "2", "3", "pool"]
    for name, e in expected.items():
        e = e.numpy()
        assert got[name].shape == e.shape and got[name].dtype == dtype, name
        err = np.abs(got[name].data - e).max() / np.abs(e).max()
        assert err < rtol, f"level {name}: max |ours - torchvision| / max |torchvision| = {err:.2e}"


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((1, 3, 64, 96))


@pytest.fixture(scope="module")
def r50_fpn_pair():
    theirs = _torchvision_fpn_backbone("resnet50")
    # torchvision's resnet_fpn_backbone keeps FrozenBatchNorm2d's eps at 1e-5 (only the COCO
    # detection weights are loaded with eps 0, which the tv_r50_fpn preset follows)
    ours = build_backbone(get_config("tv_r50_fpn", frozen_bn_eps=1e-5))
    _load_by_name(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_resnet50_fpn_matches_torchvision(r50_fpn_pair, image, dtype, rtol):
    ours, theirs = r50_fpn_pair
    assert ours.out_channels == theirs.out_channels
    _compare(ours, theirs, image, dtype, rtol)
    # the same parameters are frozen (trainable_layers=3: layer2..4 and the FPN train)
    assert ([n for n, p in ours.named_parameters() if p.requires_grad]
            == [n for n, p in theirs.named_parameters() if p.requires_grad])


def test_resnext50_32x4d_fpn_matches_torchvision(image):
    theirs = _torchvision_fpn_backbone("resnext50_32x4d", trainable_layers=5)
    ours = build_backbone(get_config("tv_r50_fpn", groups=32, width_per_group=4, trainable_layers=5,
                                     frozen_bn_eps=1e-5))
    _load_by_name(ours, theirs)
    _compare(ours, theirs, image, np.float32, 1e-4)


@pytest.mark.parametrize("ours_fn, arch", [(resnet50, "resnet50"), (resnet101, "resnet101"),
                                           (resnext101_32x8d, "resnext101_32x8d")])
def test_parameter_count_equals_torchvision(ours_fn, arch):
    theirs = getattr(tv_resnet, arch)(weights=None)
    expected = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith("fc."))
    ours = ours_fn(norm_layer=nn.BatchNorm2d)
    assert sum(p.data.size for p in ours.parameters()) == expected
    assert ({k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
            == {k: v.shape for k, v in ours.state_dict().items()})


def test_groupnorm_resnet_gradients_match_torchvision():
    """A one-block-per-stage ResNet with GroupNorm(32): outputs of every stage and the
    gradients of every parameter under a random linear loss, in float64."""
    torch.manual_seed(0)
    theirs = tv_resnet.ResNet(tv_resnet.Bottleneck, [1, 1, 1, 1],
                              norm_layer=lambda c: torch.nn.GroupNorm(32, c)).double()
    with torch.no_grad():      # non-trivial affine parameters
        for m in theirs.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    ours = ResNet((1, 1, 1, 1), norm_layer=get_norm_layer("gn")).double()
    sd = {k: v.detach().numpy() for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(sd)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 40, 40))
    feats = OrderedDict()
    h = theirs.maxpool(theirs.relu(theirs.bn1(theirs.conv1(torch.from_numpy(x)))))
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        h = getattr(theirs, name)(h)
        feats[name] = h
    got = ours(mr.Tensor(x))
    weights = {k: rng.standard_normal(tuple(v.shape)) for k, v in feats.items()}
    loss_t = sum((v * torch.from_numpy(weights[k])).sum() for k, v in feats.items())
    loss_o = None
    for k, v in got.items():
        np.testing.assert_allclose(v.data, feats[k].detach().numpy(), rtol=1e-9, atol=1e-9)
        term = (v * mr.Tensor(weights[k])).sum()
        loss_o = term if loss_o is None else loss_o + term
    loss_t.backward()
    loss_o.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        g = theirs_params[name].grad.numpy()
        np.testing.assert_allclose(p.grad, g, rtol=1e-7, atol=1e-9 * np.abs(g).max(), err_msg=name)
