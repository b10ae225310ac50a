r"""Pasting mask probabilities into the image: the last step of Mask R-CNN's inference.

The mask branch predicts an M x M map (28 x 28 with FPN) for every detection, in the box's own
frame. To give an image-sized mask, each map is resized bilinearly to the box's size in pixels
and copied into an (H, W) canvas at the box, exactly as torchvision's ``paste_masks_in_image``:

1. the map gets a ``padding``-pixel zero border (so that it fades out at the box edge instead of
   being cut), and the box grows by the same factor $(M + 2p) / M$ about its centre
   (:func:`expand_masks`, :func:`expand_boxes`);
2. the grown box is truncated to integer pixels $[x_1, x_2] \times [y_1, y_2]$ (inclusive) and
   the map is resized to its $(y_2 - y_1 + 1) \times (x_2 - x_1 + 1)$ pixels
   (``F.interpolate``, bilinear, half-pixel centres), then clipped to the image
   (:func:`paste_mask_in_image`).

The result is a probability per pixel; the user thresholds it (0.5 in the paper).
"""
import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module

__all__ = ["paste_masks_in_image", "paste_mask_in_image", "expand_boxes", "expand_masks"]


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
    masks, boxes, (im_h, im_w) = _check_paste_args(masks, boxes, img_shape)
    xp = get_array_module(masks)
    masks, scale = expand_masks(masks, padding=padding)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    boxes = expand_boxes(boxes, scale).astype(np.int64)              # truncation toward 0, as .to(int64)
    pasted = xp.zeros((len(masks), 1, im_h, im_w), dtype=masks.dtype)   # written in place
    for m, b, out in zip(masks, boxes.tolist(), pasted):
        paste_mask_in_image(m[0], b, im_h, im_w, out=out[0])
    return pasted


def _check_paste_args(masks, boxes, img_shape):
    masks, boxes = as_array(masks), as_array(boxes)
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"paste_masks_in_image: masks must be (N, 1, M, M), got shape {tuple(masks.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"paste_masks_in_image: boxes must be ({masks.shape[0]}, 4), got shape "
                         f"{tuple(boxes.shape)}")
    return masks, boxes, (int(img_shape[0]), int(img_shape[1]))
