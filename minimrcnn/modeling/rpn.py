r"""Region Proposal Network: Mask R-CNN's first stage (Faster R-CNN, Ren et al. 2015, Sec. 3.1).

A small conv head slides over every feature map (every FPN level). At each location it scores
$A$ anchors (A = 3 aspect ratios at one size per FPN level) for "object vs. not" and regresses
4 deltas that move each anchor onto an object:

    features[l]  (N, C, H, W) --conv3x3+ReLU--> (N, C, H, W) --1x1--> objectness   (N, A, H, W)
                                                              --1x1--> bbox deltas  (N, A*4, H, W)

Proposals (inference and training): per level, keep the ``pre_nms_top_n`` anchors with the
highest objectness, decode their deltas into boxes, clip them to the image, drop tiny and
low-scoring ones, run NMS (IoU > ``nms_thresh``) separately per level, and keep the
``post_nms_top_n`` best of each image. No gradient flows through the proposals.

Losses (training): anchors are labelled by IoU with the ground truth (:class:`Matcher` with
0.7 / 0.3 and the best anchor of every gt box), 256 per image are sampled with at most half
positives, and (Faster R-CNN eq. 1)

$$L = \frac{1}{N_{cls}} \sum_i L_{cls}(p_i, p_i^*)
      + \frac{1}{N_{cls}} \sum_i p_i^* \,\mathrm{smooth}_{L1, \beta=1/9}(t_i - t_i^*),$$

where $i$ runs over the sampled anchors, $N_{cls}$ is their number, $L_{cls}$ is binary cross
entropy on the logits and $t^*$ are the ``BoxCoder((1, 1, 1, 1))`` encodings of the matched gt
boxes (torchvision's normalisation: both terms by the number of sampled anchors).

Everything follows ``torchvision.models.detection.rpn`` (names, ordering, thresholds), so that
torchvision's RPN weights give the same proposals. Two differences, neither changing a result:
the top-k uses ``argpartition`` and only the selected anchors are decoded (decoding is per
anchor), and only the sampled positives are encoded as regression targets. The random sample of
anchors cannot equal torchvision's (NumPy generator vs. ``torch.randperm``).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from ..autograd.tensor import as_array
from ..backend import device_of, get_array_module
from ..checks import fraction, positive_int
from ..functional.elementwise import sigmoid_array
from ..ops import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from .image_list import ImageList
from .matcher import BalancedPositiveNegativeSampler, Matcher, ignore_crowd_negatives

__all__ = ["RPNHead", "RegionProposalNetwork", "permute_and_flatten", "concat_box_prediction_layers"]


class RPNHead(nn.Module):
    """The RPN's conv head, shared by all feature levels.

    in_channels: C of the features (256 with FPN); num_anchors: A per location;
    conv_depth: number of 3x3 conv + ReLU layers before the two 1x1 predictors.

    ``forward(x)``: x a list of L Tensors (N, C, H_l, W_l) -> (logits, bbox_reg), two lists of L
    Tensors: objectness logits (N, A, H_l, W_l) and deltas (N, A*4, H_l, W_l), whose channel
    ``4a + j`` is delta j (dx, dy, dw, dh) of anchor a.

    Parameter names are torchvision's (``conv.0.0.weight``: ``conv`` holds ``conv_depth`` blocks,
    each a Sequential(Conv2d, ReLU) like torchvision's Conv2dNormActivation without a norm);
    checkpoints with the older single-conv name ``conv.weight`` load too. All convs start from
    $W \\sim N(0, 0.01^2)$, $b = 0$.
    """

    def __init__(self, in_channels, num_anchors, conv_depth=1):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_anchors", num_anchors), ("conv_depth", conv_depth)):
            positive_int(v, name, "RPNHead")
        self.conv = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1), nn.ReLU())
            for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)

        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def _upgrade_state_dict(self, state_dict, prefix):
        # torchvision < 0.13 had a single conv named "conv": conv.weight -> conv.0.0.weight
        for kind in ("weight", "bias"):
            old_key, new_key = f"{prefix}conv.{kind}", f"{prefix}conv.0.0.{kind}"
            if old_key in state_dict:
                state_dict[new_key] = state_dict.pop(old_key)

    def forward(self, x):
        if not isinstance(x, (list, tuple)):
            raise TypeError(f"RPNHead expects a list of feature maps (N, C, H, W), one per level, "
                            f"got {type(x).__name__}")
        logits, bbox_reg = [], []
        for feature in x:
            t = self.conv(feature)                   # (N, C, H, W)
            logits.append(self.cls_logits(t))        # (N, A, H, W)
            bbox_reg.append(self.bbox_pred(t))       # (N, A*4, H, W)
        return logits, bbox_reg


def permute_and_flatten(layer, N, A, C, H, W):
    """(N, A*C, H, W) -> (N, H*W*A, C): rows ordered (H, W, A), the order of the anchors."""
    layer = F.reshape(layer, (N, -1, C, H, W))       # (N, A, C, H, W)
    layer = F.permute(layer, (0, 3, 4, 1, 2))        # (N, H, W, A, C)
    return F.reshape(layer, (N, -1, C))              # (N, H*W*A, C)


def concat_box_prediction_layers(box_cls, box_regression):
    """Flatten the per-level head outputs into one row per anchor, levels concatenated.

    box_cls: L Tensors (N, A*C, H_l, W_l); box_regression: L Tensors (N, A*4, H_l, W_l).
    Returns box_cls (N*T, C) and box_regression (N*T, 4), T = sum_l H_l W_l A, row
    ``n*T + t`` for anchor t of image n (anchors ordered level, then (H, W, A)).
    """
    box_cls_flattened, box_regression_flattened = [], []
    for box_cls_per_level, box_regression_per_level in zip(box_cls, box_regression):
        N, AxC, H, W = box_cls_per_level.shape
        A = box_regression_per_level.shape[1] // 4
        C = AxC // A
        box_cls_flattened.append(permute_and_flatten(box_cls_per_level, N, A, C, H, W))
        box_regression_flattened.append(permute_and_flatten(box_regression_per_level, N, A, 4, H, W))
    box_cls = F.flatten(F.concat(box_cls_flattened, dim=1), 0, -2)                  # (N*T, C)
    box_regression = F.reshape(F.concat(box_regression_flattened, dim=1), (-1, 4))  # (N*T, 4)
    return box_cls, box_regression


class RegionProposalNetwork(nn.Module):
    """The RPN: anchors + head -> proposals, and in training the two RPN losses.

    anchor_generator: ``ops.AnchorGenerator``; head: :class:`RPNHead` (or any Module with its
    interface); fg_iou_thresh / bg_iou_thresh: IoU at or above which an anchor is positive / below
    which it is negative (0.7 / 0.3); batch_size_per_image, positive_fraction: the anchor sample
    (256, 0.5); pre_nms_top_n: ``dict(training=, testing=)`` anchors kept per level per image
    before NMS (2000 / 1000); post_nms_top_n: the same per image after NMS (2000 / 1000);
    nms_thresh: 0.7; score_thresh: minimum objectness probability of a proposal (0.0).

    ``forward(images, features, targets=None) -> (boxes, losses)``: images an :class:`ImageList`;
    features an OrderedDict of L Tensors (N, C, H_l, W_l) (all are used, in order); targets (only
    in training) a list of N dicts whose "boxes" is an (M_i, 4) xyxy array (M_i may be 0).
    boxes: N arrays (K_i, 4) of proposals, K_i <= post_nms_top_n, by decreasing objectness;
    losses: ``{"loss_objectness", "loss_rpn_box_reg"}`` scalar Tensors in training, ``{}`` in eval.

    The sampler draws from ``self.fg_bg_sampler.generator`` (None: ``nn.init``'s global
    generator); set it to a ``numpy.random.Generator`` for a reproducible sample.
    """

    def __init__(self, anchor_generator, head, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                 positive_fraction, pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh=0.0):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

        # used during training
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)

        # used for the proposals
        self._pre_nms_top_n = _check_top_n(pre_nms_top_n, "pre_nms_top_n")
        self._post_nms_top_n = _check_top_n(post_nms_top_n, "post_nms_top_n")
        self.nms_thresh = fraction(nms_thresh, "nms_thresh", "RegionProposalNetwork")
        self.score_thresh = fraction(score_thresh, "score_thresh", "RegionProposalNetwork")
        self.min_size = 1e-3

    def pre_nms_top_n(self):
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self):
        return self._post_nms_top_n["training" if self.training else "testing"]

    # ---- anchors ---------------------------------------------------------------------------
    def _anchors(self, images, features, num_anchors_per_level):
        """All anchors of the padded batch, levels concatenated: (T, 4), the same for every image."""
        per_level = self.anchor_generator(tuple(images.tensors.shape[-2:]), [f.shape[-2:] for f in features],
                                          dtype=features[0].dtype, device=device_of(features[0]))
        for level, (anchors, expected) in enumerate(zip(per_level, num_anchors_per_level)):
            if anchors.shape[0] != expected:
                h, w = features[level].shape[-2:]
                raise ValueError(f"level {level}: the anchor generator gives {anchors.shape[0] // (h * w)} "
                                 f"anchors per location but the head predicts {expected // (h * w)} "
                                 f"(RPNHead's num_anchors must equal len(sizes) * len(aspect_ratios))")
        return get_array_module(features[0]).concatenate(per_level, axis=0)

    # ---- training targets ------------------------------------------------------------------
    def _gt_boxes(self, targets_per_image, index, like, key="boxes"):
        """targets[key] of image ``index`` as an (M, 4) array like ``like`` (dtype, device)."""
        if not hasattr(targets_per_image, "keys") or key not in targets_per_image:
            raise ValueError(f"targets[{index}] must be a dict with a {key!r} entry, got {targets_per_image!r}")
        xp = get_array_module(like)
        boxes = xp.asarray(as_array(targets_per_image[key]))
        if boxes.size == 0:
            return xp.zeros((0, 4), dtype=like.dtype)
        _check_gt_boxes(boxes, index, key)
        return boxes.astype(like.dtype, copy=False)

    def assign_targets_to_anchors(self, anchors, targets):
        """Label every anchor of every image: 1 object, 0 background, -1 ignored.

        anchors: N arrays (T, 4); targets: N dicts with "boxes" (M_i, 4).
        Returns (labels, matched_gt_boxes): N arrays (T,) and N arrays (T, 4), the gt box matched
        to each anchor (gt 0 for unmatched anchors, zeros for an image without boxes, whose
        anchors are all background). A target's optional "crowd_boxes" (C, 4) are never matched;
        a would-be negative anchor inside one is ignored (:func:`ignore_crowd_negatives`).
        """
        if not isinstance(targets, (list, tuple)) or len(targets) != len(anchors):
            n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
            raise ValueError(f"targets must be a list of {len(anchors)} dicts (one per image), got {n}")
        labels, matched_gt_boxes = [], []
        for index, (anchors_per_image, targets_per_image) in enumerate(zip(anchors, targets)):
            xp = get_array_module(anchors_per_image)
            gt_boxes = self._gt_boxes(targets_per_image, index, anchors_per_image)     # (M, 4)
            crowd_boxes = None
            if "crowd_boxes" in targets_per_image:                                      # (C, 4)
                crowd_boxes = self._gt_boxes(targets_per_image, index, anchors_per_image, "crowd_boxes")
            if gt_boxes.shape[0] == 0:
                # background image: every anchor is a negative
                matched_gt_boxes_per_image = xp.zeros(anchors_per_image.shape, dtype=anchors_per_image.dtype)
                labels_per_image = xp.zeros((anchors_per_image.shape[0],), dtype=anchors_per_image.dtype)
            else:
                ### BEGIN SOLUTION rpn_targets
                match_quality_matrix = self.box_similarity(gt_boxes, anchors_per_image)   # (M, T)
                matched_idxs = self.proposal_matcher(match_quality_matrix)                # (T,)
                # -1 and -2 read gt 0 here; their labels say they are not positives
                matched_gt_boxes_per_image = gt_boxes[xp.maximum(matched_idxs, 0)]        # (T, 4)

                labels_per_image = (matched_idxs >= 0).astype(anchors_per_image.dtype)
                labels_per_image[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
                labels_per_image[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
                ### END SOLUTION
            ignore_crowd_negatives(labels_per_image, anchors_per_image, crowd_boxes)
            labels.append(labels_per_image)
            matched_gt_boxes.append(matched_gt_boxes_per_image)
        return labels, matched_gt_boxes

    # ---- proposals -------------------------------------------------------------------------
    def _get_top_n_idx(self, objectness, num_anchors_per_level):
        """Indices (N, K) into T of the ``pre_nms_top_n`` highest objectness per level per image
        (K = sum_l min(pre_nms_top_n, T_l)); within a level they are in increasing anchor order
        (the order does not matter: NMS sorts by score)."""
        xp = get_array_module(objectness)
        r, offset = [], 0
        for num_anchors in num_anchors_per_level:
            ob = objectness[:, offset:offset + num_anchors]                 # (N, T_l)
            k = min(self.pre_nms_top_n(), num_anchors)
            if k < num_anchors:
                # the k largest in O(T_l), in no particular order
                top_n_idx = xp.argpartition(-ob, k - 1, axis=1)[:, :k]
                top_n_idx = xp.sort(top_n_idx, axis=1)
            else:
                top_n_idx = xp.broadcast_to(xp.arange(num_anchors), ob.shape)
            r.append(top_n_idx + offset)
            offset += num_anchors
        return xp.concatenate(r, axis=1)

    def filter_proposals(self, pred_bbox_deltas, objectness, anchors, image_shapes, num_anchors_per_level):
        """Objectness + deltas -> at most ``post_nms_top_n`` proposals per image.

        pred_bbox_deltas: (N, T, 4) array; objectness: (N, T) logits array; anchors: (T, 4);
        image_shapes: N (h, w) before padding; num_anchors_per_level: [T_0, ..., T_{L-1}].
        Returns (boxes, scores): N arrays (K_i, 4) and (K_i,), scores = sigmoid(objectness), by
        decreasing score.
        """
        xp = get_array_module(objectness)
        num_images = objectness.shape[0]
        if not bool(xp.isfinite(objectness).all()):
            bad = int((~xp.isfinite(objectness)).sum())
            raise FloatingPointError(f"RPN objectness has {bad} non-finite logits of {objectness.size} "
                                     f"(did training diverge? try a lower learning rate)")
        levels = xp.concatenate([xp.full((n,), level, dtype=np.int64)
                                 for level, n in enumerate(num_anchors_per_level)])      # (T,)

        # select top_n anchors independently per level before NMS, and decode only those
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)            # (N, K)
        batch_idx = xp.arange(num_images)[:, None]
        objectness = objectness[batch_idx, top_n_idx]                                 # (N, K)
        levels = levels[top_n_idx]                                                    # (N, K)
        deltas = pred_bbox_deltas[batch_idx, top_n_idx]                               # (N, K, 4)
        proposals = self.box_coder.decode(deltas.reshape(-1, 4), anchors[top_n_idx].reshape(-1, 4))
        proposals = proposals.reshape(num_images, -1, 4)                              # (N, K, 4)

        objectness_prob = sigmoid_array(objectness)

        final_boxes, final_scores = [], []
        for boxes, scores, lvl, img_shape in zip(proposals, objectness_prob, levels, image_shapes):
            boxes = clip_boxes_to_image(boxes, img_shape)

            # remove small boxes (and NaN ones)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]

            # remove low scoring boxes (>=, as torchvision)
            keep = xp.nonzero(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]

            # non-maximum suppression, independently per level
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)

            # keep only the top post_nms_top_n, by score
            keep = keep[:self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    # ---- losses ----------------------------------------------------------------------------
    def compute_loss(self, objectness, pred_bbox_deltas, labels, matched_gt_boxes, anchors):
        """The two RPN losses over a balanced sample of anchors.

        objectness: Tensor (N*T, 1) logits; pred_bbox_deltas: Tensor (N*T, 4); labels,
        matched_gt_boxes, anchors: N arrays (T,), (T, 4), (T, 4) (from
        :meth:`assign_targets_to_anchors`).
        Returns (objectness_loss, box_loss), scalar Tensors:
        objectness_loss = mean over sampled anchors of BCE(logit, label);
        box_loss = sum over sampled positives of smooth_l1(delta - target, beta=1/9) / #sampled.
        """
        xp = get_array_module(labels[0])
        sampled_pos_inds, sampled_neg_inds = self.fg_bg_sampler(labels)
        sampled_pos_inds = xp.nonzero(xp.concatenate(sampled_pos_inds))[0]        # into N*T
        sampled_neg_inds = xp.nonzero(xp.concatenate(sampled_neg_inds))[0]
        sampled_inds = xp.concatenate([sampled_pos_inds, sampled_neg_inds])

        objectness = F.flatten(objectness)                                       # (N*T,)
        labels = xp.concatenate(labels)                                          # (N*T,)

        # regression targets t* of the sampled positives only (the others are never used)
        matched_gt_boxes = xp.concatenate(matched_gt_boxes)[sampled_pos_inds]    # (P, 4)
        positive_anchors = xp.concatenate(anchors)[sampled_pos_inds]             # (P, 4)
        regression_targets = self.box_coder.encode(matched_gt_boxes, positive_anchors)

        box_loss = F.smooth_l1_loss(
            pred_bbox_deltas[sampled_pos_inds],                                   # (P, 4)
            Tensor(regression_targets),
            beta=1 / 9,
            reduction="sum",
        ) / sampled_inds.size

        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness[sampled_inds], Tensor(labels[sampled_inds]))
        return objectness_loss, box_loss

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, images, features, targets=None):
        """images: ImageList; features: OrderedDict name -> Tensor (N, C, H_l, W_l);
        targets: list of N dicts with "boxes" (training only).
        Returns (boxes, losses): N proposal arrays (K_i, 4), and the loss dict (empty in eval)."""
        features = list(features.values()) if hasattr(features, "values") else list(features)
        _check_rpn_inputs(images, features)
        num_images = len(images.image_sizes)

        objectness, pred_bbox_deltas = self.head(features)          # L x (N, A, H, W), L x (N, A*4, H, W)
        num_anchors_per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        anchors = self._anchors(images, features, num_anchors_per_level)    # (T, 4)
        total = anchors.shape[0]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        # (N*T, 1), (N*T, 4)

        # proposals from raw arrays: no gradient flows through them (Faster R-CNN)
        boxes, scores = self.filter_proposals(
            pred_bbox_deltas.data.reshape(num_images, total, 4),
            objectness.data.reshape(num_images, total),
            anchors, images.image_sizes, num_anchors_per_level)

        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None in training mode (call .eval() for proposals only)")
            anchors_per_image = [anchors] * num_images
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors_per_image, targets)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(
                objectness, pred_bbox_deltas, labels, matched_gt_boxes, anchors_per_image)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses


# ---- the checks at the door ---------------------------------------------------------------------

def _check_top_n(value, name):
    if not hasattr(value, "keys") or set(value.keys()) != {"training", "testing"}:
        raise ValueError(f"RegionProposalNetwork: {name} must be a dict with keys 'training' and "
                         f"'testing', got {value!r}")
    for k, v in value.items():
        positive_int(v, f"{name}[{k!r}]", "RegionProposalNetwork")
    return dict(value)


def _check_rpn_inputs(images, features):
    if not isinstance(images, ImageList):
        raise TypeError(f"images must be an ImageList, got {type(images).__name__}")
    if len(features) == 0:
        raise ValueError("features is empty: the RPN needs at least one feature map")
    num_images = len(images.image_sizes)
    for name_index, f in enumerate(features):
        if f.ndim != 4 or f.shape[0] != num_images:
            raise ValueError(f"feature map {name_index} has shape {tuple(f.shape)}; expected "
                             f"(N={num_images}, C, H, W)")


def _check_gt_boxes(boxes, index, key):
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "fiu":
        raise ValueError(f"targets[{index}][{key!r}] must be an (M, 4) array of x1, y1, x2, y2, got "
                         f"shape {tuple(boxes.shape)} and dtype {boxes.dtype}")
    xp = get_array_module(boxes)
    if key == "crowd_boxes":      # a crowd region may be a line (zero area): it then covers nothing
        bad = ~xp.isfinite(boxes).all(axis=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    else:
        bad = ~xp.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(bad.any()):
        i = int(xp.argmax(bad))
        raise ValueError(f"targets[{index}][{key!r}][{i}] = {boxes[i].tolist()}: boxes must be finite "
                         f"with {'x1 <= x2 and y1 <= y2' if key == 'crowd_boxes' else 'positive width and height'}")
