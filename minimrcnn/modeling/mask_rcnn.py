r"""Mask R-CNN, the meta-architecture (Section 3): four stages run one after the other.

    images (list of (3, H_i, W_i) RGB in [0, 1])
      -> transform   normalise, resize (shorter side 800), zero-pad to a multiple of 32
                     -> ImageList (N, 3, Hp, Wp) + the resized sizes
      -> backbone    ResNet(-FPN) features: OrderedDict name -> (N, C, Hp/s, Wp/s)
      -> rpn         proposals: N arrays (K_i, 4), <= 1000 per image at test time
      -> roi_heads   box head (class + box refinement), mask head (and keypoint head) on the
                     proposals -> detections in resized-image coordinates
      -> transform.postprocess   boxes / keypoints scaled back, masks pasted on the full image

In training the same pass returns the losses instead, the paper's multi-task loss
$L = L_{cls} + L_{box} + L_{mask}$ plus the RPN's two terms (Section 3.1, "Training"):
``loss_objectness``, ``loss_rpn_box_reg`` (RPN), ``loss_classifier``, ``loss_box_reg`` (box
head), ``loss_mask`` (mask head) and ``loss_keypoint`` when the keypoint head is on.

The attribute names are torchvision's (``transform``, ``backbone``, ``rpn``, ``roi_heads``), so
state-dict keys are torchvision's too and :meth:`MaskRCNN.load_torchvision_state_dict` takes a
``maskrcnn_resnet50_fpn`` / ``keypointrcnn_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` state
dict as it is (old and new key names, see :mod:`minimrcnn.weights`).
"""
from collections import OrderedDict

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import as_numpy, device_of, is_cupy_array, to_device

__all__ = ["MaskRCNN"]


class MaskRCNN(nn.Module):
    """transform -> backbone -> rpn -> roi_heads (torchvision's GeneralizedRCNN).

    backbone: a module with ``out_channels``, (N, 3, H, W) -> OrderedDict of feature maps (or
    one Tensor, named "0"); rpn: :class:`RegionProposalNetwork`; roi_heads: ``RoIHeads``;
    transform: :class:`GeneralizedRCNNTransform`. ``cfg`` (optional) is kept for reference.
    Use :func:`minimrcnn.models.build_model` to build one from a config.

    ``forward(images, targets=None)``:
      - images: list of N float (3, H_i, W_i) RGB arrays or Tensors in [0, 1] (another float
        dtype, e.g. the float64 of ``np.random.rand`` or ``/ 255.0``, is cast to the model's);
      - targets (training): N dicts with "boxes" (M_i, 4) xyxy in input-image pixels,
        "labels" (M_i,) int64 in 1..num_classes-1, "masks" (M_i, H_i, W_i) binary {0, 1}
        (bool, integer or float; mask head), "keypoints" (M_i, K, 3) [x, y, visibility]
        (keypoint head), optionally "crowd_boxes" (C_i, 4): crowd regions, neither positives
        nor negatives; other keys ("image_id", ...) pass through. All are checked before any
        work (:func:`_check_targets`);
      - training: returns the loss dict (scalar Tensors; sum them and call ``backward``);
      - eval: returns N dicts in input-image coordinates: "boxes" (D, 4), "labels" (D,),
        "scores" (D,), "masks" (D, 1, H_i, W_i) probabilities, "keypoints" (D, K, 3).
    """

    def __init__(self, backbone, rpn, roi_heads, transform, cfg=None):
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.cfg = cfg

    # ---- forward --------------------------------------------------------------------------
    def forward(self, images, targets=None):
        images, targets = self._check_inputs(images, targets)
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]

        images, targets = self.transform(images, targets)
        if targets is not None:
            _check_resized_boxes(targets)

        features = self.backbone(images.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(images, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        detections = self.transform.postprocess(detections, images.image_sizes, original_image_sizes)

        if self.training:
            losses = {}
            losses.update(detector_losses)
            losses.update(proposal_losses)
            return losses
        return detections

    def predict(self, images):
        """Detections as NumPy arrays, without gradients, in eval mode (the mode is restored).

        images: a list of float (3, H, W) RGB arrays in [0, 1] (a single (3, H, W) array or an
        (N, 3, H, W) batch is accepted too; float64 images are cast to the model's dtype).
        Returns one dict per image: "boxes" (D, 4) float32 xyxy, "labels" (D,) int64, "scores"
        (D,) float32, "masks" (D, 1, H, W) float32 probabilities (mask head), "keypoints"
        (D, K, 3) float32 and "keypoints_scores" (D, K) (keypoint head); D <=
        ``box_detections_per_img``, by decreasing score.
        """
        images = _as_image_list(images)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                detections = self.forward(images)
        finally:
            self.train(was_training)
        out = []
        for det in detections:
            d = {k: as_numpy(as_array(v)) for k, v in det.items()}
            if "boxes" in d:
                d["boxes"] = d["boxes"].astype(np.float32, copy=False).reshape(-1, 4)
            if "labels" in d:
                d["labels"] = d["labels"].astype(np.int64, copy=False)
            for k in ("scores", "masks", "keypoints", "keypoints_scores"):
                if k in d:
                    d[k] = d[k].astype(np.float32, copy=False)
            out.append(d)
        return out

    # ---- inputs ---------------------------------------------------------------------------
    def _dtype_and_device(self):
        """The floating dtype and the device of the parameters (float32, 'cpu' without any)."""
        for p in self.parameters():
            if p.dtype.kind == "f":
                return p.dtype, device_of(p)
        return np.dtype(np.float32), "cpu"

    def _check_inputs(self, images, targets):
        """The model's door: images as arrays of the model's dtype on its device; in training
        the targets checked (see :func:`_check_targets`) and moved to that device."""
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of (3, H, W) float arrays, got {type(images).__name__} "
                            f"(for one image pass [image])")
        dtype, device = self._dtype_and_device()
        images = [_check_image(img, i, dtype, device) for i, img in enumerate(images)]
        if not self.training:
            return images, None
        if targets is None:
            raise ValueError("targets should not be None in training mode (call model.eval() to predict)")
        heads = self.roi_heads
        _check_targets(targets, images, num_classes=heads.box_predictor.cls_score.weight.shape[0],
                       masks=heads.has_mask(), keypoints=heads.has_keypoint())
        return images, [_move_target(t, device) for t in targets]

    # ---- weights ---------------------------------------------------------------------------
    def load_torchvision_state_dict(self, state_dict, strict=True):
        """Load a torchvision state dict: ``{name: ndarray}`` (torch tensors are converted).

        Old and new torchvision key names are accepted (``roi_heads.mask_head.mask_fcn1.weight``
        = ``roi_heads.mask_head.0.0.weight``, ``rpn.head.conv.weight`` = ``rpn.head.conv.0.0.weight``,
        ``backbone.fpn.inner_blocks.0.weight`` = ``backbone.fpn.inner_blocks.0.0.weight``, same for
        ``layer_blocks``); ``num_batches_tracked`` is ignored. Fails with the full lists of missing
        and unexpected keys and every shape mismatch (naming the key)."""
        from ..weights import to_numpy_state_dict, upgrade_torchvision_keys
        return self.load_state_dict(upgrade_torchvision_keys(to_numpy_state_dict(state_dict)), strict=strict)


# ---- the checks at the door -------------------------------------------------------------------

def _as_image_list(images):
    """predict's ``images``: a list, one (3, H, W) array, or an (N, 3, H, W) batch -> a list."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        raise TypeError(f"predict takes images as arrays, not paths (got {images!r}); load the image "
                        f"first, e.g. np.asarray(PIL.Image.open(path).convert('RGB'), np.float32)"
                        f".transpose(2, 0, 1) / 255")
    ndim = getattr(images, "ndim", None)
    if ndim == 3:
        return [images]
    if ndim == 4:
        return list(images)
    raise TypeError(f"images must be a list of (3, H, W) float RGB arrays, one (3, H, W) array or an "
                    f"(N, 3, H, W) batch, got "
                    f"{type(images).__name__ if ndim is None else f'an array of shape {tuple(images.shape)}'}"
                    f"{' (a grayscale image? stack it into 3 channels)' if ndim == 2 else ''}")


def _check_image(image, i, dtype, device):
    """images[i] as an array on ``device``; a floating image is cast to ``dtype`` (float64 images,
    as ``np.random.rand`` and ``/ 255.0`` give, run in the model's float32). Shapes and values
    are the transform's to check."""
    if not (isinstance(image, Tensor) or hasattr(image, "__array__") or is_cupy_array(image)):
        raise TypeError(f"images[{i}] must be a (3, H, W) float array, got {type(image).__name__}")
    image = as_array(image)
    if device_of(image) != device:
        image = to_device(image, device)
    if image.dtype.kind == "f" and image.dtype != dtype:
        image = image.astype(dtype)
    return image


def _move_target(target, device):
    """A new dict with the target's arrays on ``device``; other entries ("image_id", ...) as they are."""
    moved = {}
    for key, value in target.items():
        value = as_array(value) if isinstance(value, Tensor) else value
        if hasattr(value, "shape") and hasattr(value, "dtype") and device_of(value) != device:
            value = to_device(value, device)
        moved[key] = value
    return moved


def _check_targets(targets, images, num_classes, masks, keypoints):
    """Training targets, before any work: one dict per image with

    - "boxes" (M, 4) finite xyxy with x2 > x1 and y2 > y1, in input-image pixels;
    - "labels" (M,) integers in [1, num_classes - 1] (0 is the background);
    - "masks" (M, H, W) binary {0, 1} (bool, integer or float), one per box (mask head);
    - "keypoints" (M, K, 3) [x, y, visibility] (keypoint head);
    - optionally "crowd_boxes" (C, 4) finite xyxy, x1 <= x2, y1 <= y2: crowd regions (C may be 0).
    Other keys ("image_id", ...) pass through unread.
    """
    if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
        n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
        raise ValueError(f"targets must be a list of {len(images)} dicts (one per image), got {n}")
    for i, (target, image) in enumerate(zip(targets, images)):
        needed = ["boxes", "labels"] + ["masks"] * masks + ["keypoints"] * keypoints
        if not hasattr(target, "keys") or any(k not in target for k in needed):
            keys = f" with keys {sorted(target.keys())!r}" if hasattr(target, "keys") else ""
            raise ValueError(f"targets[{i}] must be a dict with {', '.join(map(repr, needed))}, "
                             f"got {type(target).__name__}{keys}")
        boxes = _numeric(target["boxes"], f"targets[{i}]['boxes']")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must have shape (M, 4), got {tuple(boxes.shape)}")
        M = boxes.shape[0]
        bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()}: boxes must be finite "
                             f"x1, y1, x2, y2 with positive height and width")
        labels = _numeric(target["labels"], f"targets[{i}]['labels']")
        if labels.shape != (M,) or labels.dtype.kind not in "iu":
            raise ValueError(f"targets[{i}]['labels'] must be ({M},) integers (one per box), got shape "
                             f"{labels.shape} and dtype {labels.dtype}")
        bad = (labels < 1) | (labels >= num_classes)
        if bad.any():
            raise ValueError(f"targets[{i}]['labels'] must be in [1, {num_classes - 1}] (0 is the "
                             f"background), got {labels[bad][0]} at index {int(np.flatnonzero(bad)[0])}")
        if masks:
            _check_masks(_numeric(target["masks"], f"targets[{i}]['masks']"), i, M, image.shape[-2:])
        if keypoints:
            kp = _numeric(target["keypoints"], f"targets[{i}]['keypoints']")
            if kp.ndim != 3 or kp.shape[0] != M or kp.shape[2] != 3:
                raise ValueError(f"targets[{i}]['keypoints'] must have shape ({M}, K, 3) (one set per "
                                 f"box), got {tuple(kp.shape)}")
        if "crowd_boxes" in target:
            crowd = _numeric(target["crowd_boxes"], f"targets[{i}]['crowd_boxes']")
            if crowd.ndim != 2 or crowd.shape[1] != 4:
                raise ValueError(f"targets[{i}]['crowd_boxes'] must have shape (C, 4), got "
                                 f"{tuple(crowd.shape)}")
            bad = ~np.isfinite(crowd).all(axis=1) | (crowd[:, 2] < crowd[:, 0]) | (crowd[:, 3] < crowd[:, 1])
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"targets[{i}]['crowd_boxes'][{j}] = {crowd[j].tolist()}: crowd boxes "
                                 f"must be finite x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")


def _numeric(value, name):
    """A target entry as a NumPy array of numbers (for checking; the entry itself is kept)."""
    array = as_numpy(as_array(value))
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return array


def _check_masks(masks, i, num_boxes, image_size):
    """One binary (H, W) mask per box: values in {0, 1}; 0/255 image masks get their own message."""
    H, W = (int(s) for s in image_size)
    if masks.shape != (num_boxes, H, W):
        raise ValueError(f"targets[{i}]['masks'] must have shape ({num_boxes}, {H}, {W}): one mask per "
                         f"box, of the image's size; got {tuple(masks.shape)}")
    if masks.dtype == bool or masks.size == 0:
        return
    lo, hi = masks.min(), masks.max()                        # NaN propagates to both
    if masks.dtype.kind == "f" and (np.isnan(lo) or np.isnan(hi)):
        raise ValueError(f"targets[{i}]['masks'] contains NaN; masks must be binary {{0, 1}}")
    binary = (masks == 0) | (masks == 1)
    if lo >= 0 and hi <= 1 and (masks.dtype.kind != "f" or binary.all()):
        return
    if hi == 255 and ((masks == 0) | (masks == 255)).all():
        raise ValueError(f"targets[{i}]['masks'] holds 0/255 values (an 8-bit image): masks must be "
                         f"binary {{0, 1}}; pass masks > 0 (or masks // 255)")
    raise ValueError(f"targets[{i}]['masks'] must be binary {{0, 1}} (bool, integer or float), got "
                     f"values such as {np.unique(masks[~binary])[:5].tolist()}")


def _check_resized_boxes(targets):
    """After the resize: every box needs x2 > x1 and y2 > y1 (as torchvision checks)."""
    for i, target in enumerate(targets):
        boxes = as_numpy(target["boxes"])
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(axis=1)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"All bounding boxes should have positive height and width. Found "
                             f"invalid box {boxes[j].tolist()} (after the resize) for target at "
                             f"index {i}, box {j}")


def __getattr__(name):
    # the builders moved to minimrcnn.models (every config -> module builder on one page)
    if name in ("build_transform", "build_rpn"):
        from .. import models
        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
