"""Feature Pyramid Network (Lin et al. 2017), as torchvision's ``FeaturePyramidNetwork``.

From the backbone's stage outputs C2..C5 (strides 4..32, channels e.g. 256..2048) the FPN
builds P2..P5, all with ``out_channels`` (256) channels, by a top-down path with lateral
connections::

    inner_5 = lateral_5(C5)                                   1x1 conv ("inner block")
    inner_i = lateral_i(C_i) + upsample_nearest(inner_{i+1})  i = 4, 3, 2 (to C_i's size)
    P_i     = output_i(inner_i)                               3x3 conv ("layer block")
    P6      = max_pool2d(P5, kernel_size=1, stride=2)         LastLevelMaxPool: subsampling

The upsampling goes to the lateral's exact size (``F.interpolate(size=...)``), so inputs
whose size is not a multiple of 32 work too. The paper's FPN models detect on P2..P6 (P6 only
for the RPN's largest anchors); torchvision names them "0", "1", "2", "3" and "pool".

Parameter names are torchvision's: ``inner_blocks.{i}.0.weight`` (the lateral 1x1 convs) and
``layer_blocks.{i}.0.weight`` (the 3x3 output convs), with ``i`` counting from the finest
level. The older key names without the ``.0`` (torchvision < 0.13 checkpoints) are renamed on
``load_state_dict``.
"""
import re
from collections import OrderedDict

from .. import functional as F
from .. import nn

__all__ = ["FeaturePyramidNetwork", "ExtraFPNBlock", "LastLevelMaxPool"]


class ExtraFPNBlock(nn.Module):
    """Base class of the blocks that add levels above the FPN's last one.

    ``forward(results, x, names)``: ``results`` the FPN outputs (finest first), ``x`` the
    backbone features they came from, ``names`` their names; returns the extended
    ``(results, names)``.
    """

    def forward(self, results, x, names):
        raise NotImplementedError


class LastLevelMaxPool(ExtraFPNBlock):
    """P6 = P5 subsampled by 2: ``max_pool2d(P5, kernel_size=1, stride=2)``, named "pool".

    A 1x1 max-pool is no max at all: it keeps every other pixel,
    ``P6[y, x] = P5[2y, 2x]``, size ``floor((H5 - 1) / 2) + 1``.
    """

    def forward(self, results, x, names):
        names = list(names) + ["pool"]
        results = list(results) + [F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0)]
        return results, names


def _conv_norm(in_channels, out_channels, kernel_size, norm_layer):
    """torchvision's ``Conv2dNormActivation`` without activation: Sequential(conv[, norm]);
    the conv has a bias only when no norm layer follows it. Padding keeps the size."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                     bias=norm_layer is None)
    return nn.Sequential(conv) if norm_layer is None else nn.Sequential(conv, norm_layer(out_channels))


class FeaturePyramidNetwork(nn.Module):
    """FPN over feature maps given in an OrderedDict, finest (highest resolution) first.

    Args:
        in_channels_list: channels of each input map, e.g. ``[256, 512, 1024, 2048]``.
        out_channels: channels of every output map (256 in the paper).
        extra_blocks: an :class:`ExtraFPNBlock` for levels above the last (torchvision's
            default here is None; ``BackboneWithFPN`` passes :class:`LastLevelMaxPool`).
        norm_layer: optional ``num_channels -> Module`` after each conv (e.g. GroupNorm);
            default none, as torchvision.

    ``forward(x)``: OrderedDict ``name -> (N, C_i, H_i, W_i)`` -> OrderedDict with the same
    names, each ``(N, out_channels, H_i, W_i)``, plus the extra blocks' levels ("pool").

    Convs start as torchvision's: ``kaiming_uniform_(a=1)`` weights, zero biases.
    """

    def __init__(self, in_channels_list, out_channels, extra_blocks=None, norm_layer=None):
        super().__init__()
        in_channels_list = list(in_channels_list)
        if not in_channels_list or any(c <= 0 for c in in_channels_list):
            raise ValueError(f"FeaturePyramidNetwork: in_channels_list must be positive channel "
                             f"counts, got {in_channels_list!r}")
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(f"FeaturePyramidNetwork: extra_blocks should be an ExtraFPNBlock, "
                            f"got {type(extra_blocks).__name__}")
        self.inner_blocks = nn.ModuleList([_conv_norm(c, out_channels, 1, norm_layer)
                                           for c in in_channels_list])
        self.layer_blocks = nn.ModuleList([_conv_norm(out_channels, out_channels, 3, norm_layer)
                                           for _ in in_channels_list])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.extra_blocks = extra_blocks
        self.in_channels_list = in_channels_list
        self.out_channels = out_channels

    def _upgrade_state_dict(self, state_dict, prefix):
        # torchvision < 0.13: "inner_blocks.0.weight" -> now "inner_blocks.0.0.weight"
        old = re.compile(re.escape(prefix) + r"(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$")
        for key in [k for k in state_dict if old.match(k)]:
            block, i, kind = old.match(key).groups()
            state_dict[f"{prefix}{block}.{i}.0.{kind}"] = state_dict.pop(key)

    def forward(self, x):
        _check_features(x, self.in_channels_list)
        names = list(x.keys())
        features = list(x.values())

        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](features[idx])               # (N, out, H_i, W_i)
            inner_top_down = F.interpolate(last_inner, size=tuple(inner_lateral.shape[-2:]),
                                           mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer_blocks[idx](last_inner))

        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, features, names)
        return OrderedDict(zip(names, results))


# ---- the checks at the door ---------------------------------------------------------------------

def _check_features(x, in_channels_list):
    if len(x) != len(in_channels_list):
        raise ValueError(f"FeaturePyramidNetwork: expected {len(in_channels_list)} feature "
                         f"maps, got {len(x)} ({list(x.keys())})")
    for (name, f), c in zip(x.items(), in_channels_list):
        if f.ndim != 4 or f.shape[1] != c:
            raise ValueError(f"FeaturePyramidNetwork: feature {name!r} should have shape "
                             f"(N, {c}, H, W), got {tuple(f.shape)}")
