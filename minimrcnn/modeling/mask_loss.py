r"""The mask branch's training targets and loss, and how its logits become probabilities.

Loss (:func:`maskrcnn_loss`) on the positive RoIs only. The target of a positive RoI is its
matched ground-truth mask cut out of the full image by RoIAlign at m x m
(:func:`project_masks_on_boxes`: the "intersection between an RoI and its associated
ground-truth mask"), left as interpolated values in [0, 1] (torchvision does not threshold it).
Three variants:

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
its predicted class, read the way the loss trained it; :func:`minimrcnn.ops.paste_masks_in_image`
then resizes it into the box in the image.
"""
import numpy as np

from .. import functional as F
from .. import ops
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..functional.elementwise import sigmoid_array, softmax_array

__all__ = ["MASK_LOSSES", "project_masks_on_boxes", "maskrcnn_loss", "maskrcnn_inference"]

MASK_LOSSES = ("sigmoid", "softmax")


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
    ### BEGIN SOLUTION mask_loss
    rois = xp.concatenate([xp.asarray(as_array(matched_idxs)).astype(dtype)[:, None], boxes.astype(dtype)], axis=1)
    with no_grad():
        out = ops.roi_align(Tensor(gt_masks[:, None].astype(dtype)), rois, (M, M), 1.0)
    ### END SOLUTION
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

    ### BEGIN SOLUTION mask_loss
    if loss == "softmax":
        # per-pixel class: the RoI's gt class inside its mask, background (0) outside
        pixel_classes = xp.where(mask_targets >= 0.5, labels[:, None, None], 0).astype(np.int64)
        return F.cross_entropy(mask_logits, pixel_classes)
    if class_agnostic:
        logits = mask_logits[:, 0]                                          # (P, m, m)
    else:
        logits = mask_logits[xp.arange(labels.shape[0]), labels]            # (P, m, m)
    return F.binary_cross_entropy_with_logits(logits, Tensor(mask_targets))
    ### END SOLUTION


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
    mask_prob = softmax_array(x, axis=1) if loss == "softmax" else sigmoid_array(x)
    mask_prob = mask_prob[xp.arange(x.shape[0]), labels][:, None]          # (N, 1, m, m)
    cuts = np.cumsum(boxes_per_image)[:-1].tolist()
    return xp.split(mask_prob, cuts, axis=0)
