"""Box utilities: area, IoU, clipping, small-box removal and the box coder.

Boxes are ``(N, 4)`` arrays of corners ``x1, y1, x2, y2`` (``x1 <= x2``, ``y1 <= y2``), in
pixels of the (resized) image. Everything here follows ``torchvision.ops.boxes`` and
``torchvision.models.detection._utils.BoxCoder`` operation for operation, so that float32 results
agree with torchvision's to the last bit where the arithmetic is the same (+, -, *, /, min, max)
and to an ulp or so where a transcendental (``exp``, ``log``) is involved.

The functions take NumPy or CuPy arrays (or Tensors, whose ``.data`` is used: box arithmetic
carries no gradient in Mask R-CNN, the losses compare raw deltas with encoded targets) and return
arrays of the same kind.
"""
import math
import numbers

import numpy as np

from ..autograd.tensor import as_array
from ..backend import get_array_module
from .checks import as_boxes, check_valid_boxes, first_index

__all__ = ["box_area", "box_iou", "box_ioa", "clip_boxes_to_image", "remove_small_boxes", "BoxCoder"]


def _as_float(boxes):
    """Integer boxes become float32 (torchvision's detection code only sees float boxes)."""
    return boxes if boxes.dtype.kind == "f" else boxes.astype(np.float32)


# ---- area, IoU -----------------------------------------------------------------------------------

def box_area(boxes):
    """Area of each box: $(x_2 - x_1)(y_2 - y_1)$.

    boxes: (..., 4) xyxy.  Returns (...,) in the dtype of ``boxes``.
    """
    boxes = as_boxes(boxes, "boxes", ndim=None)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1, boxes2):
    r"""Pairwise intersection over union.

    $\mathrm{IoU}(a, b) = |a \cap b| / (|a| + |b| - |a \cap b|)$, computed exactly as
    ``torchvision.ops.box_iou``: the intersection is
    $\max(0, \min(x_2) - \max(x_1)) \cdot \max(0, \min(y_2) - \max(y_1))$.

    boxes1: (N, 4), boxes2: (M, 4), xyxy, finite, with x1 <= x2 and y1 <= y2.
    Returns (N, M). Two boxes of zero area give 0/0 = NaN, as in torchvision.
    """
    boxes1 = as_boxes(boxes1, "boxes1")
    boxes2 = as_boxes(boxes2, "boxes2")
    check_valid_boxes(boxes1, "boxes1")
    check_valid_boxes(boxes2, "boxes2")
    xp = get_array_module(boxes1)
    area1 = box_area(boxes1)                                     # (N,)
    area2 = box_area(boxes2)                                     # (M,)
    lt = xp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])    # (N, M, 2)
    rb = xp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])    # (N, M, 2)
    wh = xp.maximum(rb - lt, 0)                                  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]                              # (N, M)
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def box_ioa(boxes, regions):
    r"""Pairwise intersection over the area of the first box: $|b \cap r| / |b|$.

    How much of box $b$ lies inside region $r$ (Detectron's ``bbox_overlaps`` against crowd
    regions): 1 for a box wholly inside, 0 for one outside. boxes: (N, 4), regions: (M, 4), xyxy,
    finite, x1 <= x2, y1 <= y2. Returns (N, M); a box of zero area gives 0.
    """
    boxes = as_boxes(boxes, "boxes")
    regions = as_boxes(regions, "regions")
    check_valid_boxes(boxes, "boxes")
    check_valid_boxes(regions, "regions")
    xp = get_array_module(boxes)
    lt = xp.maximum(boxes[:, None, :2], regions[None, :, :2])    # (N, M, 2)
    rb = xp.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    wh = xp.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]                              # (N, M)
    area = box_area(boxes)[:, None]                              # (N, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(area > 0, inter / area, 0)


# ---- clipping, small boxes -----------------------------------------------------------------------

def clip_boxes_to_image(boxes, size):
    """Clip boxes to the image: x into [0, width], y into [0, height].

    boxes: (..., 4) xyxy; size: (height, width). Returns a new array of the same shape and dtype.
    """
    boxes = as_boxes(boxes, "boxes", ndim=None)
    height, width = _check_image_size(size)
    xp = get_array_module(boxes)
    out = boxes.copy()
    out[..., 0::2] = xp.clip(boxes[..., 0::2], 0, width)
    out[..., 1::2] = xp.clip(boxes[..., 1::2], 0, height)
    return out


def remove_small_boxes(boxes, min_size):
    """Indices (int64, increasing) of the boxes whose width and height are both >= ``min_size``.

    boxes: (N, 4) xyxy.  A box with a NaN side is removed.
    """
    boxes = as_boxes(boxes, "boxes")
    if not isinstance(min_size, numbers.Real) or math.isnan(min_size):
        raise ValueError(f"min_size must be a real number, got {min_size!r}")
    xp = get_array_module(boxes)
    ws = boxes[:, 2] - boxes[:, 0]
    hs = boxes[:, 3] - boxes[:, 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return xp.nonzero(keep)[0].astype(np.int64)


# ---- box coder -----------------------------------------------------------------------------------

class BoxCoder:
    r"""Encode boxes as deltas relative to reference boxes (anchors, proposals), and back.

    For a proposal (or anchor) $P$ with width $P_w = x_2 - x_1$ (no +1), height $P_h$ and centre
    $P_x = x_1 + P_w / 2$, $P_y = y_1 + P_h / 2$, and a target box $G$, the weighted deltas
    $(w_x, w_y, w_w, w_h)$ = ``weights`` are (R-CNN, Girshick 2014, eq. 6-9):

    $$t_x = w_x (G_x - P_x) / P_w,\quad t_y = w_y (G_y - P_y) / P_h,\quad
      t_w = w_w \log(G_w / P_w),\quad t_h = w_h \log(G_h / P_h).$$

    ``decode`` inverts this, clamping $t_w / w_w$ and $t_h / w_h$ at ``bbox_xform_clip``
    ($\log(1000/16)$) before the exponential so that no box grows beyond 1000/16 times its
    reference; the decoded corners are $x_1 = c_x - w/2$, $x_2 = c_x + w/2$ (torchvision).

    Mask R-CNN (torchvision) uses weights (1, 1, 1, 1) in the RPN and (10, 10, 5, 5) in the box head.
    """

    def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16)):
        weights = tuple(weights)
        if len(weights) != 4 or not all(isinstance(w, numbers.Real) and math.isfinite(w) and w > 0
                                        for w in weights):
            raise ValueError(f"weights must be four positive numbers (wx, wy, ww, wh), got {weights!r}")
        if not isinstance(bbox_xform_clip, numbers.Real) or math.isnan(bbox_xform_clip):
            raise ValueError(f"bbox_xform_clip must be a real number, got {bbox_xform_clip!r}")
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def __repr__(self):
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.6g})"

    def encode(self, reference_boxes, proposals):
        """Regression targets of ``reference_boxes`` (e.g. matched ground truth) w.r.t. ``proposals``.

        reference_boxes: (N, 4), proposals: (N, 4), both xyxy with positive width and height.
        Returns (N, 4) deltas ``(dx, dy, dw, dh)`` in the dtype of ``reference_boxes``
        (torchvision's ``encode_single``).
        """
        reference_boxes = _as_float(as_boxes(reference_boxes, "reference_boxes"))
        proposals = as_boxes(proposals, "proposals")
        if reference_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(f"reference_boxes and proposals must have the same length, got "
                             f"{reference_boxes.shape[0]} and {proposals.shape[0]}")
        if get_array_module(reference_boxes) is not get_array_module(proposals):
            raise ValueError("reference_boxes and proposals must be on the same device")
        _check_positive_size(reference_boxes, "reference_boxes")
        _check_positive_size(proposals, "proposals")
        xp = get_array_module(reference_boxes)
        wx, wy, ww, wh = xp.asarray(self.weights, dtype=reference_boxes.dtype)

        ### BEGIN SOLUTION box_coder
        ex_widths = proposals[:, 2:3] - proposals[:, 0:1]            # (N, 1)
        ex_heights = proposals[:, 3:4] - proposals[:, 1:2]
        ex_ctr_x = proposals[:, 0:1] + 0.5 * ex_widths
        ex_ctr_y = proposals[:, 1:2] + 0.5 * ex_heights

        gt_widths = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
        gt_heights = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
        gt_ctr_x = reference_boxes[:, 0:1] + 0.5 * gt_widths
        gt_ctr_y = reference_boxes[:, 1:2] + 0.5 * gt_heights

        targets_dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
        targets_dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
        targets_dw = ww * xp.log(gt_widths / ex_widths)
        targets_dh = wh * xp.log(gt_heights / ex_heights)
        ### END SOLUTION
        return xp.concatenate((targets_dx, targets_dy, targets_dw, targets_dh), axis=1)

    def decode(self, rel_codes, boxes):
        """Apply deltas to reference boxes (torchvision's ``decode_single``).

        rel_codes: (N, 4*K) deltas, K boxes per reference box (one per class in the box head);
        boxes: (N, 4) reference boxes (anchors or proposals). Returns (N, 4*K) boxes xyxy in the
        dtype of ``rel_codes``.
        """
        rel_codes = as_array(rel_codes)
        if rel_codes.ndim != 2 or rel_codes.shape[1] % 4 != 0 or rel_codes.shape[1] == 0:
            raise ValueError(f"rel_codes must be an array of shape (N, 4*K), got shape "
                             f"{tuple(rel_codes.shape)}")
        if rel_codes.dtype.kind != "f":
            raise TypeError(f"rel_codes must be a floating array, got dtype {rel_codes.dtype}")
        boxes = as_boxes(boxes, "boxes")
        if boxes.shape[0] != rel_codes.shape[0]:
            raise ValueError(f"rel_codes and boxes must have the same length, got "
                             f"{rel_codes.shape[0]} and {boxes.shape[0]}")
        if get_array_module(rel_codes) is not get_array_module(boxes):
            raise ValueError("rel_codes and boxes must be on the same device")
        xp = get_array_module(rel_codes)
        boxes = boxes.astype(rel_codes.dtype, copy=False)

        ### BEGIN SOLUTION box_coder
        widths = boxes[:, 2] - boxes[:, 0]                            # (N,)
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx                                  # (N, K)
        dy = rel_codes[:, 1::4] / wy
        dw = rel_codes[:, 2::4] / ww
        dh = rel_codes[:, 3::4] / wh
        # keep exp() finite: no box grows beyond exp(bbox_xform_clip) times its reference
        dw = xp.minimum(dw, self.bbox_xform_clip)
        dh = xp.minimum(dh, self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = xp.exp(dw) * widths[:, None]
        pred_h = xp.exp(dh) * heights[:, None]

        half_w = 0.5 * pred_w                                          # centre to corner
        half_h = 0.5 * pred_h
        pred_boxes = xp.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                               pred_ctr_x + half_w, pred_ctr_y + half_h), axis=2)  # (N, K, 4)
        ### END SOLUTION
        return pred_boxes.reshape(rel_codes.shape)

    # torchvision's names for the single-array versions
    encode_single = encode
    decode_single = decode


# ---- the checks at the door ----------------------------------------------------------------------

def _check_image_size(size, name="size"):
    try:
        h, w = size
        ok = all(isinstance(v, numbers.Integral) or (isinstance(v, numbers.Real) and float(v).is_integer())
                 for v in (h, w)) and h >= 0 and w >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be (height, width) with non-negative integers, got {size!r}")
    return int(h), int(w)


def _check_positive_size(boxes, name):
    if boxes.shape[0] == 0:
        return
    xp = get_array_module(boxes)
    bad = ~((boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0) & xp.isfinite(boxes).all(axis=1))
    if bool(bad.any()):
        i = first_index(bad)
        values = [float(v) for v in boxes[i].tolist()]
        raise ValueError(f"{name}[{i}] = {values}: boxes to encode must be finite with positive "
                         f"width and height ({int(bad.sum())} of {boxes.shape[0]} are not)")
