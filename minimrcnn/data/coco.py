r"""COCO instance / keypoint annotations as a dataset of ``(image, target)`` pairs.

A COCO file (https://cocodataset.org/#format-data) is one JSON object with three lists:

- ``images``: ``{"id", "file_name", "height", "width"}``;
- ``categories``: ``{"id", "name"}``, plus ``"keypoints"`` (K names) and ``"skeleton"``
  (pairs of 1-based keypoint numbers) for keypoint categories;
- ``annotations``: ``{"id", "image_id", "category_id", "segmentation", "bbox", "iscrowd",
  "area"}``, plus ``"keypoints"`` ($3K$ numbers ``x, y, v``) and ``"num_keypoints"``.

A ``segmentation`` is a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` or a run-length
encoding (RLE) ``{"size": [H, W], "counts": ...}``, compressed (a string) or uncompressed (a
list of run lengths, column-major, starting with a run of zeros). pycocotools turns all three
into one binary mask. A ``bbox`` is ``[x, y, w, h]`` (top-left corner and size, in pixels); the
model wants corners, so

$$(x_1, y_1, x_2, y_2) = (x,\ y,\ x + w,\ y + h),$$

clipped to the image. Where an annotation has a segmentation but no ``bbox``, the box is the
extent of its mask (pycocotools' ``toBbox``: a mask covering columns $c_0..c_1$ and rows
$r_0..r_1$ has the box $(c_0, r_0, c_1 + 1, r_1 + 1)$).

COCO category ids are arbitrary (COCO's own run 1..90 with gaps); the model's classifier wants
contiguous labels, 0 being the background. Categories sorted by id get labels $1..C$:
``ds.cat_id_to_label`` and ``ds.label_to_cat_id`` map one way and back.

``iscrowd=1`` annotations mark regions of many objects labelled as one (a crowd of people). They
are never training instances: they go to ``target["crowd_boxes"]`` so that the RPN and the RoI
sampler can leave anchors and proposals lying in them out of both the positives and negatives,
and COCOeval ignores detections that match them.

Everything is checked when the dataset is built, before any training starts; a malformed file
raises one :class:`DatasetError` naming the file, the image or annotation id and each problem.
"""
import contextlib
import io
import json
import math
import numbers
import os
import warnings

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..checks import is_int
from .transforms import keypoint_flip_map

__all__ = ["CocoDataset", "DatasetError", "COCO_PERSON_KEYPOINTS", "COCO_PERSON_SKELETON"]

# The 17 keypoints of COCO's "person" category, in COCO's order ("left" is the person's left).
COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's person skeleton, 1-based as COCO files store it (person_keypoints_*.json).
COCO_PERSON_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

BOX_TOLERANCE = 1.0     # pixels a bbox / polygon may stick out of its image (rounding in COCO files)
MAX_PROBLEMS = 20       # a DatasetError lists at most this many problems


class DatasetError(ValueError):
    """A malformed dataset file (or a folder of images and masks).

    ``path``: the file; ``problems``: a list of strings, each naming the image or annotation id
    and what is wrong. ``str(error)`` is ``"<path>: <problem>"`` for one problem, and the count
    plus one line per problem otherwise.
    """

    def __init__(self, path, problems):
        problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = str(path)
        self.problems = problems
        if len(problems) == 1:
            message = f"{self.path}: {problems[0]}"
        else:
            more = len(problems) - MAX_PROBLEMS
            message = (f"{self.path}: {len(problems)}{'+' if more >= 0 else ''} problems:\n"
                       + "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS]))
        super().__init__(message)


class _Problems:
    """Collects problems while a file is checked; stops (raises) after MAX_PROBLEMS of them."""

    def __init__(self, path):
        self.path = path
        self.items = []

    def add(self, message):
        self.items.append(message)
        if len(self.items) > MAX_PROBLEMS:
            raise DatasetError(self.path, self.items)

    def raise_if_any(self):
        if self.items:
            raise DatasetError(self.path, self.items)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _short(value, limit=60):
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def segmentation_to_rle(segmentation, height, width):
    """One COCO ``segmentation`` (polygons, uncompressed or compressed RLE) -> one compressed RLE
    of an (height, width) image (polygons are rasterised and merged into one mask)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


class CocoDataset:
    """A COCO instances (or person keypoints) file plus its image folder.

    ``CocoDataset(ann_file, image_dir, check_images=True)``: reads and checks ``ann_file``; with
    ``check_images`` every image file must exist, open with Pillow (its header is read, the
    pixels are not decoded) and have the size the file says.

    ``ds[i] -> (image, target)``:
      - image: float32 (3, H, W) RGB in [0, 1];
      - target["boxes"] float32 (M, 4) xyxy pixels, ["labels"] int64 (M,) in 1..C,
        ["masks"] uint8 (M, H, W) in {0, 1}: the M non-crowd instances;
      - target["keypoints"] float32 (M, K, 3) ``[x, y, v]`` (only for keypoint datasets; an
        instance without keypoints gets v = 0 everywhere);
      - target["crowd_boxes"] float32 (C, 4) xyxy of the ``iscrowd=1`` regions;
      - target["image_id"] the COCO image id.

    Attributes: ``coco`` (pycocotools COCO of the ground truth, with the fields COCOeval needs
    -- ``area``, ``iscrowd``, ``bbox``, ``keypoints`` and ``num_keypoints`` -- filled in where
    the file left them out), ``ids``, ``num_classes`` (incl. background), ``class_names`` (``[0]`` is
    ``"__background__"``), ``cat_id_to_label``, ``label_to_cat_id``, ``keypoint_names`` and
    ``skeleton`` (0-based pairs; both None without keypoints), ``keypoint_flip_map`` (for
    :func:`minimrcnn.data.transforms.hflip`), ``ann_file``, ``image_dir``.

    Non-crowd annotations whose box is empty (zero width or height after clipping to the image:
    the model cannot regress to them) are left out of the targets with a warning; they stay in
    ``coco`` for evaluation, as COCOeval expects.
    """

    def __init__(self, ann_file, image_dir, check_images=True):
        self.ann_file = os.fspath(ann_file)
        self.image_dir = os.fspath(image_dir)
        if check_images and not os.path.isdir(self.image_dir):
            raise DatasetError(self.ann_file, f"the image folder {self.image_dir!r} does not exist")
        data = self._read_json(self.ann_file)
        problems = _Problems(self.ann_file)
        categories = self._check_categories(data["categories"], problems)
        images = self._check_images(data["images"], problems, check_images)
        self._check_annotations(data["annotations"], images, categories, problems)
        problems.raise_if_any()
        data.setdefault("info", {})                    # pycocotools' loadRes copies it

        # ---- contiguous labels: categories sorted by COCO id -> 1..C ------------------------
        cat_ids = sorted(categories)
        self.cat_id_to_label = {cat_id: label for label, cat_id in enumerate(cat_ids, start=1)}
        self.label_to_cat_id = {label: cat_id for cat_id, label in self.cat_id_to_label.items()}
        self.class_names = ["__background__"] + [categories[c]["name"] for c in cat_ids]
        self.num_classes = len(self.class_names)
        with_keypoints = [categories[c] for c in cat_ids if categories[c].get("keypoints")]
        if with_keypoints:
            self.keypoint_names = list(with_keypoints[0]["keypoints"])
            self.skeleton = [(a - 1, b - 1) for a, b in with_keypoints[0].get("skeleton", [])]
            self.keypoint_flip_map = keypoint_flip_map(self.keypoint_names)
        else:
            self.keypoint_names = self.skeleton = self.keypoint_flip_map = None

        # ---- per image: the training instances and the crowd boxes, as arrays ------------------
        self._infos = [images[i] for i in sorted(images, key=lambda i: images[i]["_order"])]
        self.ids = [info["id"] for info in self._infos]
        position = {image_id: k for k, image_id in enumerate(self.ids)}
        self._instances = [[] for _ in self.ids]       # annotation dicts, file order
        boxes = [[] for _ in self.ids]
        crowd_boxes = [[] for _ in self.ids]
        empty_boxes = []
        for ann in data["annotations"]:
            k = position[ann["image_id"]]
            box = ann["_xyxy"]
            if ann["iscrowd"]:
                crowd_boxes[k].append(box)
            elif box[2] > box[0] and box[3] > box[1]:
                self._instances[k].append(ann)
                boxes[k].append(box)
            else:
                empty_boxes.append(ann["id"])
        self._boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        self._labels = [np.asarray([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=np.int64)
                        for anns in self._instances]
        self._crowd_boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in crowd_boxes]
        for ann in data["annotations"]:
            del ann["_xyxy"]
        for info in images.values():
            del info["_order"]
        if empty_boxes:
            warnings.warn(f"{self.ann_file}: {len(empty_boxes)} non-crowd annotation(s) have an empty box "
                          f"(zero width or height inside the image) and are left out of the training "
                          f"targets (annotation ids {empty_boxes[:10]}{' ...' if len(empty_boxes) > 10 else ''})",
                          stacklevel=2)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints "creating index..."
            self.coco.createIndex()

    # ---- the checks (construction) ------------------------------------------------------------
    @staticmethod
    def _read_json(path):
        if not os.path.isfile(path):
            raise DatasetError(path, "annotation file not found")
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(path, f"not a JSON file: {e}") from None
        if not isinstance(data, dict):
            raise DatasetError(path, f"the top level must be a JSON object with 'images', 'annotations' "
                                     f"and 'categories', got a {type(data).__name__}")
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise DatasetError(path, f"missing the key(s) {missing}: a COCO instances file has 'images', "
                                     f"'annotations' and 'categories' (it has {sorted(data)})")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data[key], list):
                raise DatasetError(path, f"'{key}' must be a list, got {type(data[key]).__name__}")
        return data

    @staticmethod
    def _check_categories(entries, problems):
        """{id: category} of the valid entries; ``problems.skip_categories``: the ids of entries
        already reported (their annotations are not reported again)."""
        categories = {}
        keypoint_names = None
        problems.skip_categories = set()
        for n, cat in enumerate(entries):
            if isinstance(cat, dict) and is_int(cat.get("id")):
                problems.skip_categories.add(cat["id"])
            if not isinstance(cat, dict) or not is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
                problems.add(f"categories[{n}] must be an object with an integer 'id' and a string "
                             f"'name', got {_short(cat)}")
                continue
            where = f"category id {cat['id']} ({cat['name']!r})"
            if cat["id"] in categories:
                problems.add(f"{where}: the id appears twice in 'categories'")
                continue
            names = cat.get("keypoints")
            if names:
                if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
                    problems.add(f"{where}: 'keypoints' must be a list of names, got {_short(names)}")
                    continue
                if keypoint_names is not None and names != keypoint_names:
                    problems.add(f"{where}: its keypoints {_short(names)} differ from another category's "
                                 f"{_short(keypoint_names)} (one keypoint head needs one list)")
                keypoint_names = names
                skeleton = cat.get("skeleton", [])
                if not isinstance(skeleton, list) or not all(
                        isinstance(p, (list, tuple)) and len(p) == 2 and all(is_int(i) and 1 <= i <= len(names)
                                                                             for i in p) for p in skeleton):
                    problems.add(f"{where}: 'skeleton' must be a list of [a, b] pairs of keypoint numbers "
                                 f"1..{len(names)} (1-based, as COCO stores them), got {_short(skeleton)}")
                    continue
            categories[cat["id"]] = cat
        problems.skip_categories -= set(categories)
        if not categories and not problems.items:
            problems.add("'categories' is empty: there must be at least one category")
        return categories

    def _check_images(self, entries, problems, check_files):
        """{id: image} of the valid entries; ``problems.skip_images`` as for the categories."""
        images = {}
        problems.skip_images = set()
        for n, img in enumerate(entries):
            if isinstance(img, dict) and is_int(img.get("id")):
                problems.skip_images.add(img["id"])
            if not isinstance(img, dict):
                problems.add(f"images[{n}] must be an object, got {_short(img)}")
                continue
            missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
            if missing:
                problems.add(f"images[{n}] (id {img.get('id', '?')}): missing the key(s) {missing}")
                continue
            where = f"image id {img['id']}"
            if not is_int(img["id"]):
                problems.add(f"images[{n}]: 'id' must be an integer, got {_short(img['id'])}")
                continue
            if img["id"] in images:
                problems.add(f"{where}: the id appears twice in 'images' "
                             f"(entries {images[img['id']]['_order']} and {n})")
                continue
            if not isinstance(img["file_name"], str) or not img["file_name"]:
                problems.add(f"{where}: 'file_name' must be a non-empty string, got {_short(img['file_name'])}")
                continue
            if not all(is_int(img[k]) and img[k] > 0 for k in ("height", "width")):
                problems.add(f"{where}: 'height' and 'width' must be positive integers, got "
                             f"{_short(img['height'])} and {_short(img['width'])}")
                continue
            img["_order"] = n
            images[img["id"]] = img
            if check_files:
                self._check_image_file(img, problems)
        problems.skip_images -= set(images)
        return images

    def _check_image_file(self, img, problems):
        where = f"image id {img['id']}"
        path = os.path.join(self.image_dir, img["file_name"])
        if not os.path.isfile(path):
            problems.add(f"{where}: image file not found: {path}")
            return
        try:
            with Image.open(path) as im:
                size = im.size
        except Exception as e:    # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
            problems.add(f"{where}: cannot read {path} as an image ({type(e).__name__}: {e})")
            return
        if size != (img["width"], img["height"]):
            problems.add(f"{where}: {path} is {size[0]}x{size[1]} (width x height) but the file says "
                         f"{img['width']}x{img['height']}")

    def _check_annotations(self, entries, images, categories, problems):
        seen = {}
        cat_list = ", ".join(str(c) for c in sorted(categories))
        for n, ann in enumerate(entries):
            if not isinstance(ann, dict):
                problems.add(f"annotations[{n}] must be an object, got {_short(ann)}")
                continue
            missing = [k for k in ("id", "image_id", "category_id") if k not in ann]
            if missing:
                problems.add(f"annotations[{n}] (id {ann.get('id', '?')}): missing the key(s) {missing}")
                continue
            if not is_int(ann["id"]):
                problems.add(f"annotations[{n}]: 'id' must be an integer, got {_short(ann['id'])}")
                continue
            where = f"annotation id {ann['id']} (image id {ann['image_id']})"
            if ann["id"] in seen:
                problems.add(f"annotation id {ann['id']}: the id appears twice in 'annotations' "
                             f"(entries {seen[ann['id']]} and {n})")
                continue
            seen[ann["id"]] = n
            if (is_int(ann["image_id"]) and ann["image_id"] in problems.skip_images) or \
                    (is_int(ann["category_id"]) and ann["category_id"] in problems.skip_categories):
                continue                                   # its image or category was reported
            img = images.get(ann["image_id"]) if is_int(ann["image_id"]) else None
            if img is None:
                problems.add(f"{where}: unknown image_id {_short(ann['image_id'])} (no such entry in 'images')")
                continue
            cat = categories.get(ann["category_id"]) if is_int(ann["category_id"]) else None
            if cat is None:
                problems.add(f"{where}: unknown category_id {_short(ann['category_id'])} "
                             f"(the categories are {cat_list})")
                continue
            problem = self._check_annotation(ann, img, cat)
            if problem:
                problems.add(f"{where}: {problem}")

    @staticmethod
    def _check_annotation(ann, img, cat):
        """Check one annotation against its image and category and fill in what COCOeval needs
        ("iscrowd", "bbox", "area", "num_keypoints") and the xyxy box; return a problem or None."""
        height, width = img["height"], img["width"]
        ann.setdefault("iscrowd", 0)
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], float):
            return f"'iscrowd' must be 0 or 1, got {_short(ann['iscrowd'])}"
        seg = ann.get("segmentation")
        if seg is None and "bbox" not in ann:
            return "no 'segmentation' and no 'bbox'"
        if seg is None and not ann["iscrowd"]:
            return "no 'segmentation': every non-crowd instance needs a mask (polygons or RLE)"
        if seg is not None:
            problem = _check_segmentation(seg, height, width)
            if problem:
                return problem
        if "bbox" in ann:
            box = ann["bbox"]
            if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
                return f"'bbox' must be [x, y, w, h] (4 finite numbers), got {_short(box)}"
            x, y, w, h = box
            if w < 0 or h < 0:
                return f"'bbox' {_short(box)} has a negative width or height (COCO boxes are [x, y, w, h])"
            t = BOX_TOLERANCE
            if x < -t or y < -t or x + w > width + t or y + h > height + t:
                return (f"'bbox' [x, y, w, h] = {_short(box)} lies outside the {width}x{height} image "
                        f"(x + w = {x + w:g}, y + h = {y + h:g})")
        rle = None
        if "bbox" not in ann or "area" not in ann:
            rle = segmentation_to_rle(seg, height, width)
            if "bbox" not in ann:                           # the extent of the mask
                ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
            if "area" not in ann:
                ann["area"] = float(mask_utils.area(rle))
        if not _is_number(ann["area"]) or ann["area"] < 0:
            return f"'area' must be a number >= 0, got {_short(ann['area'])}"
        x, y, w, h = ann["bbox"]
        ann["_xyxy"] = [min(max(x, 0.0), width), min(max(y, 0.0), height),
                        min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)]
        names = cat.get("keypoints")
        if "keypoints" in ann:
            kps = ann["keypoints"]
            if not names:
                return f"has 'keypoints' but its category {cat['id']} ({cat['name']!r}) declares none"
            if not isinstance(kps, list) or len(kps) != 3 * len(names) or not all(_is_number(v) for v in kps):
                return (f"'keypoints' must be {3 * len(names)} numbers (x, y, v for each of the "
                        f"{len(names)} keypoints of category {cat['id']}), got {_short(kps)}")
            bad = [v for v in kps[2::3] if v not in (0, 1, 2)]
            if bad:
                return f"keypoint visibility must be 0, 1 or 2, got {bad[0]!r}"
            ann.setdefault("num_keypoints", sum(1 for v in kps[2::3] if v > 0))
        elif names:                                         # COCOeval's OKS reads every gt's keypoints
            ann["keypoints"] = [0] * (3 * len(names))
            ann["num_keypoints"] = 0
        return None

    # ---- the dataset ------------------------------------------------------------------------
    def __len__(self):
        return len(self.ids)

    def image_info(self, i):
        """dict(id, file_name, height, width) of image i."""
        info = self._infos[self._index(i)]
        return {k: info[k] for k in ("id", "file_name", "height", "width")}

    def _index(self, i):
        if not is_int(i) or not -len(self) <= i < len(self):
            raise IndexError(f"image index {i!r} out of range for a dataset of {len(self)} images")
        return int(i) % len(self)

    def load_image(self, i):
        """Image i as float32 (3, H, W) RGB in [0, 1] (no annotation work)."""
        info = self._infos[self._index(i)]
        path = os.path.join(self.image_dir, info["file_name"])
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))          # (H, W, 3) uint8
        except Exception as e:
            raise DatasetError(self.ann_file, f"image id {info['id']}: cannot decode {path} "
                                              f"({type(e).__name__}: {e})") from e
        if rgb.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(self.ann_file, f"image id {info['id']}: {path} is {rgb.shape[1]}x{rgb.shape[0]} "
                                              f"but the file says {info['width']}x{info['height']}")
        return rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)

    def __getitem__(self, i):
        k = self._index(i)
        info = self._infos[k]
        height, width = info["height"], info["width"]
        anns = self._instances[k]
        image = self.load_image(k)
        target = {
            "boxes": self._boxes[k].copy(),
            "labels": self._labels[k].copy(),
            "masks": self._masks(anns, height, width, info["id"]),
        }
        if self.keypoint_names is not None:
            num_kp = len(self.keypoint_names)
            keypoints = np.zeros((len(anns), num_kp, 3), dtype=np.float32)
            for m, a in enumerate(anns):
                if "keypoints" in a:                      # absent for categories without keypoints
                    keypoints[m] = np.asarray(a["keypoints"], dtype=np.float32).reshape(num_kp, 3)
            target["keypoints"] = keypoints
        target["crowd_boxes"] = self._crowd_boxes[k].copy()
        target["image_id"] = info["id"]
        return image, target

    def _masks(self, anns, height, width, image_id):
        """(M, H, W) uint8 {0, 1} masks of the annotations (pycocotools decodes (H, W, M))."""
        if not anns:
            return np.zeros((0, height, width), dtype=np.uint8)
        rles = []
        for a in anns:
            try:
                rles.append(segmentation_to_rle(a["segmentation"], height, width))
            except Exception as e:
                raise DatasetError(self.ann_file, f"annotation id {a['id']} (image id {image_id}): cannot "
                                                  f"decode its segmentation ({type(e).__name__}: {e})") from e
        masks = mask_utils.decode(rles)                    # (H, W, M), Fortran order
        return np.ascontiguousarray(masks.transpose(2, 0, 1))

    def __repr__(self):
        return (f"CocoDataset({self.ann_file!r}, {self.image_dir!r}): {len(self)} images, "
                f"{self.num_classes - 1} classes{', keypoints' if self.keypoint_names else ''}")


def _check_segmentation(seg, height, width):
    """A problem with one COCO segmentation of an (height, width) image, or None."""
    if isinstance(seg, list):
        if not seg:
            return "'segmentation' is an empty list (no polygon)"
        for p, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                return f"polygon {p} of 'segmentation' must be a list of finite numbers, got {_short(poly)}"
            if len(poly) % 2:
                return (f"polygon {p} of 'segmentation' has an odd number of coordinates ({len(poly)}); "
                        f"a polygon is x1, y1, x2, y2, ...")
            if len(poly) < 6:
                return (f"polygon {p} of 'segmentation' has {len(poly) // 2} point(s); a polygon needs "
                        f"at least 3")
            xs, ys = poly[0::2], poly[1::2]
            t = BOX_TOLERANCE
            if min(xs) < -t or min(ys) < -t or max(xs) > width + t or max(ys) > height + t:
                return (f"polygon {p} of 'segmentation' spans x {min(xs):g}..{max(xs):g}, y {min(ys):g}.."
                        f"{max(ys):g}: outside the {width}x{height} image")
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if size is None or counts is None:
            return f"an RLE 'segmentation' needs 'size' and 'counts', got the keys {sorted(seg)}"
        if not isinstance(size, (list, tuple)) or list(size) != [height, width]:
            return f"the RLE's size {_short(size)} differs from the image's [height, width] = [{height}, {width}]"
        if isinstance(counts, list):
            if not all(is_int(c) and c >= 0 for c in counts):
                return "an uncompressed RLE's 'counts' must be non-negative integers"
            if sum(counts) != height * width:
                return (f"the uncompressed RLE's counts sum to {sum(counts)}, not height * width = "
                        f"{height * width}")
            return None
        if not isinstance(counts, str) or not counts:
            return f"a compressed RLE's 'counts' must be a non-empty string, got {_short(counts)}"
        if any(not 48 <= ord(ch) < 48 + 64 for ch in counts):
            return "a compressed RLE's 'counts' holds characters outside pycocotools' alphabet ('0'..'o')"
        return None
    return (f"'segmentation' must be a list of polygons or an RLE object, got a "
            f"{type(seg).__name__}: {_short(seg)}")
