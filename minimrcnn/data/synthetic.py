r"""Built-in synthetic data: shapes (3 classes) and stick-figure persons (17 COCO keypoints).

Both write the COCO layout that :class:`~minimrcnn.data.CocoDataset` reads::

    out_dir/train.json  out_dir/val.json  out_dir/images/000001.png ...

Nothing is downloaded; a few hundred 128-pixel images take a few seconds.

**Scenes.** Every image starts from a textured background (a smooth random colour field, a
linear gradient, or stripes of random angle and period; plus pixel noise), so that no threshold
on brightness separates objects from background. Objects are then painted one after the other:
an object painted later hides what lies under it, so each instance's mask is what stays
*visible*,

$$m_i^{\text{visible}} = m_i \wedge \neg \bigvee_{j > i} m_j ,$$

and its box is the extent of that visible mask (as in COCO, whose boxes surround the visible
part). An object is only placed where it leaves every earlier object at least ``min_visible``
of its area visible (up to 20 tries; otherwise it is left out), so no annotation is an almost
hidden sliver and nothing is painted that is not annotated. Colours are random and chosen to
differ from what lies under the object, so the class is given by the shape alone.

**Shapes** (``make_shapes``): squares, circles and triangles (labels 1, 2, 3, COCO category ids
1, 2, 3), with a size of ``min_size``..``max_size`` pixels (the side of a square or triangle,
the diameter of a circle) and any rotation.

**Persons** (``make_persons``): stick figures (a head circle, a trapezoid torso, thick limbs)
facing the viewer -- so the person's left is on the image's right, as for a COCO person seen
from the front -- in random poses, with the 17 COCO keypoints in COCO's order, the COCO
skeleton in the category, and COCO's visibility flags: $v = 2$ visible, $v = 1$ inside the image
but covered by a figure painted later or by an occluder (a random box painted over the scene),
$v = 0$ outside the image (stored as ``0, 0, 0`` as COCO does).

**Determinism.** Image k (0-based, ids k + 1) is drawn from its own generator
``numpy.random.default_rng([seed, k])``: the same arguments give byte-identical PNGs and JSON
files, and image k does not depend on how many images are drawn. The first
``num_images - num_val`` images form train.json, the last ``num_val`` val.json.

``synthetic_data(kind, ...)`` generates a set once into a cache directory and reuses it.
"""
import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from .coco import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON

__all__ = ["make_shapes", "make_persons", "synthetic_data", "occlusion", "SHAPE_CLASSES", "default_cache_dir"]

SHAPE_CLASSES = ("square", "circle", "triangle")     # labels / category ids 1, 2, 3
GENERATOR_VERSION = 1        # part of the cache key: bump it when the drawing code changes
_PLACEMENT_TRIES = 20
_MIN_CONTRAST = 0.25         # mean per-pixel max-channel difference of a colour from what it covers


# ---- argument checks --------------------------------------------------------------------------

def _check_int(fn, name, value, low, high=None):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low or \
            (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{fn}: {name} must be an int {bound}, got {value!r}")
    return int(value)


def _check_range(fn, low_name, low, high_name, high, minimum, maximum):
    for name, v in ((low_name, low), (high_name, high)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not minimum <= v <= maximum:
            raise ValueError(f"{fn}: {name} must be a number in [{minimum}, {maximum}], got {v!r}")
    if low > high:
        raise ValueError(f"{fn}: {low_name} ({low!r}) must be <= {high_name} ({high!r})")


def _check_common(fn, num_images, seed, image_size, num_val, min_visible):
    num_images = _check_int(fn, "num_images", num_images, 1)
    seed = _check_int(fn, "seed", seed, 0)
    image_size = _check_int(fn, "image_size", image_size, 16)
    if num_val is None:
        num_val = int(round(0.2 * num_images)) if num_images >= 2 else 0
        num_val = max(num_val, 1) if num_images >= 2 else 0
    num_val = _check_int(fn, "num_val", num_val, 0, num_images - 1)
    if not isinstance(min_visible, numbers.Real) or not 0.0 < min_visible <= 1.0:
        raise ValueError(f"{fn}: min_visible must be in (0, 1], got {min_visible!r}")
    return num_images, seed, image_size, num_val


# ---- drawing helpers --------------------------------------------------------------------------

def _background(rng, size):
    """(size, size, 3) float32 texture: smooth colour noise, a gradient, or stripes."""
    kind = int(rng.integers(3))
    c0 = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    c1 = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    if kind == 0:        # a coarse grid of random colours, bilinearly enlarged
        cells = int(rng.integers(2, 9))
        coarse = rng.integers(15, 241, (cells, cells, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), dtype=np.float32)
        return field * np.float32(1 / 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    u = xx * np.float32(math.cos(theta)) + yy * np.float32(math.sin(theta))
    if kind == 1:        # linear gradient from c0 to c1
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    else:                # stripes of period 4..24 px
        period = rng.uniform(4, 24)
        t = 0.5 + 0.5 * np.sin(u * np.float32(2 * math.pi / period) + np.float32(rng.uniform(0, 2 * math.pi)))
    return c0 + t[..., None] * (c1 - c0)


def _pick_colour(rng, canvas, mask):
    """A random RGB colour that differs from the canvas under ``mask`` (best of 8 tries)."""
    under = canvas[mask]                                   # (n, 3)
    best, best_score = None, -1.0
    for _ in range(8):
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        score = float(np.abs(under - colour).max(axis=1).mean()) if under.size else 1.0
        if score >= _MIN_CONTRAST:
            return colour
        if score > best_score:
            best, best_score = colour, score
    return best


def _paint(rng, canvas, mask, colour):
    """Paint ``colour`` with a gentle linear shading (+-12 %) into the canvas where ``mask``."""
    ys, xs = np.nonzero(mask)
    theta = rng.uniform(0, 2 * math.pi)
    t = (xs - xs.mean()) * math.cos(theta) + (ys - ys.mean()) * math.sin(theta)
    t = t / max(float(np.abs(t).max()), 1.0)
    shade = (1.0 + 0.12 * t).astype(np.float32)[:, None]
    canvas[ys, xs] = np.clip(colour[None] * shade, 0.0, 1.0)


def occlusion(masks):
    r"""Painter's-order occlusion of (H, W) bool masks, painted first to last.

    Returns (visible, covered): ``covered[i]`` $= \bigvee_{j > i} m_j$ (what is painted over
    mask i later) and ``visible[i]`` $= m_i \wedge \neg\,$``covered[i]``.
    """
    visible, covered = [None] * len(masks), [None] * len(masks)
    above = np.zeros_like(masks[0]) if masks else None
    for i in range(len(masks) - 1, -1, -1):
        covered[i] = above.copy()
        visible[i] = masks[i] & ~above
        above |= masks[i]
    return visible, covered


def _place(rng, masks, min_visible, propose):
    """Try up to _PLACEMENT_TRIES proposals (``propose() -> (mask, extra)``) of a mask to paint
    over ``masks``; return the first that leaves each of them >= min_visible of its own area
    visible, or None."""
    visible = occlusion(masks)[0]
    for _ in range(_PLACEMENT_TRIES):
        mask, extra = propose()
        if mask.sum() < 4:
            continue
        if all((v & ~mask).sum() >= min_visible * m.sum() for v, m in zip(visible, masks)):
            return mask, extra
    return None


def _finish_pixels(rng, canvas):
    """Add pixel noise (sigma 0..0.04) and quantise to uint8 (H, W, 3)."""
    sigma = rng.uniform(0.0, 0.04)
    noisy = canvas + rng.normal(0.0, sigma, canvas.shape).astype(np.float32)
    return (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _new_mask(size):
    img = Image.new("L", (size, size), 0)
    return img, ImageDraw.Draw(img)


def _regular_polygon(cx, cy, radius, sides, theta):
    return [(cx + radius * math.cos(theta + 2 * math.pi * k / sides),
             cy + radius * math.sin(theta + 2 * math.pi * k / sides)) for k in range(sides)]


# ---- shapes -----------------------------------------------------------------------------------

def _draw_shapes(rng, size, min_objects, max_objects, min_size, max_size, min_visible):
    """One shapes scene: uint8 (H, W, 3) pixels and the instances (category_id, visible mask)."""
    canvas = _background(rng, size)
    masks, classes = [], []                      # the full masks, in painting order
    count = int(rng.integers(min_objects, max_objects + 1))

    def propose():
        cls = int(rng.integers(len(SHAPE_CLASSES)))            # 0 square, 1 circle, 2 triangle
        s = rng.uniform(min_size, max_size)
        margin = 0.3 * s                                       # may stick out of the image a little
        cx, cy = rng.uniform(margin, size - margin, 2)
        theta = rng.uniform(0, 2 * math.pi)
        img, draw = _new_mask(size)
        if cls == 1:
            draw.ellipse([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], fill=1)
        elif cls == 0:
            draw.polygon(_regular_polygon(cx, cy, s / math.sqrt(2), 4, theta), fill=1)
        else:
            draw.polygon(_regular_polygon(cx, cy, s / math.sqrt(3), 3, theta), fill=1)
        return np.asarray(img, dtype=bool), cls

    for _ in range(count):
        placed = _place(rng, masks, min_visible, propose)
        if placed is None:
            continue
        mask, cls = placed
        _paint(rng, canvas, mask, _pick_colour(rng, canvas, mask))
        masks.append(mask)
        classes.append(cls + 1)
    visible = occlusion(masks)[0]
    return _finish_pixels(rng, canvas), [{"category_id": c, "mask": m} for c, m in zip(classes, visible)]


def make_shapes(out_dir, num_images, seed=0, image_size=128, num_val=None, min_objects=2, max_objects=6,
                min_size=None, max_size=None, min_visible=0.5, progress=False):
    """Write a shapes dataset: squares, circles, triangles on textured backgrounds.

    out_dir: folder to write (created; files in it are overwritten); num_images: images in
    all, of which the last ``num_val`` (default 20 %, at least 1 when num_images >= 2) form the
    validation split; seed: the generator seed; image_size: width = height in pixels;
    min_objects..max_objects: objects drawn per image (fewer when one finds no place that keeps
    the others visible); min_size..max_size: object size in pixels (side of a square or
    triangle, diameter of a circle; default 12..60 for 128-px images, scaled with image_size);
    min_visible: the fraction of an object's area that must stay visible; progress: a tqdm bar.

    Returns ``{"train": out_dir/train.json, "val": out_dir/val.json, "image_dir": out_dir/images}``.
    Classes: "square", "circle", "triangle" with COCO category ids (and labels) 1, 2, 3.
    """
    fn = "make_shapes"
    num_images, seed, image_size, num_val = _check_common(fn, num_images, seed, image_size, num_val,
                                                          min_visible)
    min_size = 12 * image_size / 128 if min_size is None else min_size
    max_size = 60 * image_size / 128 if max_size is None else max_size
    _check_range(fn, "min_size", min_size, "max_size", max_size, 3, image_size)
    _check_int(fn, "min_objects", min_objects, 0)
    _check_int(fn, "max_objects", max_objects, max(1, min_objects))
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPE_CLASSES)]

    def draw(rng):
        return _draw_shapes(rng, image_size, min_objects, max_objects, min_size, max_size, min_visible)

    return _write_dataset(out_dir, num_images, num_val, seed, image_size, draw, categories, progress, fn)


# ---- persons ----------------------------------------------------------------------------------

def _stick_figure(rng, cx, cy, height):
    """A random pose of a figure ``height`` px tall whose hip centre is (cx, cy).

    Returns (keypoints (17, 2) in COCO order, drawing primitives). The figure faces the viewer:
    ``side`` points to the person's left = the image's right (rotated by the torso's tilt).
    """
    h = height
    tilt = rng.normal(0.0, 0.12)
    up = np.array([math.sin(tilt), -math.cos(tilt)])          # image y grows downwards
    side = np.array([math.cos(tilt), math.sin(tilt)])
    down = -up
    hip = np.array([cx, cy])
    neck = hip + 0.30 * h * up                                 # between the shoulders
    l_sh, r_sh = neck + 0.11 * h * side, neck - 0.11 * h * side
    l_hip, r_hip = hip + 0.07 * h * side, hip - 0.07 * h * side
    head_tilt = tilt + rng.normal(0.0, 0.15)
    h_up = np.array([math.sin(head_tilt), -math.cos(head_tilt)])
    h_side = np.array([math.cos(head_tilt), math.sin(head_tilt)])
    r_head = 0.07 * h
    head = neck + (0.05 * h + r_head) * h_up
    yaw = rng.uniform(-0.4, 0.4)                               # the face turned a little
    nose = head + yaw * 0.5 * r_head * h_side - 0.15 * r_head * h_up
    l_eye = head + (0.4 + 0.4 * yaw) * r_head * h_side + 0.25 * r_head * h_up
    r_eye = head + (-0.4 + 0.4 * yaw) * r_head * h_side + 0.25 * r_head * h_up
    l_ear, r_ear = head + 0.95 * r_head * h_side, head - 0.95 * r_head * h_side

    def limb(start, sign, a1, a2, l1, l2):
        """Two segments from ``start``: angles from straight down, positive = away from the body."""
        mid = start + l1 * (math.cos(a1) * down + math.sin(a1) * sign * side)
        end = mid + l2 * (math.cos(a2) * down + math.sin(a2) * sign * side)
        return mid, end

    arms, legs = [], []
    for start, sign in ((l_sh, 1.0), (r_sh, -1.0)):
        a1 = rng.uniform(-0.2, 2.6)
        arms.append(limb(start, sign, a1, a1 + rng.uniform(-1.2, 1.2), 0.16 * h, 0.15 * h))
    for start, sign in ((l_hip, 1.0), (r_hip, -1.0)):
        b1 = rng.uniform(-0.05, 0.5)
        legs.append(limb(start, sign, b1, b1 + rng.uniform(-0.4, 0.2), 0.22 * h, 0.22 * h))
    (l_elbow, l_wrist), (r_elbow, r_wrist) = arms
    (l_knee, l_ankle), (r_knee, r_ankle) = legs
    keypoints = np.array([nose, l_eye, r_eye, l_ear, r_ear, l_sh, r_sh, l_elbow, r_elbow, l_wrist, r_wrist,
                          l_hip, r_hip, l_knee, r_knee, l_ankle, r_ankle])
    width = max(2.0, 0.05 * h)
    segments = [(neck, head), (l_sh, l_elbow), (l_elbow, l_wrist), (r_sh, r_elbow), (r_elbow, r_wrist),
                (l_hip, l_knee), (l_knee, l_ankle), (r_hip, r_knee), (r_knee, r_ankle)]
    primitives = {"torso": [l_sh, r_sh, r_hip, l_hip], "segments": segments, "width": width,
                  "head": (head, r_head), "face": (l_eye, r_eye, nose)}
    return keypoints, primitives


def _figure_mask(size, prim):
    img, draw = _new_mask(size)
    draw.polygon([tuple(p) for p in prim["torso"]], fill=1)
    w = prim["width"]
    for a, b in prim["segments"]:
        draw.line([tuple(a), tuple(b)], fill=1, width=int(round(w)))
        for p in (a, b):                                      # round joints
            draw.ellipse([p[0] - w / 2, p[1] - w / 2, p[0] + w / 2, p[1] + w / 2], fill=1)
    (hx, hy), r = prim["head"]
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=1)
    return np.asarray(img, dtype=bool)


def _draw_persons(rng, size, min_persons, max_persons, min_height, max_height, occluder_prob, min_visible):
    """One persons scene: uint8 pixels and instances (category_id, visible mask, keypoints)."""
    canvas = _background(rng, size)
    masks, figures = [], []          # full masks in painting order (figures, then occluders)
    count = int(rng.integers(min_persons, max_persons + 1))

    def propose_person():
        h = rng.uniform(min_height, max_height)
        cx = rng.uniform(0.1 * size, 0.9 * size)
        cy = rng.uniform(0.40 * h, size - 0.30 * h)          # feet or head may leave the image
        keypoints, prim = _stick_figure(rng, cx, cy, h)
        return _figure_mask(size, prim), (keypoints, prim)

    for _ in range(count):
        placed = _place(rng, masks, min_visible, propose_person)
        if placed is None:
            continue
        mask, (keypoints, prim) = placed
        colour = _pick_colour(rng, canvas, mask)
        _paint(rng, canvas, mask, colour)
        eye_colour = np.clip(colour * 0.35 + (0.55 if colour.mean() < 0.4 else 0.0), 0, 1)
        r_dot = max(0.6, 0.12 * prim["head"][1])
        for p in prim["face"]:                                 # eyes and nose as small dots
            y0, y1 = max(int(math.floor(p[1] - r_dot)), 0), min(int(math.ceil(p[1] + r_dot)), size)
            x0, x1 = max(int(math.floor(p[0] - r_dot)), 0), min(int(math.ceil(p[0] + r_dot)), size)
            if y0 >= y1 or x0 >= x1:                           # outside the image
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1]
            inside = mask[ys, xs] & ((xs + 0.5 - p[0]) ** 2 + (ys + 0.5 - p[1]) ** 2 <= r_dot ** 2 + 0.25)
            canvas[ys[inside], xs[inside]] = eye_colour
        masks.append(mask)
        figures.append(keypoints)

    num_occluders = int(rng.integers(1, 3)) if rng.random() < occluder_prob else 0

    def propose_occluder():
        w, h = rng.uniform(0.08, 0.35, 2) * size
        x0, y0 = rng.uniform(-0.1 * size, size - 0.5 * w), rng.uniform(-0.1 * size, size - 0.5 * h)
        img, draw = _new_mask(size)
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=1)
        return np.asarray(img, dtype=bool), None

    for _ in range(num_occluders):
        placed = _place(rng, masks, min_visible, propose_occluder)
        if placed is None:
            continue
        mask = placed[0]
        _paint(rng, canvas, mask, _pick_colour(rng, canvas, mask))
        masks.append(mask)

    visible, covered = occlusion(masks)
    instances = []
    for keypoints, vis, cover in zip(figures, visible, covered):   # the occluders are not annotated
        kps = np.zeros((len(COCO_PERSON_KEYPOINTS), 3))       # v = 0 (outside): (0, 0, 0)
        for k, (x, y) in enumerate(np.round(keypoints, 2)):    # as written to the file
            if 0 <= x < size and 0 <= y < size:
                # 1: a later figure or an occluder was painted over the keypoint's pixel
                kps[k] = (x, y, 1 if cover[int(y), int(x)] else 2)
        instances.append({"category_id": 1, "mask": vis, "keypoints": kps})
    return _finish_pixels(rng, canvas), instances


def make_persons(out_dir, num_images, seed=0, image_size=128, num_val=None, min_persons=1, max_persons=3,
                 min_height=None, max_height=None, occluder_prob=0.5, min_visible=0.5, progress=False):
    """Write a persons dataset: stick figures with the 17 COCO keypoints.

    out_dir, num_images, seed, image_size, num_val, min_visible, progress: as for
    :func:`make_shapes`; min_persons..max_persons: figures per image; min_height..max_height:
    figure height in pixels (default 40..110 for 128-px images, scaled with image_size);
    occluder_prob: the chance that an image gets 1 or 2 occluding boxes painted over it.

    Returns ``{"train", "val", "image_dir"}`` as make_shapes. One category, "person" (id 1),
    with COCO's 17 keypoint names and skeleton (1-based, as in COCO files).
    """
    fn = "make_persons"
    num_images, seed, image_size, num_val = _check_common(fn, num_images, seed, image_size, num_val,
                                                          min_visible)
    min_height = 40 * image_size / 128 if min_height is None else min_height
    max_height = 110 * image_size / 128 if max_height is None else max_height
    _check_range(fn, "min_height", min_height, "max_height", max_height, 8, 2 * image_size)
    _check_int(fn, "min_persons", min_persons, 0)
    _check_int(fn, "max_persons", max_persons, max(1, min_persons))
    if not isinstance(occluder_prob, numbers.Real) or not 0.0 <= occluder_prob <= 1.0:
        raise ValueError(f"{fn}: occluder_prob must be in [0, 1], got {occluder_prob!r}")
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": list(COCO_PERSON_KEYPOINTS),
                   "skeleton": [list(pair) for pair in COCO_PERSON_SKELETON]}]

    def draw(rng):
        return _draw_persons(rng, image_size, min_persons, max_persons, min_height, max_height,
                             occluder_prob, min_visible)

    return _write_dataset(out_dir, num_images, num_val, seed, image_size, draw, categories, progress, fn)


# ---- writing ----------------------------------------------------------------------------------

def _annotations(instances, image_id, first_id):
    """COCO annotation dicts of one image's instances (RLE masks; boxes = the masks' extents)."""
    if not instances:
        return []
    masks = np.asfortranarray(np.stack([inst["mask"] for inst in instances], axis=-1).astype(np.uint8))
    rles = mask_utils.encode(masks)
    boxes = mask_utils.toBbox(rles)
    areas = mask_utils.area(rles)
    anns = []
    for k, (inst, rle) in enumerate(zip(instances, rles)):
        ann = {"id": first_id + k, "image_id": image_id, "category_id": inst["category_id"],
               "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
               "area": int(areas[k]), "bbox": [float(v) for v in boxes[k]], "iscrowd": 0}
        if "keypoints" in inst:
            kps = inst["keypoints"]
            ann["keypoints"] = [v for x, y, vis in kps
                                for v in (round(float(x), 2), round(float(y), 2), int(vis))]
            ann["num_keypoints"] = int((kps[:, 2] > 0).sum())
        anns.append(ann)
    return anns


def _write_dataset(out_dir, num_images, num_val, seed, image_size, draw, categories, progress, fn):
    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    num_train = num_images - num_val
    splits = {"train": ([], []), "val": ([], [])}
    next_ann_id = 1
    steps = range(num_images)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc=f"{fn}: drawing {num_images} images", unit="img")
    for k in steps:
        image_id = k + 1
        pixels, instances = draw(np.random.default_rng([seed, k]))
        file_name = f"{image_id:06d}.png"
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name), compress_level=1)
        images, anns = splits["train" if k < num_train else "val"]
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        new = _annotations(instances, image_id, next_ann_id)
        anns.extend(new)
        next_ann_id += len(new)
    paths = {}
    for split, (images, anns) in splits.items():
        dataset = {"info": {"description": f"minimrcnn {fn}(num_images={num_images}, seed={seed}, "
                                           f"image_size={image_size}) {split} split",
                            "version": str(GENERATOR_VERSION)},
                   "licenses": [], "images": images, "annotations": anns, "categories": categories}
        paths[split] = os.path.join(out_dir, f"{split}.json")
        with open(paths[split], "w") as f:
            json.dump(dataset, f, separators=(",", ":"))
    return {"train": paths["train"], "val": paths["val"], "image_dir": image_dir}


# ---- the cache ----------------------------------------------------------------------------------

def default_cache_dir():
    """$XDG_CACHE_HOME/minimrcnn, or ~/.cache/minimrcnn where XDG_CACHE_HOME is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minimrcnn")


_MAKERS = {"shapes": make_shapes, "persons": make_persons}


def synthetic_data(kind, num_images, seed=0, image_size=128, cache_dir=None, progress=True, **kw):
    """A synthetic dataset, generated once and reused: ``{"train", "val", "image_dir"}`` paths.

    kind: "shapes" (:func:`make_shapes`) or "persons" (:func:`make_persons`); num_images, seed,
    image_size and ``**kw`` (e.g. num_val, max_objects) go to it. The set lives in
    ``cache_dir`` (default :func:`default_cache_dir`) under
    ``<kind>-<num_images>img-seed<seed>-<image_size>px-<hash of all the arguments>/``: it is
    written into a temporary folder beside it and renamed into place when complete, so an
    interrupted run leaves no half-written set, and two processes never share one.
    progress: show a tqdm bar while generating (not part of the key).
    """
    if kind not in _MAKERS:
        raise ValueError(f"synthetic_data: kind must be one of {sorted(_MAKERS)}, got {kind!r}")
    make = _MAKERS[kind]
    params = {"kind": kind, "num_images": num_images, "seed": seed, "image_size": image_size,
              "generator_version": GENERATOR_VERSION, **kw}
    try:
        key_text = json.dumps(params, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"synthetic_data: the arguments must be plain numbers/strings (they name the "
                         f"cache entry), got {params!r}") from e
    digest = hashlib.sha1(key_text.encode()).hexdigest()[:10]
    root = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    final = os.path.join(root, f"{kind}-{num_images}img-seed{seed}-{image_size}px-{digest}")
    paths = {"train": os.path.join(final, "train.json"), "val": os.path.join(final, "val.json"),
             "image_dir": os.path.join(final, "images")}
    if os.path.isfile(os.path.join(final, "params.json")):
        return paths
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.", dir=root)
    try:
        make(tmp, num_images, seed=seed, image_size=image_size, progress=progress, **kw)
        with open(os.path.join(tmp, "params.json"), "w") as f:    # written last: marks it complete
            f.write(json.dumps(params, sort_keys=True, indent=1) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "params.json")):   # not another process's
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return paths
