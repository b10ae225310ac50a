"""ResNet and ResNeXt bodies (He et al. 2016; Xie et al. 2017) for detection.

A ResNet is a *stem* followed by four *stages* of bottleneck blocks. Each stage halves the
resolution (except the first, after the stem's max-pool) and doubles the width::

    name    torchvision  paper   output (R-50, 800x1216 input)   stride
    stem    conv1..maxpool       (N,   64, 200, 304)              4      7x7/2 conv, 3x3/2 max-pool
    res2    layer1       C2      (N,  256, 200, 304)              4      3 blocks   (101: 3)
    res3    layer2       C3      (N,  512, 100, 152)              8      4 blocks   (101: 4)
    res4    layer3       C4      (N, 1024,  50,  76)             16      6 blocks   (101: 23)
    res5    layer4       C5      (N, 2048,  25,  38)             32      3 blocks   (101: 3)

A bottleneck block computes ``relu(F(x) + shortcut(x))`` where the residual branch F is
1x1 (reduce to ``width``) -> 3x3 (``width``, grouped for ResNeXt) -> 1x1 (expand to
``4 * planes``), each conv followed by a normalisation layer and all but the last by a ReLU.
The shortcut is the identity, or a strided 1x1 conv + norm ("projection", ``downsample``)
where the resolution or the number of channels changes.

The attribute names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0``, ...), so a torchvision ``resnet50`` state dict loads key for key.
There is no average pool and no ``fc``: detection uses the feature maps.

Normalisation: ``FrozenBatchNorm2d`` (ImageNet statistics fixed, as torchvision's detection
models and the paper), ``BatchNorm2d``, or ``GroupNorm`` with 32 groups (Wu & He 2018) for
training from scratch -- see :func:`get_norm_layer`.
"""
import functools
import math
from collections import OrderedDict

from .. import nn

__all__ = ["Bottleneck", "ResNet", "make_stage", "init_weights", "conv1x1", "conv3x3",
           "get_norm_layer", "freeze_layers", "resnet50", "resnet101", "resnext50_32x4d",
           "resnext101_32x8d", "classroom_resnet", "RESNET_BLOCKS"]

# blocks per stage (res2, res3, res4, res5)
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    """3x3 convolution, padding 1, no bias (a norm layer follows):
    (N, in, H, W) -> (N, out, ceil(H/s), ceil(W/s))."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups,
                     bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution, no bias: a per-pixel linear map of the channels (strided: subsampled)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def get_norm_layer(norm, eps=1e-5):
    """The normalisation layer for a config name, called as ``norm_layer(num_channels)``.

    - ``"frozen_bn"``: :class:`nn.FrozenBatchNorm2d`, $y = (x - \\mu) / \\sqrt{\\sigma^2 + eps}
      \\cdot w + b$ with fixed $\\mu, \\sigma^2, w, b$ (buffers, not trained).
    - ``"bn"``: :class:`nn.BatchNorm2d` (batch statistics in training).
    - ``"gn"``: :class:`nn.GroupNorm` with 32 groups; a layer with fewer channels, or a number
      not divisible by 32 (the thin classroom ResNet), uses ``gcd(32, C)`` groups.
    ``eps`` goes to the batch norms (torchvision's COCO weights need 0.0 for FrozenBN).
    A callable is returned as it is.
    """
    if callable(norm):
        return norm
    if norm == "frozen_bn":
        return functools.partial(nn.FrozenBatchNorm2d, eps=eps)
    if norm == "bn":
        return functools.partial(nn.BatchNorm2d, eps=eps)
    if norm == "gn":
        return _group_norm_32
    raise ValueError(f"norm must be 'frozen_bn', 'bn', 'gn' or a callable, got {norm!r}")


def _group_norm_32(num_channels):
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


class Bottleneck(nn.Module):
    """The bottleneck residual block: x (N, inplanes, H, W) -> (N, 4 * planes, H/s, W/s).

        out = relu(bn1(conv1(x)))          1x1, inplanes -> width
        out = relu(bn2(conv2(out)))        3x3, width -> width, ``groups`` groups
        out = bn3(conv3(out))              1x1, width -> 4 * planes
        out = relu(out + shortcut(x))      shortcut = downsample(x), or x itself

    ``width = int(planes * base_width / 64) * groups``: ``planes`` for a ResNet (groups 1,
    base_width 64); for ResNeXt-101 32x8d and planes 64, ``int(64 * 8 / 64) * 32 = 256``.

    The stride ``s`` sits on the 3x3 conv (torchvision, "ResNet v1.5"), or on the first 1x1
    conv when ``stride_in_1x1`` (the original MSRA/Detectron models, whose weights expect it).
    ``downsample`` (a 1x1 conv with stride s + norm) is given by the caller when the shape of
    x changes.
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 norm_layer=None, stride_in_1x1=False):
        super().__init__()
        norm_layer = nn.FrozenBatchNorm2d if norm_layer is None else norm_layer
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def make_stage(inplanes, planes, blocks, stride, groups=1, base_width=64, norm_layer=None,
               stride_in_1x1=False):
    """One stage ("layerN"): a Sequential of ``blocks`` Bottlenecks, (N, inplanes, H, W) ->
    (N, 4 * planes, H/stride, W/stride). The first block changes the stride and the width, so
    it gets the projection shortcut ``downsample = Sequential(conv1x1(stride), norm)``."""
    norm_layer = nn.FrozenBatchNorm2d if norm_layer is None else norm_layer
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(conv1x1(inplanes, out_channels, stride), norm_layer(out_channels))
    block_args = dict(groups=groups, base_width=base_width, norm_layer=norm_layer,
                      stride_in_1x1=stride_in_1x1)
    layers = [Bottleneck(inplanes, planes, stride, downsample, **block_args)]
    for _ in range(1, blocks):
        layers.append(Bottleneck(out_channels, planes, **block_args))
    return nn.Sequential(*layers)


def init_weights(module, zero_init_residual=False):
    """torchvision's ResNet initialisation: every conv ``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")``, i.e. $N(0, 2 / (C_{out} k^2))$; norm layers keep weight 1, bias 0.
    ``zero_init_residual`` zeroes each block's last norm weight (``bn3``), so that every block
    starts as the identity (Goyal et al. 2017). Returns module."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if zero_init_residual:
        for m in module.modules():
            if isinstance(m, Bottleneck) and isinstance(m.bn3.weight, nn.Parameter):
                nn.init.zeros_(m.bn3.weight)
    return module


class ResNet(nn.Module):
    """The ResNet body: stem + ``len(layers)`` stages (``layer1``, ``layer2``, ...).

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for R-50, or ``(3, 4, 6)`` for a body
            that stops at res4 (the C4 backbone, whose res5 runs in the box head).
        planes: bottleneck width of each stage (``64, 128, 256, 512`` for ImageNet ResNets);
            stage i outputs ``4 * planes[i]`` channels.
        stem_channels: output channels of the 7x7/2 stem conv (64).
        groups, width_per_group: ResNeXt cardinality and per-group width (1, 64 for ResNet).
        stride_in_1x1: put the stride on each block's first 1x1 conv (MSRA/Detectron).
        norm_layer: callable ``num_channels -> Module`` (default FrozenBatchNorm2d).
        return_layers: ``{stage_name: output_name}`` of the stage outputs ``forward`` returns,
            as torchvision's ``IntermediateLayerGetter``; e.g. ``{"layer1": "0", "layer2": "1",
            "layer3": "2", "layer4": "3"}`` for the FPN. Default: every stage under its own
            name. Stages after the last one requested are not run.
        zero_init_residual: start every ``bn3`` weight at 0, so each block starts as the
            identity (Goyal et al. 2017); torchvision's default is False.

    ``forward(x)``: x (N, 3, H, W) -> OrderedDict ``output_name -> (N, C_i, H_i, W_i)`` with
    ``H_i = ceil(H / stride_i)`` (every strided layer maps H to ceil(H / 2)).
    ``stage_channels`` and ``stage_strides`` give ``C_i`` and the stride of each stage by name.

    Convolutions start as torchvision's: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``;
    norm layers at weight 1, bias 0.
    """

    def __init__(self, layers, planes=(64, 128, 256, 512), stem_channels=64, groups=1,
                 width_per_group=64, stride_in_1x1=False, norm_layer=None, return_layers=None,
                 zero_init_residual=False):
        super().__init__()
        layers, planes = tuple(layers), tuple(planes)
        if not 1 <= len(layers) <= len(planes):
            raise ValueError(f"ResNet: layers must give 1..{len(planes)} stages, got {layers!r}")
        if any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"ResNet: every stage needs at least one block, got layers={layers!r}")
        norm_layer = nn.FrozenBatchNorm2d if norm_layer is None else norm_layer
        self._norm_layer = norm_layer
        self.groups, self.base_width, self.stride_in_1x1 = groups, width_per_group, stride_in_1x1

        # stem: 7x7/2 conv + norm + relu + 3x3/2 max-pool -> stride 4
        self.inplanes = stem_channels
        self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage_names = [f"layer{i + 1}" for i in range(len(layers))]
        self.stage_channels, self.stage_strides = OrderedDict(), OrderedDict()
        stride = 4
        for i, (name, num_blocks) in enumerate(zip(self.stage_names, layers)):
            stage_stride = 1 if i == 0 else 2
            stride *= stage_stride
            setattr(self, name, self._make_layer(planes[i], num_blocks, stage_stride))
            self.stage_channels[name] = planes[i] * Bottleneck.expansion
            self.stage_strides[name] = stride

        if return_layers is None:
            return_layers = {name: name for name in self.stage_names}
        unknown = [k for k in return_layers if k not in self.stage_names]
        if unknown or not return_layers:
            raise ValueError(f"ResNet: return_layers must name some of {self.stage_names}, "
                             f"got {dict(return_layers)!r}")
        # keep the network's order, whatever the order of the dict
        self.return_layers = OrderedDict((k, return_layers[k]) for k in self.stage_names
                                         if k in return_layers)

        init_weights(self, zero_init_residual)

    def _make_layer(self, planes, blocks, stride):
        stage = make_stage(self.inplanes, planes, blocks, stride, groups=self.groups,
                           base_width=self.base_width, norm_layer=self._norm_layer,
                           stride_in_1x1=self.stride_in_1x1)
        self.inplanes = planes * Bottleneck.expansion
        return stage

    @property
    def out_channels(self):
        """Channels of the last stage returned by ``forward``."""
        return self.stage_channels[next(reversed(self.return_layers))]

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))   # (N, stem_channels, H/4, W/4)
        out = OrderedDict()
        last = next(reversed(self.return_layers))
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
            if name == last:
                break
        return out


def freeze_layers(model, trainable_layers):
    """Freeze all but the last ``trainable_layers`` parts of a ResNet, as torchvision's
    ``_resnet_fpn_extractor``: the parts, from the top, are layer4, layer3, layer2, layer1 and
    the stem conv1 (with bn1 when all 5 train). A frozen parameter gets ``requires_grad=False``.

    ``model`` may be a ResNet, or any module whose parameter names start with those stage
    names (e.g. a body without layer4: its layer4 count is simply not there). Returns model.
    """
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers!r}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, param in model.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            param.requires_grad = False
    return model


def resnet50(**kwargs):
    """ResNet-50 body: blocks (3, 4, 6, 3); 23.5M parameters without the classifier."""
    return ResNet(RESNET_BLOCKS[50], **kwargs)


def resnet101(**kwargs):
    """ResNet-101 body: blocks (3, 4, 23, 3)."""
    return ResNet(RESNET_BLOCKS[101], **kwargs)


def resnext50_32x4d(**kwargs):
    """ResNeXt-50 32x4d body: 32 groups of width 4 in res2 (bottleneck width 128)."""
    return ResNet(RESNET_BLOCKS[50], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs):
    """ResNeXt-101 32x8d body (the paper's X-101-FPN): 32 groups of width 8 in res2."""
    return ResNet(RESNET_BLOCKS[101], groups=32, width_per_group=8, **kwargs)


def classroom_resnet(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), **kwargs):
    """A thin, shallow ResNet with the same structure (stem, 4 stages of bottlenecks, strides
    4..32): stage i has ``blocks[i]`` bottlenecks of width ``widths[i]`` and outputs
    ``4 * widths[i]`` channels; the stem conv has ``widths[0]`` channels. With the defaults it
    has 0.5M parameters (0.13M up to res4) and trains in minutes on a CPU at 256-pixel images."""
    widths, blocks = tuple(widths), tuple(blocks)
    if len(widths) < len(blocks):
        raise ValueError(f"classroom_resnet: need a width per stage, got widths={widths!r}, "
                         f"blocks={blocks!r}")
    kwargs.setdefault("stem_channels", widths[0])
    return ResNet(blocks, planes=widths, **kwargs)
