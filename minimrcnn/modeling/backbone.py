"""The backbone: the convolutional network run once over the whole image (Section 3).

The paper names a backbone *network-depth-features*; ``cfg.features`` picks the features
(``minimrcnn.models.build_backbone`` builds the one a config asks for):

- ``"fpn"`` (ResNet-50-FPN, Figure 4 right): the ResNet body returns C2..C5 and a Feature
  Pyramid Network turns them into P2..P6, named "0", "1", "2", "3", "pool" (torchvision), at
  strides 4, 8, 16, 32, 64, each with ``cfg.fpn_channels`` channels.
- ``"c4"`` (ResNet-50-C4, Figure 4 left): the body stops after res4 (``layer3``) and returns
  {"0": C4} at stride 16; res5 becomes the box head (``minimrcnn.models.build_res5_head``).
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

__all__ = ["BackboneWithFPN", "BackboneWithoutFPN"]


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


def _check_images(x, name):
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, 3, H, W), got {tuple(x.shape)}")


def __getattr__(name):
    # the builders moved to minimrcnn.models (every config -> module builder on one page)
    if name in ("build_backbone", "build_res5_head", "build_resnet_body"):
        from .. import models
        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
