r"""The RoI heads: Mask R-CNN's second stage (Section 3), torchvision's ``RoIHeads``.

For every proposal from the RPN, in parallel (R proposals, K classes, FPN sizes):

    box:      box_roi_pool (R, C, 7, 7) -> box_head (R, 1024) -> box_predictor: logits (R, K),
              deltas (R, 4K)
    mask:     mask_roi_pool (R, C, 14, 14) -> mask_head (R, 256, 14, 14) -> mask_predictor:
              mask logits (R, K, 28, 28)
    keypoint: keypoint_roi_pool (R, C, 14, 14) -> keypoint_head (R, 512, 14, 14) ->
              keypoint_predictor: heatmap logits (R, 17, 56, 56)

**Training** (Section 3.1). The ground-truth boxes are added to the proposals; each proposal is
matched to the gt box it overlaps most and is positive if that IoU is >= 0.5 (``Matcher(0.5,
0.5)``), background otherwise; 512 proposals per image are sampled with at most 25% positives
(``BalancedPositiveNegativeSampler``); their regression targets are the matched gt boxes encoded
with ``BoxCoder((10, 10, 5, 5))``. The losses are ``loss_classifier`` and ``loss_box_reg``
(:func:`fastrcnn_loss`) on the sampled proposals, and ``loss_mask`` / ``loss_keypoint`` on the
sampled *positive* proposals only ("the mask loss is defined only on positive RoIs").

**Inference.** Class probabilities by softmax; every proposal gives one box per foreground class
(decoded with that class's deltas, clipped to the image); boxes scoring <= 0.05 or smaller than
0.01 pixel are dropped, NMS at IoU 0.5 runs per class and the 100 best are kept. The mask branch
then runs on these detections only ("applied to the highest scoring 100 detection boxes") and
keeps the mask of the predicted class; the keypoint branch likewise.

**C4 (Figure 4 left).** The box head is res5 + average pooling (:class:`Res5Head`) and the mask
branch has no head of its own: ``mask_shares_box_head=True`` makes the mask predictor (deconv to
14x14, 1x1 conv) read the box head's res5 output (R, 2048, 7, 7) before the pooling, as
Detectron's ``mask_rcnn_fcn_head_v0upshare``: in training the res5 features of the positive
sampled RoIs are reused (res5 runs once per RoI); at inference res5 is run again, with the same
weights, on the RoIAlign features of the final detections.

Results are raw arrays (NumPy or CuPy), losses scalar Tensors; see :meth:`RoIHeads.forward`.
"""
import numbers

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..ops import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from .box_head import FastRCNNPredictor, Res5Head, TwoMLPHead, fastrcnn_loss
from .keypoint_head import KeypointRCNNHeads, KeypointRCNNPredictor, keypointrcnn_inference, keypointrcnn_loss
from .mask_head import (MASK_LOSSES, MaskMLPHead, MaskMLPPredictor, MaskRCNNHeads, MaskRCNNPredictor,
                        maskrcnn_inference, maskrcnn_loss)
from .matcher import BalancedPositiveNegativeSampler, Matcher
from .poolers import MultiScaleRoIPooler

__all__ = ["RoIHeads", "build_roi_heads"]


def _softmax(x):
    """Softmax over the last axis of a raw array: $e^{x - \\max x} / \\sum e^{x - \\max x}$."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class RoIHeads(nn.Module):
    """Box, mask and keypoint heads on the proposals (see the module docstring).

    Args (torchvision's, plus the paper's ablation switches):
        box_roi_pool, box_head, box_predictor: :class:`MultiScaleRoIPooler` (7x7),
            :class:`TwoMLPHead` or :class:`Res5Head`, :class:`FastRCNNPredictor`.
        fg_iou_thresh, bg_iou_thresh: 0.5, 0.5. batch_size_per_image, positive_fraction: 512, 0.25.
        bbox_reg_weights: (10, 10, 5, 5) (None means that too).
        score_thresh, nms_thresh, detections_per_img: 0.05, 0.5, 100.
        mask_roi_pool, mask_head, mask_predictor: the mask branch (None: no masks). With
            ``mask_shares_box_head`` (C4) only ``mask_predictor`` is given.
        keypoint_roi_pool, keypoint_head, keypoint_predictor: the keypoint branch (None: none).
        mask_loss: "sigmoid" (per-class binary, the paper) | "softmax" (multinomial, Table 2b).
        mask_class_agnostic: the mask predictor has one channel for all classes.
        mask_shares_box_head: the mask predictor reads the box head's res5 features (C4).

    The sampler draws from ``self.fg_bg_sampler.generator`` (None: ``nn.init``'s global one).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor,
                 fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights,
                 score_thresh, nms_thresh, detections_per_img,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None,
                 keypoint_roi_pool=None, keypoint_head=None, keypoint_predictor=None,
                 mask_loss="sigmoid", mask_class_agnostic=False, mask_shares_box_head=False):
        super().__init__()
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        if bbox_reg_weights is None:
            bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)
        self.box_coder = BoxCoder(bbox_reg_weights)

        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor

        for name, v in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v <= 1.0:
                raise ValueError(f"RoIHeads: {name} must be a number in [0, 1], got {v!r}")
        if isinstance(detections_per_img, bool) or not isinstance(detections_per_img, numbers.Integral) \
                or detections_per_img < 1:
            raise ValueError(f"RoIHeads: detections_per_img must be a positive int, got {detections_per_img!r}")
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = int(detections_per_img)

        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"RoIHeads: mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
        if mask_loss == "softmax" and mask_class_agnostic:
            raise ValueError("RoIHeads: mask_loss='softmax' needs class-specific masks "
                             "(mask_class_agnostic=False)")
        self.mask_loss = mask_loss
        self.mask_class_agnostic = bool(mask_class_agnostic)
        self.mask_shares_box_head = bool(mask_shares_box_head)
        if self.mask_shares_box_head and not isinstance(box_head, Res5Head):
            raise ValueError(f"RoIHeads: mask_shares_box_head=True needs a Res5Head box head (C4), got "
                             f"{type(box_head).__name__}")

    def has_mask(self):
        if self.mask_predictor is None:
            return False
        if self.mask_shares_box_head:
            return True
        return self.mask_roi_pool is not None and self.mask_head is not None

    def has_keypoint(self):
        return (self.keypoint_roi_pool is not None and self.keypoint_head is not None
                and self.keypoint_predictor is not None)

    # ---- training targets ------------------------------------------------------------------
    def check_targets(self, targets, num_images):
        if targets is None:
            raise ValueError("targets should not be None in training mode (call .eval() for detections)")
        if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
            n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
            raise ValueError(f"targets must be a list of {num_images} dicts (one per image), got {n}")
        needed = ["boxes", "labels"] + (["masks"] if self.has_mask() else []) \
            + (["keypoints"] if self.has_keypoint() else [])
        for i, t in enumerate(targets):
            for key in needed:
                if not hasattr(t, "keys") or key not in t:
                    raise ValueError(f"targets[{i}] must have a {key!r} entry (keys needed: {needed})")
            boxes, labels = as_array(t["boxes"]), as_array(t["labels"])
            if boxes.dtype.kind != "f":
                raise TypeError(f"targets[{i}]['boxes'] must be floating, got dtype {boxes.dtype}")
            if labels.dtype.kind not in "iu":
                raise TypeError(f"targets[{i}]['labels'] must be integer class indices, got dtype "
                                f"{labels.dtype}")
            if boxes.reshape(-1, 4).shape[0] != labels.shape[0]:
                raise ValueError(f"targets[{i}] has {boxes.reshape(-1, 4).shape[0]} boxes but "
                                 f"{labels.shape[0]} labels")

    def add_gt_proposals(self, proposals, gt_boxes):
        """Append each image's gt boxes to its proposals (so every gt has a positive RoI)."""
        xp = get_array_module(*proposals)
        return [xp.concatenate([p, g], axis=0) for p, g in zip(proposals, gt_boxes)]

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        """For every proposal: the index of its matched gt (0 when unmatched) and its label
        (the gt class if IoU >= fg_iou_thresh, 0 below bg_iou_thresh, -1 in between)."""
        matched_idxs, labels = [], []
        for proposals_in_image, gt_boxes_in_image, gt_labels_in_image in zip(proposals, gt_boxes, gt_labels):
            xp = get_array_module(proposals_in_image)
            if gt_boxes_in_image.shape[0] == 0:
                # background image
                clamped_matched_idxs_in_image = xp.zeros((proposals_in_image.shape[0],), dtype=np.int64)
                labels_in_image = xp.zeros((proposals_in_image.shape[0],), dtype=np.int64)
            else:
                match_quality_matrix = self.box_similarity(gt_boxes_in_image, proposals_in_image)  # (G, R)
                matched_idxs_in_image = self.proposal_matcher(match_quality_matrix)              # (R,)
                clamped_matched_idxs_in_image = xp.maximum(matched_idxs_in_image, 0)
                labels_in_image = gt_labels_in_image[clamped_matched_idxs_in_image].astype(np.int64)
                labels_in_image[matched_idxs_in_image == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                labels_in_image[matched_idxs_in_image == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped_matched_idxs_in_image)
            labels.append(labels_in_image)
        return matched_idxs, labels

    def subsample(self, labels):
        """Per image, the (increasing) indices of the sampled positives and negatives."""
        sampled_pos_inds, sampled_neg_inds = self.fg_bg_sampler(labels)
        return [get_array_module(p).nonzero(p | n)[0] for p, n in zip(sampled_pos_inds, sampled_neg_inds)]

    def select_training_samples(self, proposals, targets):
        """Sampled proposals with their matched gt index, label and regression target.

        Returns four lists over images: proposals (R_i, 4), matched_idxs (R_i,), labels (R_i,)
        int64, regression_targets (R_i, 4). Regression targets are computed for the positive
        proposals only (zeros elsewhere): the loss reads no other row.
        """
        dtype = proposals[0].dtype
        xp = get_array_module(proposals[0])
        gt_boxes = [xp.asarray(as_array(t["boxes"])).astype(dtype, copy=False).reshape(-1, 4) for t in targets]
        gt_labels = [xp.asarray(as_array(t["labels"])).astype(np.int64, copy=False) for t in targets]

        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        sampled_inds = self.subsample(labels)
        regression_targets = []
        for img_id in range(len(proposals)):
            img_sampled_inds = sampled_inds[img_id]
            proposals[img_id] = proposals[img_id][img_sampled_inds]
            labels[img_id] = labels[img_id][img_sampled_inds]
            matched_idxs[img_id] = matched_idxs[img_id][img_sampled_inds]

            targets_in_image = xp.zeros(proposals[img_id].shape, dtype=dtype)
            pos = xp.nonzero(labels[img_id] > 0)[0]
            if pos.size:
                matched_gt_boxes = gt_boxes[img_id][matched_idxs[img_id][pos]]
                targets_in_image[pos] = self.box_coder.encode(matched_gt_boxes, proposals[img_id][pos])
            regression_targets.append(targets_in_image)
        return proposals, matched_idxs, labels, regression_targets

    # ---- inference -------------------------------------------------------------------------
    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Detections from the box head's outputs (torchvision's ``postprocess_detections``).

        class_logits (R, K), box_regression (R, 4K): Tensors or arrays; proposals: per-image
        (R_i, 4); image_shapes: per-image (h, w). Returns three lists over images: boxes
        (D_i, 4), scores (D_i,), labels (D_i,) int64, D_i <= detections_per_img, by decreasing
        score.
        """
        class_logits, box_regression = as_array(class_logits), as_array(box_regression)
        xp = get_array_module(class_logits)
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        concat_boxes = xp.concatenate(proposals, axis=0) if proposals else xp.zeros((0, 4), class_logits.dtype)
        pred_boxes = self.box_coder.decode(box_regression, concat_boxes)           # (R, 4K)
        pred_boxes = pred_boxes.reshape(pred_boxes.shape[0], num_classes, 4)       # (R, K, 4)
        pred_scores = _softmax(class_logits)                                       # (R, K)

        cuts = np.cumsum(boxes_per_image)[:-1].tolist()
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(xp.split(pred_boxes, cuts), xp.split(pred_scores, cuts),
                                              image_shapes):
            boxes = clip_boxes_to_image(boxes, image_shape)

            # one candidate per (proposal, class)
            labels = xp.broadcast_to(xp.arange(num_classes, dtype=np.int64)[None, :], scores.shape)

            # remove predictions with the background label
            boxes, scores, labels = boxes[:, 1:], scores[:, 1:], labels[:, 1:]
            boxes = boxes.reshape(-1, 4)
            scores = scores.reshape(-1)
            labels = labels.reshape(-1)

            # remove low scoring boxes
            inds = xp.nonzero(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]

            # remove empty boxes
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]

            # non-maximum suppression, independently per class; keep the top detections
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    # ---- forward ---------------------------------------------------------------------------
    def _box_features(self, features, proposals, image_shapes):
        """(box head representation, res5 features or None) of the proposals."""
        x = self.box_roi_pool(features, proposals, image_shapes)                  # (R, C, 7, 7)
        if self.mask_shares_box_head:
            res5 = self.box_head.res5_features(x)                                 # (R, C5, 7, 7)
            return self.box_head.pool(res5), res5
        return self.box_head(x), None

    def _mask_logits(self, features, mask_proposals, image_shapes, res5=None, rows=None):
        """Mask logits of ``mask_proposals``. C4 (``mask_shares_box_head``): in training pass the
        box head's res5 output and the ``rows`` of the positives in it; at inference res5 is run
        again on the proposals (the detections)."""
        if not self.mask_shares_box_head:
            x = self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
        elif res5 is not None:
            x = res5[rows]                                                        # (P, C5, 7, 7)
        else:
            x = self.box_head.res5_features(self.box_roi_pool(features, mask_proposals, image_shapes))
        return self.mask_predictor(x)

    def forward(self, features, proposals, image_shapes, targets=None):
        """features: dict name -> Tensor (N, C, H_l, W_l); proposals: N arrays (R_i, 4);
        image_shapes: N (h, w); targets (training): N dicts with "boxes" (G_i, 4) float,
        "labels" (G_i,) int, and "masks" (G_i, H, W) / "keypoints" (G_i, K, 3) for those branches.

        Returns (result, losses). Training: result = [] and losses = {"loss_classifier",
        "loss_box_reg"} (+ "loss_mask", "loss_keypoint"), scalar Tensors. Inference: one dict per
        image of arrays: "boxes" (D, 4), "labels" (D,) int64, "scores" (D,), "masks" (D, 1, m, m)
        probabilities of the predicted class (m = 28; 14 for C4), "keypoints" (D, K, 3) and
        "keypoints_scores" (D, K); losses = {}.
        """
        proposals = [as_array(p) for p in proposals]
        if len(proposals) != len(image_shapes):
            raise ValueError(f"RoIHeads: {len(proposals)} proposal lists but {len(image_shapes)} image shapes")
        if self.training:
            self.check_targets(targets, len(proposals))
            return [], self._forward_train(features, proposals, image_shapes, targets)
        with no_grad():
            return self._forward_inference(features, proposals, image_shapes), {}

    def _forward_train(self, features, proposals, image_shapes, targets):
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features, res5 = self._box_features(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

        if not (self.has_mask() or self.has_keypoint()):
            return losses
        # the mask and keypoint branches train on the positive sampled proposals only
        xp = get_array_module(labels[0])
        pos_proposals, pos_matched_idxs, pos_rows, offset = [], [], [], 0
        for img_id in range(len(proposals)):
            pos = xp.nonzero(labels[img_id] > 0)[0]
            pos_proposals.append(proposals[img_id][pos])
            pos_matched_idxs.append(matched_idxs[img_id][pos])
            pos_rows.append(pos + offset)
            offset += proposals[img_id].shape[0]
        num_pos = sum(int(p.shape[0]) for p in pos_proposals)

        def zero():
            # no positive RoI in the batch: nothing to learn from this branch. torchvision runs the
            # head on zero RoIs and returns logits.sum() * 0; a constant 0 is the same loss and
            # gradient without running convolutions on an empty batch.
            return Tensor(xp.zeros((), dtype=class_logits.dtype))

        if self.has_mask():
            if num_pos == 0:
                losses["loss_mask"] = zero()
            else:
                mask_logits = self._mask_logits(features, pos_proposals, image_shapes, res5,
                                                xp.concatenate(pos_rows))
                losses["loss_mask"] = maskrcnn_loss(
                    mask_logits, pos_proposals, [as_array(t["masks"]) for t in targets],
                    [xp.asarray(as_array(t["labels"])) for t in targets], pos_matched_idxs,
                    loss=self.mask_loss, class_agnostic=self.mask_class_agnostic)

        if self.has_keypoint():
            if num_pos == 0:
                losses["loss_keypoint"] = zero()
            else:
                x = self.keypoint_roi_pool(features, pos_proposals, image_shapes)
                keypoint_logits = self.keypoint_predictor(self.keypoint_head(x))
                losses["loss_keypoint"] = keypointrcnn_loss(
                    keypoint_logits, pos_proposals, [xp.asarray(as_array(t["keypoints"])) for t in targets],
                    pos_matched_idxs)
        return losses

    def _forward_inference(self, features, proposals, image_shapes):
        box_features, _ = self._box_features(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(box_features)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals,
                                                            image_shapes)
        result = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]

        if self.has_mask():
            mask_logits = self._mask_logits(features, boxes, image_shapes)
            masks_probs = maskrcnn_inference(mask_logits, labels, loss=self.mask_loss,
                                             class_agnostic=self.mask_class_agnostic)
            for mask_prob, r in zip(masks_probs, result):
                r["masks"] = mask_prob

        if self.has_keypoint():
            x = self.keypoint_roi_pool(features, boxes, image_shapes)
            keypoint_logits = self.keypoint_predictor(self.keypoint_head(x))
            keypoints, kp_scores = keypointrcnn_inference(keypoint_logits, boxes)
            for kp, kps, r in zip(keypoints, kp_scores, result):
                r["keypoints"] = kp
                r["keypoints_scores"] = kps
        return result


# ---- from a config ----------------------------------------------------------------------------------

def build_roi_heads(cfg, backbone_out_channels, featmap_names=None):
    """The :class:`RoIHeads` of config ``cfg`` on a backbone with ``backbone_out_channels``.

    featmap_names: the maps the poolers read; default ["0", "1", "2", "3"] (P2..P5, not "pool")
    for ``cfg.features == "fpn"`` and ["0"] for C4 / C5.

    - box head: ``"2fc"`` -> TwoMLPHead(C * 7 * 7, box_head_dim); ``"res5"`` (C4) -> Res5Head on
      ``build_res5_head(cfg)``.
    - mask head (``mask_on``): ``"fcn"`` -> MaskRCNNHeads(C, mask_head_layers) +
      MaskRCNNPredictor(layers[-1], layers[-1], classes) at 14 -> 28; with the res5 box head the
      predictor instead reads res5 (2048 channels at 7x7, dim_reduced = mask_head_layers[-1], so
      14x14 masks, Figure 4 left); ``"mlp"`` -> MaskMLPHead(C, 14, (box_head_dim,) * 2) +
      MaskMLPPredictor(box_head_dim, classes, 28) (Table 2e: box_head_dim = 1024 in the paper's
      presets). classes = num_classes, or 1 with ``mask_class_agnostic``.
    - keypoint head (``keypoint_on``): KeypointRCNNHeads(C, keypoint_head_layers) +
      KeypointRCNNPredictor(layers[-1], num_keypoints).
    - poolers: ``cfg.pooler`` (Table 2c), ``pooler_sampling_ratio``, ``pooler_aligned``.
    """
    from ..config import ConfigError

    if featmap_names is None:
        featmap_names = ["0", "1", "2", "3"] if cfg.features == "fpn" else ["0"]
    C = backbone_out_channels

    def pooler(resolution):
        return MultiScaleRoIPooler(featmap_names, resolution, cfg.pooler_sampling_ratio, method=cfg.pooler,
                                   aligned=cfg.pooler_aligned)

    res = cfg.box_pooler_resolution
    if cfg.box_head == "res5":
        box_head = Res5Head.from_config(cfg)
        if box_head.in_channels is not None and box_head.in_channels != C:
            raise ConfigError(f"config key 'box_head': res5 expects {box_head.in_channels} input channels "
                              f"but the backbone gives {C}")
    else:
        box_head = TwoMLPHead(C * res * res, cfg.box_head_dim)
    box_predictor = FastRCNNPredictor(box_head.out_channels, cfg.num_classes)

    mask_kw = {}
    if cfg.mask_on:
        mask_classes = 1 if cfg.mask_class_agnostic else cfg.num_classes
        if cfg.box_head == "res5":
            if cfg.mask_head != "fcn":
                raise ConfigError(f"config key 'mask_head': {cfg.mask_head!r} is not available with the res5 "
                                  f"box head (C4 shares res5 with the mask FCN, Figure 4 left); use 'fcn'")
            dim_reduced = cfg.mask_head_layers[-1]
            mask_kw = dict(mask_predictor=MaskRCNNPredictor(box_head.out_channels, dim_reduced, mask_classes),
                           mask_shares_box_head=True)
        elif cfg.mask_head == "fcn":
            layers = tuple(cfg.mask_head_layers)
            mask_kw = dict(mask_roi_pool=pooler(cfg.mask_pooler_resolution),
                           mask_head=MaskRCNNHeads(C, layers, 1),
                           mask_predictor=MaskRCNNPredictor(layers[-1], layers[-1], mask_classes))
        else:
            hidden = cfg.box_head_dim
            mask_kw = dict(mask_roi_pool=pooler(cfg.mask_pooler_resolution),
                           mask_head=MaskMLPHead(C, cfg.mask_pooler_resolution, (hidden, hidden)),
                           mask_predictor=MaskMLPPredictor(hidden, mask_classes, 2 * cfg.mask_pooler_resolution))

    keypoint_kw = {}
    if cfg.keypoint_on:
        layers = tuple(cfg.keypoint_head_layers)
        keypoint_kw = dict(keypoint_roi_pool=pooler(cfg.keypoint_pooler_resolution),
                           keypoint_head=KeypointRCNNHeads(C, layers),
                           keypoint_predictor=KeypointRCNNPredictor(layers[-1], cfg.num_keypoints))

    return RoIHeads(pooler(res), box_head, box_predictor,
                    cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, cfg.box_batch_size_per_image,
                    cfg.box_positive_fraction, tuple(cfg.box_reg_weights),
                    cfg.box_score_thresh, cfg.box_nms_thresh, cfg.box_detections_per_img,
                    mask_loss=cfg.mask_loss, mask_class_agnostic=cfg.mask_class_agnostic,
                    **mask_kw, **keypoint_kw)

