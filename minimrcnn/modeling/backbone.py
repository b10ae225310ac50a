"""The backbone: the convolutional network run once over the whole image (Section 3).

The paper names a backbone *network-depth-features*; ``cfg.features`` picks the features:

- ``"fpn"`` (ResNet-50-FPN, Figure 4 right): the ResNet body returns C2..C5 and a Feature
  Pyramid Network turns them into P2..P6, named "0", "1", "2", "3", "pool" (torchvision), at
  strides 4, 8, 16, 32, 64, each with ``cfg.fpn_channels`` channels.
- ``"c4"`` (ResNet-50-C4, Figure 4 left): the body stops after res4 (``layer3``) and returns
  {"0": C4} at stride 16; res5 becomes the box head (:func:`build_res5_head`).
- ``"c5"``: the whole body, {"0": C5} at stride 32 (Table 2d's third row).

Every backbone module has ``body`` (the ResNet), ``out_channels`` (channels of every returned
map) and ``feature_strides`` (OrderedDict ``name -> stride``, for the anchor generator and the
RoI poolers), and ``forward(images)``: (N, 3, H, W) -> OrderedDict ``name -> (N, C, H/s, W/s)``
(sizes rounded up). Under the model the parameters are named as in torchvision's
maskrcnn_resnet50_fpn: ``backbone.body.layer1.0.conv1.weight``, ``backbone.fpn.inner_blocks.0.0.weight``.
"""
from collections import OrderedDict

from .. import nn
from .fpn import FeaturePyramidNetwork, LastLevelMaxPool
from .resnet import RESNET_BLOCKS, ResNet, freeze_layers, get_norm_layer, init_weights, make_stage

__all__ = ["build_backbone", "build_res5_head", "build_resnet_body", "BackboneWithFPN",
           "BackboneWithoutFPN"]


def _check_images(x, name):
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, 3, H, W), got {tuple(x.shape)}")


class BackboneWithFPN(nn.Module):
    """ResNet body + FPN, as torchvision's ``BackboneWithFPN``.

    Args:
        body: a :class:`ResNet` whose ``forward`` returns the maps the FPN reads (C2..C5).
        in_channels_list: their channels, finest first.
        out_channels: the FPN's channels (256).
        extra_blocks: levels above the last (default :class:`LastLevelMaxPool`: P6, "pool").
        norm_layer: optional norm after the FPN's convs (default none, as torchvision).

    ``feature_strides`` defaults to the body's stage strides, doubled for each extra level.
    """

    def __init__(self, body, in_channels_list, out_channels, extra_blocks=None, norm_layer=None,
                 feature_strides=None):
        super().__init__()
        extra_blocks = LastLevelMaxPool() if extra_blocks is None else extra_blocks
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels_list, out_channels, extra_blocks, norm_layer)
        self.out_channels = out_channels
        if feature_strides is None:
            feature_strides = OrderedDict((name, body.stage_strides[stage])
                                          for stage, name in body.return_layers.items())
            if isinstance(extra_blocks, LastLevelMaxPool):
                feature_strides["pool"] = 2 * list(feature_strides.values())[-1]
        self.feature_strides = OrderedDict(feature_strides)

    def forward(self, x):
        _check_images(x, "BackboneWithFPN")
        return self.fpn(self.body(x))


class BackboneWithoutFPN(nn.Module):
    """A single-scale backbone (C4 or C5): the body's output is the feature map, {"0": C}."""

    def __init__(self, body):
        super().__init__()
        if len(body.return_layers) != 1:
            raise ValueError(f"BackboneWithoutFPN: the body must return one map, got "
                             f"{dict(body.return_layers)!r}")
        self.body = body
        self.out_channels = body.out_channels
        self.feature_strides = OrderedDict((name, body.stage_strides[stage])
                                           for stage, name in body.return_layers.items())

    def forward(self, x):
        _check_images(x, "BackboneWithoutFPN")
        return self.body(x)


def _resnet_args(cfg):
    """(blocks per stage, bottleneck widths, stem width) of ``cfg``'s ResNet."""
    if cfg.backbone == "classroom":
        return tuple(cfg.classroom_blocks), tuple(cfg.classroom_widths), cfg.classroom_widths[0]
    if cfg.backbone == "resnet":
        return RESNET_BLOCKS[cfg.depth], (64, 128, 256, 512), 64
    raise ValueError(f"config key 'backbone' must be 'resnet' or 'classroom', got {cfg.backbone!r}")


def build_resnet_body(cfg, num_stages=4, return_layers=None):
    """The ResNet (or ResNeXt, or classroom ResNet) of ``cfg`` with its first ``num_stages``
    stages, frozen as ``cfg.trainable_layers`` says."""
    blocks, widths, stem = _resnet_args(cfg)
    body = ResNet(blocks[:num_stages], planes=widths, stem_channels=stem, groups=cfg.groups,
                  width_per_group=cfg.width_per_group, stride_in_1x1=cfg.stride_in_1x1,
                  norm_layer=get_norm_layer(cfg.norm, cfg.frozen_bn_eps), return_layers=return_layers)
    return freeze_layers(body, cfg.trainable_layers)


def build_backbone(cfg):
    """The backbone module for ``cfg`` (see the module docstring for the three kinds)."""
    if cfg.features == "fpn":
        return_layers = {f"layer{i + 1}": str(i) for i in range(4)}
        body = build_resnet_body(cfg, 4, return_layers)
        return BackboneWithFPN(body, list(body.stage_channels.values()), cfg.fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    if cfg.features == "c4":
        return BackboneWithoutFPN(build_resnet_body(cfg, 3, {"layer3": "0"}))
    if cfg.features == "c5":
        return BackboneWithoutFPN(build_resnet_body(cfg, 4, {"layer4": "0"}))
    raise ValueError(f"config key 'features' must be 'fpn', 'c4' or 'c5', got {cfg.features!r}")


def build_res5_head(cfg, stride=1):
    """res5 (``layer4``) as the C4 model's box head trunk, Figure 4 (left).

    The paper alters res5 "so that the first conv operates on a 7x7 RoI with stride 1 (instead
    of 14x14 / stride 2)": the first block and its projection shortcut get ``stride`` (1), so
    pooled RoI features (K, C4 channels, 7, 7) -> (K, 4 * res5 width, 7, 7), e.g.
    (K, 1024, 7, 7) -> (K, 2048, 7, 7) for R-50. The box head then averages over the 7x7.

    A Sequential of Bottlenecks with the names of torchvision's ``layer4`` ("0.conv1.weight",
    "0.downsample.0.weight", ...), so ImageNet layer4 weights load into it; ``out_channels``
    and ``in_channels`` are attributes. It trains unless ``cfg.trainable_layers == 0`` (which
    freezes layer4 first).
    """
    blocks, widths, _ = _resnet_args(cfg)
    in_channels = widths[2] * 4
    head = make_stage(in_channels, widths[3], blocks[3], stride, groups=cfg.groups,
                      base_width=cfg.width_per_group, norm_layer=get_norm_layer(cfg.norm, cfg.frozen_bn_eps),
                      stride_in_1x1=cfg.stride_in_1x1)
    init_weights(head)
    head.in_channels, head.out_channels = in_channels, widths[3] * 4
    if cfg.trainable_layers == 0:
        head.requires_grad_(False)
    return head
