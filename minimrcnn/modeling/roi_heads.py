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

**Crowd regions.** Targets may carry "crowd_boxes" (COCO's ``iscrowd`` regions): never
positives, never negatives. A proposal that would be background and lies mostly inside one
(intersection over its own area above 0.7, Detectron's CROWD_FILTER_THRESH) is ignored (-1).

**C4 (Figure 4 left)**, :class:`C4RoIHeads`. The box head is res5 + average pooling
(:class:`Res5Head`) and the mask branch has no head of its own: the mask predictor (deconv to
14x14, 1x1 conv) reads the box head's res5 output (R, 2048, 7, 7) before the pooling, as
Detectron's ``mask_rcnn_fcn_head_v0upshare``: in training the res5 features of the positive
sampled RoIs are reused (res5 runs once per RoI); at inference res5 is run again, with the same
weights, on the RoIAlign features of the final detections.

Results are raw arrays (NumPy or CuPy), losses scalar Tensors; see :meth:`RoIHeads.forward`.
"""
import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..checks import fraction, positive_int
from ..functional.elementwise import softmax_array
from ..ops import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from .box_head import Res5Head, fastrcnn_loss
from .keypoint_head import keypointrcnn_inference, keypointrcnn_loss
from .mask_loss import MASK_LOSSES, maskrcnn_inference, maskrcnn_loss
from .matcher import BalancedPositiveNegativeSampler, Matcher, ignore_crowd_negatives

__all__ = ["RoIHeads", "C4RoIHeads"]


class RoIHeads(nn.Module):
    """Box, mask and keypoint heads on the proposals (see the module docstring).

    Args (torchvision's, plus the paper's ablation switches):
        box_roi_pool, box_head, box_predictor: :class:`MultiScaleRoIPooler` (7x7),
            :class:`TwoMLPHead`, :class:`FastRCNNPredictor`.
        fg_iou_thresh, bg_iou_thresh: 0.5, 0.5. batch_size_per_image, positive_fraction: 512, 0.25.
        bbox_reg_weights: (10, 10, 5, 5) (None means that too).
        score_thresh, nms_thresh, detections_per_img: 0.05, 0.5, 100.
        mask_roi_pool, mask_head, mask_predictor: the mask branch (None: no masks).
        keypoint_roi_pool, keypoint_head, keypoint_predictor: the keypoint branch (None: none).
        mask_loss: "sigmoid" (per-class binary, the paper) | "softmax" (multinomial, Table 2b).
        mask_class_agnostic: the mask predictor has one channel for all classes.

    The sampler draws from ``self.fg_bg_sampler.generator`` (None: ``nn.init``'s global one).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor,
                 fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights,
                 score_thresh, nms_thresh, detections_per_img,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None,
                 keypoint_roi_pool=None, keypoint_head=None, keypoint_predictor=None,
                 mask_loss="sigmoid", mask_class_agnostic=False):
        super().__init__()
        _check_heads_args(score_thresh, nms_thresh, mask_loss, mask_class_agnostic)
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        if bbox_reg_weights is None:
            bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)
        self.box_coder = BoxCoder(bbox_reg_weights)

        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor

        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = positive_int(detections_per_img, "detections_per_img", "RoIHeads")

        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

        self.mask_loss = mask_loss
        self.mask_class_agnostic = bool(mask_class_agnostic)

    def has_mask(self):
        return self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None

    def has_keypoint(self):
        return (self.keypoint_roi_pool is not None and self.keypoint_head is not None
                and self.keypoint_predictor is not None)

    # ---- training targets ------------------------------------------------------------------
    def check_targets(self, targets, num_images):
        """One dict per image with the entries the branches train on (see :func:`_check_targets`)."""
        needed = ["boxes", "labels"] + ["masks"] * self.has_mask() + ["keypoints"] * self.has_keypoint()
        _check_targets(targets, num_images, needed)

    def add_gt_proposals(self, proposals, gt_boxes):
        """Append each image's gt boxes to its proposals (so every gt has a positive RoI)."""
        xp = get_array_module(*proposals)
        return [xp.concatenate([p, g], axis=0) for p, g in zip(proposals, gt_boxes)]

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels, crowd_boxes=None):
        """For every proposal: the index of its matched gt (0 when unmatched) and its label
        (the gt class if IoU >= fg_iou_thresh, 0 below bg_iou_thresh, -1 in between; -1 too for a
        would-be negative inside one of the image's ``crowd_boxes`` (C_i, 4), see
        :func:`~minimrcnn.modeling.matcher.ignore_crowd_negatives`)."""
        if crowd_boxes is None:
            crowd_boxes = [None] * len(proposals)
        matched_idxs, labels = [], []
        for proposals_in_image, gt_boxes_in_image, gt_labels_in_image, crowd_in_image in zip(
                proposals, gt_boxes, gt_labels, crowd_boxes):
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
            ignore_crowd_negatives(labels_in_image, proposals_in_image, crowd_in_image)
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
        crowd_boxes = [xp.asarray(as_array(t["crowd_boxes"])).astype(dtype, copy=False).reshape(-1, 4)
                       if "crowd_boxes" in t else None for t in targets]

        proposals = self.add_gt_proposals(proposals, gt_boxes)           # crowd boxes never are gt
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels, crowd_boxes)
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
        pred_scores = softmax_array(class_logits)                                     # (R, K)

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
    def box_features(self, features, proposals, image_shapes):
        """The box head's representation of the proposals, (R, D), and what the mask branch may
        reuse of it (nothing here; res5 features in :class:`C4RoIHeads`)."""
        x = self.box_roi_pool(features, proposals, image_shapes)                  # (R, C, 7, 7)
        return self.box_head(x), None

    def mask_logits(self, features, proposals, image_shapes, shared=None, rows=None):
        """Mask logits (P, classes, m, m) of ``proposals``: pool at 14x14, the mask head, the
        predictor. (``shared`` / ``rows``: the box branch's features and the proposals' rows in
        them, which :class:`C4RoIHeads` reuses; unused here.)"""
        x = self.mask_roi_pool(features, proposals, image_shapes)                 # (P, C, 14, 14)
        return self.mask_predictor(self.mask_head(x))

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
        box_features, shared = self.box_features(features, proposals, image_shapes)
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
                mask_logits = self.mask_logits(features, pos_proposals, image_shapes, shared,
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
        box_features, _ = self.box_features(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(box_features)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals,
                                                            image_shapes)
        result = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]

        if self.has_mask():
            mask_logits = self.mask_logits(features, boxes, image_shapes)
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


class C4RoIHeads(RoIHeads):
    """The RoI heads of the C4 model (Figure 4 left): res5 is the box head, and the mask predictor
    reads res5's 7x7 output instead of a mask head of its own.

    Args as :class:`RoIHeads`, with ``box_head`` a :class:`Res5Head` and, for masks, only
    ``mask_predictor`` (a MaskRCNNPredictor on res5's channels: 7x7 -> 14x14 masks).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, *args, mask_predictor=None, **kwargs):
        if not isinstance(box_head, Res5Head):
            raise TypeError(f"C4RoIHeads: box_head must be a Res5Head (res5 + average pooling), got "
                            f"{type(box_head).__name__}")
        if kwargs.get("mask_roi_pool") is not None or kwargs.get("mask_head") is not None:
            raise ValueError("C4RoIHeads: the mask predictor reads res5; give no mask_roi_pool or mask_head")
        super().__init__(box_roi_pool, box_head, box_predictor, *args, mask_predictor=mask_predictor, **kwargs)

    def has_mask(self):
        return self.mask_predictor is not None

    def box_features(self, features, proposals, image_shapes):
        """(pooled res5 (R, C5), res5 (R, C5, 7, 7)): the second is what the mask branch reads."""
        res5 = self.box_head.res5_features(self.box_roi_pool(features, proposals, image_shapes))
        return self.box_head.pool(res5), res5

    def mask_logits(self, features, proposals, image_shapes, shared=None, rows=None):
        """In training, ``shared[rows]``: the res5 features of the positive proposals, computed
        once by the box branch; at inference (``shared`` None) res5 runs again, with the same
        weights, on the detections."""
        if shared is None:
            shared = self.box_head.res5_features(self.box_roi_pool(features, proposals, image_shapes))
            rows = slice(None)
        return self.mask_predictor(shared[rows])                                  # (P, classes, 14, 14)


# ---- the checks at the door ------------------------------------------------------------------------

def _check_heads_args(score_thresh, nms_thresh, mask_loss, mask_class_agnostic):
    fraction(score_thresh, "score_thresh", "RoIHeads")
    fraction(nms_thresh, "nms_thresh", "RoIHeads")
    if mask_loss not in MASK_LOSSES:
        raise ValueError(f"RoIHeads: mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
    if mask_loss == "softmax" and mask_class_agnostic:
        raise ValueError("RoIHeads: mask_loss='softmax' needs class-specific masks "
                         "(mask_class_agnostic=False)")


def _check_targets(targets, num_images, needed):
    if targets is None:
        raise ValueError("targets should not be None in training mode (call .eval() for detections)")
    if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
        n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
        raise ValueError(f"targets must be a list of {num_images} dicts (one per image), got {n}")
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
        if "masks" in needed and as_array(t["masks"]).shape[0] != labels.shape[0]:
            raise ValueError(f"targets[{i}] has {labels.shape[0]} boxes but "
                             f"{as_array(t['masks']).shape[0]} masks (one per box)")


def __getattr__(name):
    # the builder moved to minimrcnn.models (every config -> module builder on one page)
    if name == "build_roi_heads":
        from .. import models
        return models.build_roi_heads
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
