r"""Transforms of one ``(image, target)`` pair: horizontal flip, resize, and their composition.

An image is a float32 (3, H, W) array; a target a dict as :class:`~minimrcnn.data.CocoDataset`
returns it ("boxes" (M, 4) xyxy, "masks" (M, H, W), optionally "keypoints" (M, K, 3) and
"crowd_boxes" (C, 4)). Coordinates are continuous pixels: pixel column $j$ spans $[j, j + 1)$,
so an image of width $W$ spans $[0, W)$ and the horizontal flip is $x \mapsto W - x$:

- a box $(x_1, y_1, x_2, y_2) \mapsto (W - x_2,\ y_1,\ W - x_1,\ y_2)$,
- mask column $j \mapsto W - 1 - j$ (which keeps a box equal to its mask's extent),
- a keypoint $(x, y, v) \mapsto (W - x, y, v)$, and the keypoints trade places with their
  mirror partners (a person's left wrist, flipped, is where a right wrist would be): keypoint $k$
  of the flipped instance is keypoint ``flip_map[k]`` of the original. Unlabelled keypoints
  ($v = 0$) stay at $(0, 0, 0)$, as in COCO files (torchvision's flip does the same).

Transforms return new arrays and a new dict; the inputs are left as they are.
"""
import numbers

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..modeling.transform import resize_boxes, resize_keypoints, resized_image_size

__all__ = ["hflip", "keypoint_flip_map", "Resize", "Compose"]


def keypoint_flip_map(keypoint_names):
    """The left/right permutation of a list of keypoint names, for :func:`hflip`.

    ``flip_map[k]`` is the index of the name with "left" and "right" swapped ("left_eye" <->
    "right_eye"; "Left"/"Right" and "l_"/"r_" prefixes likewise), or k itself where there is no
    such partner ("nose"). E.g. the 17 COCO person keypoints give
    ``[0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]``.
    """
    names = list(keypoint_names)
    index = {name: k for k, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"keypoint_names must be distinct, got {names}")

    def partner(name):
        for a, b in (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT")):
            if a in name or b in name:
                return name.replace(a, "\0").replace(b, a).replace("\0", b)
        for a, b in (("l_", "r_"), ("L_", "R_")):
            if name.startswith(a):
                return b + name[len(a):]
            if name.startswith(b):
                return a + name[len(b):]
        return name

    return [index.get(partner(name), k) for k, name in enumerate(names)]


def _check_pair(image, target, where):
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise ValueError(f"{where}: image must be a (3, H, W) array, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if not isinstance(target, dict):
        raise TypeError(f"{where}: target must be a dict, got {type(target).__name__}")
    height, width = image.shape[-2:]
    masks = target.get("masks")
    if masks is not None and (masks.ndim != 3 or masks.shape[-2:] != (height, width)):
        raise ValueError(f"{where}: target['masks'] must have shape (M, {height}, {width}) (the image's "
                         f"size), got {tuple(masks.shape)}")
    return height, width


def _flip_boxes(boxes, width):
    boxes = np.asarray(boxes, dtype=np.float32)
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def hflip(image, target, keypoint_flip_map=None):
    """Mirror an image and its target left to right (see the module docstring for the math).

    image: (3, H, W); target: dict with any of "boxes" (M, 4), "crowd_boxes" (C, 4), "masks"
    (M, H, W), "keypoints" (M, K, 3); keypoint_flip_map: K indices (from
    :func:`keypoint_flip_map`, or ``ds.keypoint_flip_map``), needed when there are keypoints.
    Returns ``(image, target)``: new arrays, other target entries (labels, image_id) copied as
    they are.
    """
    height, width = _check_pair(image, target, "hflip")
    out = dict(target)
    image = np.ascontiguousarray(image[:, :, ::-1])
    for key in ("boxes", "crowd_boxes"):
        if key in target:
            out[key] = _flip_boxes(target[key], width)
    if "masks" in target:
        out["masks"] = np.ascontiguousarray(target["masks"][:, :, ::-1])
    if "keypoints" in target:
        keypoints = np.asarray(target["keypoints"], dtype=np.float32)
        num_kp = keypoints.shape[1] if keypoints.ndim == 3 else None
        if keypoint_flip_map is None:
            raise ValueError("hflip: target has 'keypoints', so keypoint_flip_map (the left/right "
                             "permutation, see keypoint_flip_map()) is needed")
        flip = np.asarray(keypoint_flip_map, dtype=np.int64)
        if num_kp is None or keypoints.shape[2] != 3 or sorted(flip.tolist()) != list(range(num_kp)):
            raise ValueError(f"hflip: keypoint_flip_map must be a permutation of range(K) for keypoints "
                             f"(M, K, 3); got {flip.tolist()} for keypoints of shape {keypoints.shape}")
        flipped = keypoints[:, flip].copy()                # keypoint k <- its mirror partner
        flipped[..., 0] = width - flipped[..., 0]
        flipped[flipped[..., 2] == 0] = 0                  # unlabelled stays (0, 0, 0)
        out["keypoints"] = flipped
    return image, out


class Resize:
    """Resize so the shorter side is ``min_size`` unless the longer would exceed ``max_size``:
    $s = \\min(\\text{min\\_size} / \\min(H, W),\\ \\text{max\\_size} / \\max(H, W))$,
    $(H', W') = (\\lfloor H s \\rfloor, \\lfloor W s \\rfloor)$ -- the model's own rule
    (:func:`minimrcnn.modeling.transform.resized_image_size`).

    The image is resampled bilinearly (half-pixel centres), masks by nearest neighbour (they stay
    {0, 1}), boxes and keypoints are scaled by $(W'/W, H'/H)$ (visibility kept).
    ``Resize(min_size, max_size)(image, target) -> (image, target)``.
    """

    def __init__(self, min_size, max_size):
        for name, v in (("min_size", min_size), ("max_size", max_size)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Resize: {name} must be a positive int, got {v!r}")
        self.min_size, self.max_size = int(min_size), int(max_size)

    def __call__(self, image, target):
        height, width = _check_pair(image, target, "Resize")
        size, _ = resized_image_size(height, width, self.min_size, self.max_size)
        if size == (height, width):
            return image, dict(target)
        out = dict(target)
        with no_grad():
            image = F.interpolate(Tensor(image[None].astype(np.float32, copy=False)), size=size,
                                  mode="bilinear", align_corners=False).data[0]
            masks = target.get("masks")
            if masks is not None:
                if masks.shape[0]:
                    resized = F.interpolate(Tensor(masks[:, None].astype(np.float32)), size=size,
                                            mode="nearest").data[:, 0]
                    out["masks"] = resized.astype(masks.dtype)
                else:
                    out["masks"] = np.zeros((0,) + size, dtype=masks.dtype)
        for key in ("boxes", "crowd_boxes"):
            if key in target:
                out[key] = np.asarray(resize_boxes(np.asarray(target[key], dtype=np.float32),
                                                   (height, width), size), dtype=np.float32)
        if "keypoints" in target:
            out["keypoints"] = np.asarray(resize_keypoints(np.asarray(target["keypoints"], dtype=np.float32),
                                                           (height, width), size), dtype=np.float32)
        return image, out

    def __repr__(self):
        return f"Resize(min_size={self.min_size}, max_size={self.max_size})"


class Compose:
    """Apply transforms in order: ``Compose([t1, t2])(image, target) == t2(*t1(image, target))``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable (image, target) -> "
                                f"(image, target), got {t!r}")

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"
