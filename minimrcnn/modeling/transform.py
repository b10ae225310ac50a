r"""The input transform: images of any size -> one normalised, resized, padded batch.

Mask R-CNN's first step, before the backbone (torchvision's ``GeneralizedRCNNTransform``; the
paper, Section 3.1: "images are resized such that their scale (shorter edge) is 800 pixels"):

1. **normalize** each (3, H, W) RGB image in [0, 1] per channel,
   $x' = (x - \mu_c) / \sigma_c$ (ImageNet mean and std, as the backbone was trained);
2. **resize** it so the shorter side becomes ``min_size`` unless the longer side would then
   exceed ``max_size``:

   $$s = \min\Big(\frac{\text{min\_size}}{\min(H, W)}, \frac{\text{max\_size}}{\max(H, W)}\Big),
     \qquad H' = \lfloor H s \rfloor,\quad W' = \lfloor W s \rfloor$$

   with bilinear interpolation (half-pixel centres, ``align_corners=False``) that samples with
   the exact ratios $H / H'$ and $W / W'$ -- what torch's ``interpolate(scale_factor=s,
   recompute_scale_factor=True)`` does;
3. **batch** the images: zero-pad each at the bottom and right to the largest H' and W' of the
   batch, rounded up to a multiple of ``size_divisible`` (32, the coarsest FPN stride), into
   an :class:`ImageList` that remembers every (H', W').

Training targets follow the image: boxes, crowd boxes and keypoints are scaled by
$(W'/W, H'/H)$ (float32 ratios), instance masks are resized with nearest-neighbour
interpolation; other entries ("image_id", ...) pass through as they are.
:meth:`GeneralizedRCNNTransform.postprocess` maps the detections back to the input image:
boxes and keypoints scaled by $(W/W', H/H')$, and the (K, 1, M, M) mask probabilities pasted
into full-size (K, 1, H, W) masks by :func:`paste_masks_in_image`.

The transform works on raw arrays (the images are inputs: no gradient flows into them) and
returns Tensors.
"""
import math

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..checks import is_int
from ..nn.init import get_generator
from ..ops import paste_masks_in_image
from .image_list import ImageList

__all__ = ["GeneralizedRCNNTransform", "resize_boxes", "resize_keypoints", "resized_image_size"]


def resized_image_size(height, width, min_size, max_size):
    """(H', W') of an (H, W) image after the resize: $s = \\min(min/\\min(H,W), max/\\max(H,W))$,
    $H' = \\lfloor H s \\rfloor$, $W' = \\lfloor W s \\rfloor$ (Python floats, as torch), and the
    scale s. E.g. (480, 640) with (800, 1333) -> (800, 1066), s = 5/3."""
    scale = min(float(min_size) / min(height, width), float(max_size) / max(height, width))
    return (int(math.floor(float(height) * scale)), int(math.floor(float(width) * scale))), scale


def _ratios(original_size, new_size):
    """(ratio_h, ratio_w) = new / original, each a float32 division (as torchvision)."""
    return tuple(np.float32(s) / np.float32(s_orig) for s, s_orig in zip(new_size, original_size))


def resize_boxes(boxes, original_size, new_size):
    """Scale (K, 4) xyxy ``boxes`` from an image of ``original_size`` (h, w) to ``new_size``:
    x by $w_{new} / w_{orig}$, y by $h_{new} / h_{orig}$ (float32 ratios)."""
    boxes = as_array(boxes)
    xp = get_array_module(boxes)
    ratio_h, ratio_w = _ratios(original_size, new_size)
    scale = xp.asarray([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32)
    dtype = boxes.dtype if boxes.dtype.kind == "f" else np.float32
    return boxes.astype(dtype, copy=False) * scale.astype(dtype)


def resize_keypoints(keypoints, original_size, new_size):
    """Scale (K, P, 3) keypoints [x, y, visibility] like :func:`resize_boxes`; visibility is kept."""
    keypoints = as_array(keypoints)
    xp = get_array_module(keypoints)
    ratio_h, ratio_w = _ratios(original_size, new_size)
    dtype = keypoints.dtype if keypoints.dtype.kind == "f" else np.float32
    scale = xp.asarray([ratio_w, ratio_h, 1.0], dtype=np.float32).astype(dtype)
    return keypoints.astype(dtype, copy=False) * scale


class GeneralizedRCNNTransform(nn.Module):
    """Normalize, resize and batch the input images (and scale the training targets).

    min_size: shorter side after the resize (an int, or a tuple to pick one at random per image
        in training -- multi-scale training; eval uses the last); max_size: cap on the longer side;
    image_mean, image_std: 3 per-channel values; size_divisible: pad H and W to a multiple of it;
    fixed_size: optional (width, height) to resize every image to instead (torchvision's option).

    ``forward(images, targets=None) -> (ImageList, targets)``: images a list of N float
    (3, H_i, W_i) arrays or Tensors; targets (optional) a list of N dicts with "boxes" (M, 4)
    xyxy and optionally "masks" (M, H_i, W_i), "keypoints" (M, P, 3) and "crowd_boxes" (C, 4)
    (other keys are kept as they are); the returned targets
    are new dicts (the caller's are not modified). The ImageList holds the (N, 3, Hp, Wp)
    float Tensor and the resized sizes (H'_i, W'_i).

    In training the random ``min_size`` choice draws from ``self.generator`` (a
    ``numpy.random.Generator``; None: the global generator of :mod:`minimrcnn.nn.init`).
    """

    def __init__(self, min_size, max_size, image_mean, image_std, size_divisible=32, fixed_size=None):
        super().__init__()
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        min_size = tuple(min_size)
        for name, values in (("min_size", min_size), ("max_size", (max_size,)),
                             ("size_divisible", (size_divisible,))):
            if len(values) == 0 or not all(is_int(v) and v > 0 for v in values):
                raise ValueError(f"GeneralizedRCNNTransform: {name} must be a positive int"
                                 f"{' (or a tuple of them)' if name == 'min_size' else ''}, got "
                                 f"{min_size if name == 'min_size' else values[0]!r}")
        if len(image_mean) != 3 or len(image_std) != 3 or not all(s > 0 for s in image_std):
            raise ValueError(f"GeneralizedRCNNTransform: image_mean and image_std need 3 values "
                             f"(std > 0), got {tuple(image_mean)!r} and {tuple(image_std)!r}")
        if fixed_size is not None and (len(fixed_size) != 2 or min(fixed_size) <= 0):
            raise ValueError(f"GeneralizedRCNNTransform: fixed_size must be (width, height), got {fixed_size!r}")
        self.min_size = min_size
        self.max_size = int(max_size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.size_divisible = int(size_divisible)
        self.fixed_size = None if fixed_size is None else tuple(int(v) for v in fixed_size)
        self.generator = None

    # ---- the three steps ------------------------------------------------------------------
    def normalize(self, image):
        """(3, H, W) float -> $(x - \\mu_c) / \\sigma_c$, in the image's dtype."""
        xp = get_array_module(image)
        mean = xp.asarray(self.image_mean, dtype=image.dtype)[:, None, None]
        std = xp.asarray(self.image_std, dtype=image.dtype)[:, None, None]
        return (image - mean) / std

    def target_size(self, height, width):
        """(H', W') that an (H, W) image is resized to (eval: the last ``min_size``)."""
        if self.fixed_size is not None:
            return self.fixed_size[1], self.fixed_size[0]
        if self.training and len(self.min_size) > 1:
            # multi-scale training: one of the sizes at random (torchvision's torch_choice)
            size = self.min_size[int(get_generator(self.generator).integers(len(self.min_size)))]
        else:
            size = self.min_size[-1]
        return resized_image_size(height, width, size, self.max_size)[0]

    def resize(self, image, target=None, size=None):
        """Resize one normalised (3, H, W) image to ``size`` (H', W') (default
        :meth:`target_size`) by bilinear interpolation (half-pixel centres, sampling ratio H/H'
        and W/W'), and its target: boxes, crowd boxes and keypoints scaled, masks (M, H, W)
        resized by nearest neighbour (kept in their dtype)."""
        h, w = image.shape[-2:]
        out_size = self.target_size(h, w) if size is None else tuple(size)
        with no_grad():
            image = F.interpolate(Tensor(image[None]), size=out_size, mode="bilinear",
                                  align_corners=False).data[0]
        if target is None:
            return image, target
        for key in ("boxes", "crowd_boxes"):
            if key in target:
                target[key] = resize_boxes(target[key], (h, w), out_size)
        if "masks" in target:
            masks = as_array(target["masks"])
            xp = get_array_module(masks)
            if masks.ndim != 3 or tuple(masks.shape[-2:]) != (h, w):
                raise ValueError(f"target['masks'] must have shape (M, {h}, {w}) (the image's size), "
                                 f"got {tuple(masks.shape)}")
            if masks.shape[0] == 0:
                target["masks"] = xp.zeros((0,) + tuple(out_size), dtype=masks.dtype)
            else:
                with no_grad():
                    resized = F.interpolate(Tensor(masks[:, None].astype(np.float32)), size=out_size,
                                            mode="nearest").data[:, 0]
                target["masks"] = resized.astype(masks.dtype)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), out_size)
        return image, target

    def batch_images(self, images):
        """Zero-pad (3, H_i, W_i) arrays at the bottom/right into one (N, 3, Hp, Wp) array,
        Hp = ceil(max H_i / d) * d and Wp likewise, d = ``size_divisible``."""
        xp = get_array_module(images[0])
        max_size = [max(img.shape[i] for img in images) for i in range(3)]
        stride = float(self.size_divisible)
        max_size[1] = int(math.ceil(max_size[1] / stride) * stride)
        max_size[2] = int(math.ceil(max_size[2] / stride) * stride)
        batched = xp.zeros([len(images)] + max_size, dtype=images[0].dtype)
        for i, img in enumerate(images):
            batched[i, :img.shape[0], :img.shape[1], :img.shape[2]] = img
        return batched

    # ---- forward / postprocess --------------------------------------------------------------
    def forward(self, images, targets=None):
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise TypeError(f"images must be a non-empty list of (3, H, W) float arrays, got "
                            f"{type(images).__name__} of length {len(images) if hasattr(images, '__len__') else '?'}")
        if targets is not None:
            if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
                n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
                raise ValueError(f"targets must be a list of {len(images)} dicts (one per image), got {n}")
            targets = [dict(t) for t in targets]          # new dicts: the caller's stay as they are
        resized = []
        for i, image in enumerate(images):
            image = _check_image(as_array(image), i, len(self.image_mean))
            size = self.target_size(*image.shape[-2:])
            if min(size) < 1:
                raise ValueError(f"images[{i}] of size {image.shape[1]}x{image.shape[2]} would be resized to "
                                 f"{size[0]}x{size[1]} (min_size={self.min_size}, max_size={self.max_size}): "
                                 f"its aspect ratio is too extreme for these sizes")
            image = self.normalize(image)
            image, target = self.resize(image, targets[i] if targets is not None else None, size)
            if targets is not None:
                targets[i] = target
            resized.append(image)
        image_sizes = [tuple(int(s) for s in img.shape[-2:]) for img in resized]
        return ImageList(Tensor(self.batch_images(resized)), image_sizes), targets

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Detections in resized-image coordinates -> in input-image coordinates (eval only;
        in training ``result`` is returned as it is).

        result: N dicts with "boxes" (K, 4) and optionally "masks" (K, 1, M, M) probabilities
        and "keypoints" (K, P, 3); image_shapes: the N resized (H', W'); original_image_sizes:
        the N input (H, W). Boxes and keypoints are scaled by (W/W', H/H'); masks are pasted
        into their (scaled) boxes on a (K, 1, H, W) canvas.
        """
        if self.training:
            return result
        for i, (pred, im_s, o_im_s) in enumerate(zip(result, image_shapes, original_image_sizes)):
            boxes = resize_boxes(pred["boxes"], im_s, o_im_s)
            result[i]["boxes"] = boxes
            if "masks" in pred:
                result[i]["masks"] = paste_masks_in_image(as_array(pred["masks"]), boxes, o_im_s)
            if "keypoints" in pred:
                result[i]["keypoints"] = resize_keypoints(pred["keypoints"], im_s, o_im_s)
        return result

    def extra_repr(self):
        return (f"Normalize(mean={self.image_mean}, std={self.image_std}), "
                f"Resize(min_size={self.min_size}, max_size={self.max_size}, mode='bilinear'), "
                f"size_divisible={self.size_divisible}")


def _check_image(image, i, channels):
    """images[i]: a floating (channels, H, W) array, not empty, every value finite."""
    if not hasattr(image, "ndim") or image.ndim != 3:
        raise ValueError(f"images[{i}] must be a (3, H, W) array, got shape "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if image.shape[0] != channels:
        raise ValueError(f"images[{i}] must have {channels} channels (RGB, CHW), got shape "
                         f"{tuple(image.shape)}")
    if image.dtype.kind != "f":
        raise TypeError(f"images[{i}] must be floating (RGB in [0, 1]), got dtype {image.dtype}")
    if min(image.shape[-2:]) == 0:
        raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
    if not bool(get_array_module(image).isfinite(image).all()):
        raise ValueError(f"images[{i}] contains NaN or infinite values")
    return image
