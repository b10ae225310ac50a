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
from ..backend import as_numpy, device_of, to_device
from ..ops import AnchorGenerator
from .rpn import RegionProposalNetwork, RPNHead
from .transform import GeneralizedRCNNTransform

__all__ = ["MaskRCNN", "build_transform", "build_rpn"]


def build_transform(cfg):
    """The input transform of ``cfg``: min/max size, ImageNet mean/std, padding to 32."""
    return GeneralizedRCNNTransform(cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std,
                                    size_divisible=cfg.size_divisible)


def build_rpn(cfg, in_channels):
    """The RPN of ``cfg`` on features with ``in_channels`` channels: anchors of
    ``cfg.anchor_sizes`` (one tuple per level) x ``cfg.aspect_ratios`` (every level), a
    3x3 conv head, torchvision's thresholds and top-n values."""
    ratios = tuple(cfg.aspect_ratios)
    if not isinstance(ratios[0], (tuple, list)):
        ratios = (ratios,) * len(cfg.anchor_sizes)
    anchor_generator = AnchorGenerator(tuple(tuple(s) for s in cfg.anchor_sizes), ratios)
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(set(num_anchors)) != 1:
        raise ValueError(f"config keys 'anchor_sizes' / 'aspect_ratios': the RPN head is shared by "
                         f"all levels, so every level needs the same number of anchors, got {num_anchors}")
    head = RPNHead(in_channels, num_anchors[0])
    return RegionProposalNetwork(
        anchor_generator, head,
        fg_iou_thresh=cfg.rpn_fg_iou_thresh, bg_iou_thresh=cfg.rpn_bg_iou_thresh,
        batch_size_per_image=cfg.rpn_batch_size_per_image, positive_fraction=cfg.rpn_positive_fraction,
        pre_nms_top_n=dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
        post_nms_top_n=dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test),
        nms_thresh=cfg.rpn_nms_thresh, score_thresh=cfg.rpn_score_thresh)


class MaskRCNN(nn.Module):
    """transform -> backbone -> rpn -> roi_heads (torchvision's GeneralizedRCNN).

    backbone: a module with ``out_channels``, (N, 3, H, W) -> OrderedDict of feature maps (or
    one Tensor, named "0"); rpn: :class:`RegionProposalNetwork`; roi_heads: ``RoIHeads``;
    transform: :class:`GeneralizedRCNNTransform`. ``cfg`` (optional) is kept for reference.
    Use :func:`minimrcnn.models.build_model` to build one from a config.

    ``forward(images, targets=None)``:
      - images: list of N float (3, H_i, W_i) RGB arrays or Tensors in [0, 1];
      - targets (training): N dicts with "boxes" (M_i, 4) xyxy in input-image pixels,
        "labels" (M_i,) int64 in 1..num_classes-1, "masks" (M_i, H_i, W_i) uint8 (mask head),
        "keypoints" (M_i, K, 3) [x, y, visibility] (keypoint head);
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

    # ---- inputs ---------------------------------------------------------------------------
    def _device(self):
        for p in self.parameters():
            return device_of(p)
        return "cpu"

    @staticmethod
    def _check_targets(targets, num_images, num_classes):
        if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
            n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
            raise ValueError(f"targets must be a list of {num_images} dicts (one per image), got {n}")
        for i, target in enumerate(targets):
            if not hasattr(target, "keys") or "boxes" not in target:
                raise ValueError(f"targets[{i}] must be a dict with 'boxes' (M, 4) and 'labels' (M,), "
                                 f"got {type(target).__name__}"
                                 f"{' with keys ' + repr(sorted(target.keys())) if hasattr(target, 'keys') else ''}")
            boxes = as_array(target["boxes"])
            shape = tuple(getattr(boxes, "shape", ()))
            if len(shape) != 2 or shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes'] must have shape (M, 4), got {shape}")
            if "labels" in target:
                labels = as_numpy(target["labels"])
                if labels.shape != (shape[0],):
                    raise ValueError(f"targets[{i}]['labels'] must have shape ({shape[0]},), got {labels.shape}")
                bad = (labels < 1) | (labels >= num_classes)
                if bad.any():
                    raise ValueError(f"targets[{i}]['labels'] must be in [1, {num_classes - 1}] (0 is the "
                                     f"background), got {labels[bad][0]} at index {int(np.flatnonzero(bad)[0])}")

    @staticmethod
    def _check_degenerate(targets):
        """After the resize: every box needs x2 > x1 and y2 > y1 (as torchvision checks)."""
        for i, target in enumerate(targets):
            boxes = as_numpy(target["boxes"])
            bad = (boxes[:, 2:] <= boxes[:, :2]).any(axis=1)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"All bounding boxes should have positive height and width. Found "
                                 f"invalid box {boxes[j].tolist()} (after the resize) for target at "
                                 f"index {i}, box {j}")

    def _move_inputs(self, images, targets):
        device = self._device()
        images = [to_device(as_array(img), device) if device_of(img) != device else as_array(img) for img in images]
        if targets is not None:
            moved = []
            for t in targets:
                t = dict(t)
                for k, v in t.items():
                    v = v.data if isinstance(v, Tensor) else v
                    if hasattr(v, "shape") and hasattr(v, "dtype") and device_of(v) != device:
                        t[k] = to_device(v, device)
                    else:
                        t[k] = v
                moved.append(t)
            targets = moved
        return images, targets

    # ---- forward --------------------------------------------------------------------------
    def forward(self, images, targets=None):
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of (3, H, W) float arrays, got {type(images).__name__} "
                            f"(for one image pass [image])")
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None in training mode (call model.eval() to predict)")
            num_classes = self.roi_heads.box_predictor.cls_score.weight.shape[0]   # incl. background
            self._check_targets(targets, len(images), num_classes)
        images, targets = self._move_inputs(images, targets)
        original_image_sizes = []
        for i, img in enumerate(images):
            if getattr(img, "ndim", 0) != 3:
                raise ValueError(f"images[{i}] must be a (3, H, W) array, got shape {getattr(img, 'shape', None)}")
            original_image_sizes.append((int(img.shape[-2]), int(img.shape[-1])))

        images, targets = self.transform(images, targets)
        if targets is not None:
            self._check_degenerate(targets)

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

        images: a list of float32 (3, H, W) RGB arrays in [0, 1] (a single (3, H, W) array or an
        (N, 3, H, W) batch is accepted too). Returns one dict per image: "boxes" (D, 4) float32
        xyxy, "labels" (D,) int64, "scores" (D,) float32, "masks" (D, 1, H, W) float32
        probabilities (mask head), "keypoints" (D, K, 3) float32 and "keypoints_scores" (D, K)
        (keypoint head); D <= ``box_detections_per_img``, by decreasing score.
        """
        if hasattr(images, "ndim") and not isinstance(images, (list, tuple)):
            images = [images] if images.ndim == 3 else list(images)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                detections = self.forward(list(images))
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
