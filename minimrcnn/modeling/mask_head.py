r"""The mask branch (Section 3): a small FCN that predicts an m x m mask per RoI and per class.

Heads (Figure 4, Table 2e):

* :class:`MaskRCNNHeads` + :class:`MaskRCNNPredictor`, the FCN of Figure 4 (right): four 3x3
  convs of 256 with ReLU on the 14x14 RoI features, a 2x2 stride-2 deconv to 28x28 + ReLU, and a
  1x1 conv to one mask logit map per class, ``(K, 256, 14, 14) -> (K, num_classes, 28, 28)``.
  For the C4 model (Figure 4 left) the predictor alone sits on the box head's 7x7x2048 res5
  output and gives 14x14 masks (see :class:`~minimrcnn.modeling.roi_heads.RoIHeads`).
* :class:`MaskMLPHead` + :class:`MaskMLPPredictor`, Table 2e's MLP: fully connected layers on the
  flattened 14x14 RoI features. The paper's row "fc: 1024 -> 1024 -> 80*28^2" is read as two
  hidden fc layers of 1024 (each with ReLU) after flattening the 256x14x14 features, then an fc
  to num_classes * 28 * 28 logits reshaped to (K, num_classes, 28, 28). (The second MLP row,
  1024 -> 1024 -> 1024 -> 80*28^2, is ``layers=(1024, 1024, 1024)``.)

The loss, its targets and the inference step are in :mod:`minimrcnn.modeling.mask_loss`; pasting
the masks into the image is :func:`minimrcnn.ops.paste_masks_in_image`.
"""
from collections import OrderedDict

from .. import functional as F
from .. import nn
# the loss, the inference step and the pasting lived here before; their names still import
from ..ops.masks import expand_boxes, expand_masks, paste_mask_in_image, paste_masks_in_image  # noqa: F401
from .mask_loss import MASK_LOSSES, maskrcnn_inference, maskrcnn_loss, project_masks_on_boxes  # noqa: F401

__all__ = ["MaskRCNNHeads", "MaskRCNNPredictor", "MaskMLPHead", "MaskMLPPredictor"]


# ---- heads ----------------------------------------------------------------------------------------

class MaskRCNNHeads(nn.Sequential):
    """The mask FCN's conv stack: for each width in ``layers``, a 3x3 conv (padding = dilation)
    and a ReLU.

    in_channels: channels of the RoI features (256 with FPN); layers: widths, (256,)*4 in the
    paper; dilation: of every conv (1).
    ``forward(x)``: (K, in_channels, S, S) -> (K, layers[-1], S, S).

    Parameter names are torchvision's current ones, ``0.0.weight``, ``1.0.weight``, ... (each
    block a Sequential(Conv2d, ReLU) like Conv2dNormActivation without a norm); the pre-0.13 names
    ``mask_fcn1.weight``, ... load too. Init: $W \\sim$ kaiming_normal(fan_out, relu), $b = 0$.
    """

    def __init__(self, in_channels, layers, dilation=1):
        blocks = []
        next_feature = in_channels
        for layer_features in layers:
            blocks.append(nn.Sequential(
                nn.Conv2d(next_feature, layer_features, kernel_size=3, stride=1, padding=dilation,
                          dilation=dilation),
                nn.ReLU()))
            next_feature = layer_features
        super().__init__(*blocks)
        self.out_channels = next_feature
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _upgrade_state_dict(self, state_dict, prefix):
        # torchvision < 0.13: mask_fcn{i+1}.weight -> {i}.0.weight
        for i in range(len(self)):
            for kind in ("weight", "bias"):
                old_key, new_key = f"{prefix}mask_fcn{i + 1}.{kind}", f"{prefix}{i}.0.{kind}"
                if old_key in state_dict:
                    state_dict[new_key] = state_dict.pop(old_key)


class MaskRCNNPredictor(nn.Sequential):
    """Upsample and predict: ``conv5_mask`` (2x2 deconv, stride 2) + ReLU, then
    ``mask_fcn_logits`` (1x1 conv) to one logit map per class.

    in_channels: 256 (FPN) or 2048 (C4, on res5); dim_reduced: the deconv's width (256);
    num_classes: output maps (num_classes incl. background, or 1 for class-agnostic masks).
    ``forward(x)``: (K, in_channels, S, S) -> (K, num_classes, 2S, 2S) mask logits.
    Init as torchvision: weights kaiming_normal(fan_out, relu), biases torch's default.
    """

    def __init__(self, in_channels, dim_reduced, num_classes):
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu", nn.ReLU()),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))
        self.num_classes = num_classes
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskMLPHead(nn.Module):
    """Table 2e's MLP mask head (hidden part): flatten, then fc + ReLU for each width in ``layers``.

    in_channels: channels C of the RoI features; resolution: their size S (14);
    layers: hidden widths, (1024, 1024) for the paper's "fc: 1024 -> 1024 -> 80*28^2".
    ``forward(x)``: (K, C, S, S) -> (K, layers[-1]). Parameters ``fc1.*``, ``fc2.*``, ...
    (torch's Linear init). Pair it with :class:`MaskMLPPredictor`.
    """

    def __init__(self, in_channels, resolution, layers=(1024, 1024)):
        super().__init__()
        if len(layers) == 0:
            raise ValueError("MaskMLPHead: layers must hold at least one hidden width")
        next_feature = in_channels * resolution * resolution
        for i, width in enumerate(layers):
            setattr(self, f"fc{i + 1}", nn.Linear(next_feature, width))
            next_feature = width
        self.num_layers = len(layers)
        self.out_channels = next_feature

    def forward(self, x):
        x = F.flatten(x, 1)                                      # (K, C*S*S)
        for i in range(self.num_layers):
            x = F.relu(getattr(self, f"fc{i + 1}")(x))
        return x


class MaskMLPPredictor(nn.Module):
    """Table 2e's MLP output layer: ``mask_fc_logits``, an fc to num_classes * m * m logits.

    in_channels: the MLP head's width (1024); num_classes: mask channels; mask_size: m (28).
    ``forward(x)``: (K, in_channels) -> (K, num_classes, m, m).
    Init: $W \\sim N(0, 0.001^2)$, $b = 0$ (Detectron's fc mask output).
    """

    def __init__(self, in_channels, num_classes, mask_size=28):
        super().__init__()
        self.mask_fc_logits = nn.Linear(in_channels, num_classes * mask_size * mask_size)
        nn.init.normal_(self.mask_fc_logits.weight, std=0.001)
        nn.init.zeros_(self.mask_fc_logits.bias)
        self.num_classes, self.mask_size = num_classes, mask_size

    def forward(self, x):
        x = self.mask_fc_logits(F.flatten(x, 1))
        return F.reshape(x, (x.shape[0], self.num_classes, self.mask_size, self.mask_size))
