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

Loss (:func:`maskrcnn_loss`) on the positive RoIs only. The target of a positive RoI is its
matched ground-truth mask cut out of the full image by RoIAlign at m x m (the "intersection
between an RoI and its associated ground-truth mask"), left as interpolated values in [0, 1]
(torchvision does not threshold it). Three variants:

* ``loss="sigmoid"`` (the paper's default, Table 2b "sigmoid"): per-pixel sigmoid and binary
  cross entropy on the channel of the RoI's ground-truth class $k$ only, averaged over the
  $m^2$ pixels of all positive RoIs:
  $L_{mask} = \frac{1}{P m^2} \sum_{i, p} \mathrm{BCE}(\sigma(z_{i,k_i,p}), y_{i,p})$.
* ``loss="softmax"`` (Table 2b "softmax", the FCN-style multinomial loss): at every pixel a
  softmax over the ``num_classes`` channels (channel 0 = background), and cross entropy with the
  pixel's class: $k_i$ where the target mask is $\ge 0.5$, background (0) elsewhere,
  $L_{mask} = \frac{1}{P m^2} \sum_{i,p} -\log \mathrm{softmax}(z_{i,\cdot,p})_{c_{i,p}}$.
  The classes now compete for every pixel, which is what the paper shows to hurt (-5.5 AP). At
  inference the mask of class $k$ is that softmax's probability of $k$.
* ``class_agnostic=True`` (Section 4.2): the predictor has a single output channel, used for
  every class (sigmoid loss; a class-agnostic softmax would have nothing to compete with).

At inference (:func:`maskrcnn_inference`) the mask of each detection is the probability map of
its predicted class, and :func:`paste_masks_in_image` resizes it into the box in the image
(torchvision's exact rounding), where it is thresholded at 0.5 by the user.
"""
from collections import OrderedDict

import numpy as np

from .. import functional as F
from .. import nn
from .. import ops
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module

__all__ = ["MaskRCNNHeads", "MaskRCNNPredictor", "MaskMLPHead", "MaskMLPPredictor",
           "project_masks_on_boxes", "maskrcnn_loss", "maskrcnn_inference",
           "expand_boxes", "expand_masks", "paste_mask_in_image", "paste_masks_in_image",
           "MASK_LOSSES"]

MASK_LOSSES = ("sigmoid", "softmax")


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


# ---- loss -----------------------------------------------------------------------------------------

def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M):
    """Mask targets: the matched gt mask of each RoI, cut out by RoIAlign at M x M.

    gt_masks: (G, H, W) binary masks of one image (any numeric dtype); boxes: (P, 4) RoIs;
    matched_idxs: (P,) index of each RoI's gt. Returns (P, M, M) floats in [0, 1] in the boxes'
    dtype: ``roi_align(gt_masks[:, None], [matched_idx, box], (M, M), 1.0)`` with the default
    adaptive sampling, not thresholded (torchvision).
    """
    boxes = as_array(boxes)
    xp = get_array_module(boxes)
    dtype = boxes.dtype if boxes.dtype.kind == "f" else np.float32
    gt_masks = xp.asarray(as_array(gt_masks))
    if gt_masks.ndim != 3:
        raise ValueError(f"gt masks must be (G, H, W), got shape {tuple(gt_masks.shape)}")
    rois = xp.concatenate([xp.asarray(as_array(matched_idxs)).astype(dtype)[:, None], boxes.astype(dtype)], axis=1)
    with no_grad():
        out = ops.roi_align(Tensor(gt_masks[:, None].astype(dtype)), rois, (M, M), 1.0)
    return out.data[:, 0]


def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs, loss="sigmoid",
                  class_agnostic=False):
    """The mask loss over the positive RoIs (see the module docstring for the three variants).

    mask_logits: Tensor (P, num_classes or 1, m, m); proposals: list of per-image (P_i, 4)
    positive RoIs, sum P_i = P; gt_masks: list of per-image (G_i, H, W) masks; gt_labels: list
    of (G_i,) int64; mask_matched_idxs: list of (P_i,) gt index of each RoI. Returns a scalar
    Tensor; with no positive RoI, ``mask_logits.sum() * 0`` (torchvision).
    """
    if loss not in MASK_LOSSES:
        raise ValueError(f"maskrcnn_loss: loss must be one of {MASK_LOSSES}, got {loss!r}")
    if class_agnostic and loss == "softmax":
        raise ValueError("maskrcnn_loss: loss='softmax' needs class-specific masks (class_agnostic=False): "
                         "a one-channel softmax has no classes to compete")
    discretization_size = mask_logits.shape[-1]
    labels = [as_array(gt_label)[as_array(idxs)] for gt_label, idxs in zip(gt_labels, mask_matched_idxs)]
    mask_targets = [project_masks_on_boxes(m, p, i, discretization_size)
                    for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    xp = get_array_module(mask_logits.data)
    labels = xp.concatenate(labels, axis=0).astype(np.int64)                 # (P,)
    mask_targets = xp.concatenate(mask_targets, axis=0)                     # (P, m, m)
    if mask_targets.shape[0] != mask_logits.shape[0]:
        raise ValueError(f"maskrcnn_loss: {mask_logits.shape[0]} mask logits but {mask_targets.shape[0]} "
                         f"positive RoIs")
    if mask_targets.size == 0:
        return mask_logits.sum() * 0
    mask_targets = mask_targets.astype(mask_logits.dtype, copy=False)

    if loss == "softmax":
        # per-pixel class: the RoI's gt class inside its mask, background (0) outside
        pixel_classes = xp.where(mask_targets >= 0.5, labels[:, None, None], 0).astype(np.int64)
        return F.cross_entropy(mask_logits, pixel_classes)
    if class_agnostic:
        logits = mask_logits[:, 0]                                          # (P, m, m)
    else:
        logits = mask_logits[xp.arange(labels.shape[0]), labels]            # (P, m, m)
    return F.binary_cross_entropy_with_logits(logits, Tensor(mask_targets))


def _sigmoid(x):
    xp = get_array_module(x)
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + xp.exp(-x))


def _softmax(x, axis):
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def maskrcnn_inference(mask_logits, labels, loss="sigmoid", class_agnostic=False):
    """Mask probabilities of each detection's predicted class.

    mask_logits: Tensor or array (N, num_classes or 1, m, m); labels: list of per-image (N_i,)
    predicted classes, sum N_i = N. ``loss`` says how the channel was trained: "sigmoid" gives
    $\\sigma(z_k)$, "softmax" gives $\\mathrm{softmax}_k(z)$ over the channels. With one channel
    (class-agnostic) that channel is used for every class.
    Returns a list of per-image arrays (N_i, 1, m, m).
    """
    x = as_array(mask_logits)
    xp = get_array_module(x)
    labels = [as_array(l) for l in labels]
    boxes_per_image = [int(l.shape[0]) for l in labels]
    labels = xp.concatenate(labels).astype(np.int64) if labels else xp.zeros((0,), np.int64)
    if class_agnostic or x.shape[1] == 1:
        labels = xp.zeros_like(labels)
    mask_prob = _softmax(x, axis=1) if loss == "softmax" else _sigmoid(x)
    mask_prob = mask_prob[xp.arange(x.shape[0]), labels][:, None]          # (N, 1, m, m)
    cuts = np.cumsum(boxes_per_image)[:-1].tolist()
    return xp.split(mask_prob, cuts, axis=0)


# ---- pasting masks into the image -----------------------------------------------------------------

def expand_boxes(boxes, scale):
    """Scale boxes about their centres by ``scale`` (float32 arithmetic, as torchvision)."""
    boxes = as_array(boxes)
    xp = get_array_module(boxes)
    dt = boxes.dtype.type
    w_half = (boxes[:, 2] - boxes[:, 0]) * dt(0.5)
    h_half = (boxes[:, 3] - boxes[:, 1]) * dt(0.5)
    x_c = (boxes[:, 2] + boxes[:, 0]) * dt(0.5)
    y_c = (boxes[:, 3] + boxes[:, 1]) * dt(0.5)
    w_half = w_half * dt(scale)
    h_half = h_half * dt(scale)
    return xp.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def expand_masks(mask, padding):
    """Pad (N, 1, M, M) masks with ``padding`` zeros on every side; returns (padded, scale)
    with scale = (M + 2 padding) / M, the factor that grows the box to match."""
    M = mask.shape[-1]
    scale = float(M + 2 * padding) / M
    xp = get_array_module(mask)
    pad = ((0, 0),) * (mask.ndim - 2) + ((padding, padding), (padding, padding))
    return xp.pad(mask, pad), scale


def paste_mask_in_image(mask, box, im_h, im_w, out=None):
    """One (S, S) mask into an (im_h, im_w) image at the integer box [x1, y1, x2, y2].

    The mask is resized bilinearly (align_corners=False) to the box's (y2 - y1 + 1) x
    (x2 - x1 + 1) pixels and copied in, clipped to the image (torchvision's paste_mask_in_image).
    ``out``: an (im_h, im_w) array of zeros to paste into (a new one when None).
    """
    xp = get_array_module(mask)
    x1, y1, x2, y2 = (int(v) for v in box)
    w = max(x2 - x1 + 1, 1)
    h = max(y2 - y1 + 1, 1)
    with no_grad():
        resized = F.interpolate(Tensor(mask[None, None]), size=(h, w), mode="bilinear",
                                align_corners=False).data[0, 0]                 # (h, w)
    im_mask = xp.zeros((im_h, im_w), dtype=mask.dtype) if out is None else out
    x_0, x_1 = max(x1, 0), min(x2 + 1, im_w)
    y_0, y_1 = max(y1, 0), min(y2 + 1, im_h)
    if x_1 > x_0 and y_1 > y_0:
        im_mask[y_0:y_1, x_0:x_1] = resized[(y_0 - y1):(y_1 - y1), (x_0 - x1):(x_1 - x1)]
    return im_mask


def paste_masks_in_image(masks, boxes, img_shape, padding=1):
    """Paste (N, 1, M, M) mask probabilities into (N, 1, H, W) image-sized maps.

    boxes: (N, 4) detections in the image's pixels; img_shape: (H, W). As torchvision: each mask
    gets a ``padding``-pixel zero border (so that it fades out at the box edge instead of being
    cut), the box grows by (M + 2 padding) / M about its centre and is truncated to integers, and
    the padded mask is resized into it with :func:`paste_mask_in_image`.
    """
    masks = as_array(masks)
    boxes = as_array(boxes)
    xp = get_array_module(masks)
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"paste_masks_in_image: masks must be (N, 1, M, M), got shape {tuple(masks.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"paste_masks_in_image: boxes must be ({masks.shape[0]}, 4), got shape "
                         f"{tuple(boxes.shape)}")
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    masks, scale = expand_masks(masks, padding=padding)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    boxes = expand_boxes(boxes, scale).astype(np.int64)              # truncation toward 0, as .to(int64)
    pasted = xp.zeros((len(masks), 1, im_h, im_w), dtype=masks.dtype)   # written in place
    for m, b, out in zip(masks, boxes.tolist(), pasted):
        paste_mask_in_image(m[0], b, im_h, im_w, out=out[0])
    return pasted
