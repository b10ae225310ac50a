"""The backbones: ResNet/ResNeXt bodies, the FPN, and build_backbone for every preset.

Shapes, strides and names are checked on small inputs; the numerical match with torchvision
lives in tests/parity/test_backbone_parity.py.
"""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import nn
from minimrcnn.config import PRESETS, get_config
from minimrcnn.models import build_backbone, build_res5_head
from minimrcnn.modeling.fpn import FeaturePyramidNetwork, LastLevelMaxPool
from minimrcnn.modeling.resnet import Bottleneck, ResNet, classroom_resnet, freeze_layers, resnet50

FPN_NAMES = ["0", "1", "2", "3", "pool"]
FPN_STRIDES = dict(zip(FPN_NAMES, [4, 8, 16, 32, 64]))


def _images(h, w, n=1, seed=0):
    return mr.Tensor(np.random.default_rng(seed).random((n, 3, h, w)).astype(np.float32))


def _expected_strides(cfg):
    return FPN_STRIDES if cfg.features == "fpn" else {"0": 16 if cfg.features == "c4" else 32}


def _expected_channels(cfg):
    if cfg.features == "fpn":
        return cfg.fpn_channels
    widths = cfg.classroom_widths if cfg.backbone == "classroom" else (64, 128, 256, 512)
    return 4 * widths[2 if cfg.features == "c4" else 3]


# ---- every preset ----------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_backbone_names_shapes_strides(preset):
    cfg = get_config(preset)
    backbone = build_backbone(cfg)
    strides = _expected_strides(cfg)
    assert dict(backbone.feature_strides) == strides
    assert list(backbone.feature_strides) == list(strides)        # finest first
    assert backbone.out_channels == _expected_channels(cfg)
    # one forward for the cheap models and for R-50; the bigger ones share its code
    if cfg.backbone == "resnet" and (cfg.depth != 50 or preset == "tv_keypoint_r50_fpn"):
        return
    h, w = (64, 96) if cfg.backbone == "classroom" else (64, 64)
    with mr.no_grad():
        out = backbone(_images(h, w))
    assert isinstance(out, OrderedDict) and list(out) == list(strides)
    for name, f in out.items():
        s = strides[name]
        assert f.shape == (1, backbone.out_channels, math.ceil(h / s), math.ceil(w / s)), name
        assert f.dtype == np.float32 and np.isfinite(f.data).all()


def test_state_dict_keys_are_torchvisions():
    backbone = build_backbone(get_config("tv_r50_fpn"))
    keys = list(backbone.state_dict())
    for key in ["body.conv1.weight", "body.bn1.running_var", "body.layer1.0.conv1.weight",
                "body.layer1.0.downsample.0.weight", "body.layer1.0.downsample.1.weight",
                "body.layer3.5.bn3.bias", "body.layer4.2.conv3.weight",
                "fpn.inner_blocks.0.0.weight", "fpn.inner_blocks.3.0.bias",
                "fpn.layer_blocks.3.0.weight"]:
        assert key in keys, key
    assert not any("num_batches_tracked" in k or "fc." in k for k in keys)
    assert len(keys) == 281    # 265 body entries (53 FrozenBN x 4 + 53 convs) + 16 FPN


# ---- ResNet body -----------------------------------------------------------------------------
def test_resnet50_parameter_count():
    # torchvision's resnet50 has 25,557,032 parameters; without fc (2048*1000 + 1000): 23,508,032.
    # With FrozenBatchNorm2d its 53,120 BN weights and biases are buffers, not parameters.
    body = resnet50(norm_layer=nn.BatchNorm2d)
    assert sum(p.data.size for p in body.parameters()) == 23_508_032
    body = resnet50()
    assert sum(p.data.size for p in body.parameters()) == 23_508_032 - 53_120
    assert [len(getattr(body, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert dict(body.stage_channels) == {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}


def test_resnet_returns_requested_stages_in_order():
    body = classroom_resnet(return_layers={"layer3": "c4", "layer1": "c2"})
    with mr.no_grad():
        out = body(_images(32, 64))
    assert list(out) == ["c2", "c4"]                        # network order, not dict order
    assert out["c2"].shape == (1, 64, 8, 16) and out["c4"].shape == (1, 256, 2, 4)
    with pytest.raises(ValueError, match="return_layers"):
        classroom_resnet(return_layers={"layer5": "0"})


@pytest.mark.parametrize("trainable_layers, trained", [
    (0, set()),
    (3, {"layer2", "layer3", "layer4"}),
    (5, {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}),
])
def test_freezing_follows_trainable_layers(trainable_layers, trained):
    cfg = get_config("classroom_fpn", norm="bn", trainable_layers=trainable_layers)
    backbone = build_backbone(cfg)
    body_trained = {n.split(".")[1] for n, p in backbone.named_parameters()
                    if n.startswith("body.") and p.requires_grad}
    assert body_trained == trained
    assert all(p.requires_grad for n, p in backbone.named_parameters() if n.startswith("fpn."))


def test_freeze_layers_checks_its_argument():
    with pytest.raises(ValueError, match="trainable_layers"):
        freeze_layers(classroom_resnet(), 6)


def test_resnext_bottleneck_width():
    # width = int(planes * width_per_group / 64) * groups
    block = Bottleneck(256, 64, groups=32, base_width=4)            # ResNeXt-50 32x4d, res2
    assert block.conv1.weight.shape == (128, 256, 1, 1)
    assert block.conv2.weight.shape == (128, 4, 3, 3) and block.conv2.groups == 32
    assert block.conv3.weight.shape == (256, 128, 1, 1)
    block = Bottleneck(1024, 512, groups=32, base_width=8)          # ResNeXt-101 32x8d, res5
    assert block.conv2.weight.shape == (2048, 64, 3, 3)
    with mr.no_grad():
        y = Bottleneck(64, 16, groups=4, base_width=16)(mr.Tensor(np.ones((1, 64, 5, 5), np.float32)))
    assert y.shape == (1, 64, 5, 5)


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_stride_placement(stride_in_1x1):
    body = ResNet((1, 1), planes=(8, 16), stem_channels=8, stride_in_1x1=stride_in_1x1)
    block = body.layer2[0]
    strides = (block.conv1.stride, block.conv2.stride)
    assert strides == (((2, 2), (1, 1)) if stride_in_1x1 else ((1, 1), (2, 2)))
    assert block.downsample[0].stride == (2, 2)
    assert body.layer1[0].conv1.stride == body.layer1[0].conv2.stride == (1, 1)
    with mr.no_grad():
        out = body(_images(33, 47))
    assert out["layer2"].shape == (1, 64, 5, 6)                      # ceil(33/8), ceil(47/8)


def test_gradients_reach_every_trainable_parameter():
    cfg = get_config("classroom_fpn", classroom_blocks=(1, 2, 1, 1))
    backbone = build_backbone(cfg)
    out = backbone(_images(64, 96, n=2))
    rng = np.random.default_rng(1)
    loss = None
    for f in out.values():     # a random linear function of every output level
        term = (f * mr.Tensor(rng.standard_normal(f.shape).astype(np.float32))).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    trainable = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(backbone.parameters()))      # classroom: all 5 train
    for name, p in trainable:
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.shape == p.shape and np.isfinite(p.grad).all(), name
        assert np.abs(p.grad).max() > 0, f"{name} got an all-zero gradient"


def test_bad_images_are_rejected():
    backbone = build_backbone(get_config("classroom_c5"))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(1, 4, 32, 32\)"):
        backbone(mr.Tensor(np.zeros((1, 4, 32, 32), np.float32)))


# ---- FPN -------------------------------------------------------------------------------------
def test_fpn_with_sizes_not_divisible_by_32():
    backbone = build_backbone(get_config("classroom_fpn"))
    with mr.no_grad():
        out = backbone(_images(65, 97))
    sizes = {k: v.shape[-2:] for k, v in out.items()}
    assert sizes == {"0": (17, 25), "1": (9, 13), "2": (5, 7), "3": (3, 4), "pool": (2, 2)}


def _nearest(a, size):
    """Reference nearest resize of (N, C, h, w) to ``size``: source index floor(o * in / out)."""
    rows = np.floor(np.arange(size[0]) * (a.shape[2] / size[0])).astype(int)
    cols = np.floor(np.arange(size[1]) * (a.shape[3] / size[1])).astype(int)
    return a[:, :, rows][:, :, :, cols]


def test_fpn_top_down_pathway():
    in_channels, out_channels = [3, 5, 7], 4
    fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
    fpn.double()
    # make each 3x3 output conv the identity, so the outputs are the merged maps inner_i
    for block in fpn.layer_blocks:
        block[0].weight.data[...] = 0
        block[0].weight.data[np.arange(out_channels), np.arange(out_channels), 1, 1] = 1
    rng = np.random.default_rng(0)
    for block in fpn.inner_blocks:
        block[0].bias.data[...] = rng.standard_normal(out_channels)
    sizes = [(9, 13), (5, 7), (3, 4)]
    feats = [rng.standard_normal((2, c) + s) for c, s in zip(in_channels, sizes)]
    out = fpn(OrderedDict((n, mr.Tensor(f)) for n, f in zip(["a", "b", "c"], feats)))
    assert list(out) == ["a", "b", "c", "pool"]

    def lateral(i):
        w, b = fpn.inner_blocks[i][0].weight.data[:, :, 0, 0], fpn.inner_blocks[i][0].bias.data
        return np.einsum("oc,nchw->nohw", w, feats[i]) + b.reshape(1, -1, 1, 1)

    expected = [None, None, lateral(2)]
    for i in (1, 0):
        expected[i] = lateral(i) + _nearest(expected[i + 1], sizes[i])
    for name, e in zip(["a", "b", "c"], expected):
        np.testing.assert_allclose(out[name].data, e, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out["pool"].data, out["c"].data[:, :, ::2, ::2])   # 1x1/2 max-pool


def test_fpn_initialisation_and_old_key_names():
    fpn = FeaturePyramidNetwork([8, 16], 32)
    w = fpn.layer_blocks[0][0].weight.data
    bound = math.sqrt(3.0 / (32 * 9))      # kaiming_uniform_(a=1): gain 1, U(+-sqrt(3 / fan_in))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not fpn.inner_blocks[1][0].bias.data.any()
    old = {k.replace(".0.weight", ".weight").replace(".0.bias", ".bias"): v + 1
           for k, v in fpn.state_dict().items()}
    assert "inner_blocks.0.weight" in old
    FeaturePyramidNetwork([8, 16], 32).load_state_dict(old)      # renamed, strict: all match
    fresh = FeaturePyramidNetwork([8, 16], 32)
    fresh.load_state_dict(old)
    np.testing.assert_array_equal(fresh.layer_blocks[1][0].bias.data, 1)


# ---- res5 head of the C4 model ---------------------------------------------------------------
def test_res5_head_runs_on_7x7_rois_at_stride_1():
    cfg = get_config("classroom_c4")
    head = build_res5_head(cfg)
    assert (head.in_channels, head.out_channels) == (256, 512)
    rois = mr.Tensor(np.random.default_rng(0).standard_normal((5, 256, 7, 7)).astype(np.float32))
    with mr.no_grad():
        assert head(rois).shape == (5, 512, 7, 7)
    assert head[0].conv2.stride == (1, 1) and head[0].downsample[0].stride == (1, 1)
    assert all(p.requires_grad for p in head.parameters())
    assert not any(p.requires_grad for p in
                   build_res5_head(cfg.replace(trainable_layers=0)).parameters())


def test_res5_head_matches_layer4_of_resnet50():
    head = build_res5_head(get_config("paper_r50_c4"))
    layer4 = {k[len("layer4."):]: v.shape for k, v in resnet50().state_dict().items()
              if k.startswith("layer4.")}
    assert {k: v.shape for k, v in head.state_dict().items()} == layer4
