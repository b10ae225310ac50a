r"""Your own images: a folder of images plus one PNG of instance ids per image -> a COCO file.

The layout is PennFudan's (and that of many annotation tools' exports): for every image
``IMAGES/name.jpg`` a mask ``MASKS/name.png`` or ``MASKS/name_mask.png``, a single-channel PNG
(8 or 16 bit, grayscale or palette) in which 0 is the background and each object has its own
value 1, 2, ... Each value v > 0 becomes one COCO annotation: its mask ``(png == v)`` as
compressed RLE, its box (the mask's extent, ``[x, y, w, h]``), its area (pixel count),
``iscrowd = 0``.
"""
import json
import os
import re

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .coco import DatasetError

__all__ = ["import_masks", "parse_classes"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = ("_mask", "")          # MASKS/<stem>_mask.png, or MASKS/<stem>.png
_INTEGER_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def parse_classes(classes):
    """``classes`` -> ``[(name, values), ...]``, values a set of instance ids or None (all).

    None -> ``[("object", None)]``; "person" -> ``[("person", None)]``;
    "person=1-99,bicycle=100-199" (or the words ``["person=1-99", "bicycle=100-199"]``, or a dict
    ``{"person": (1, 99), "bicycle": [100, 150]}``; a value may be an int, an inclusive
    ``(low, high)`` pair written ``low-high``, or a list of ints) -> one class per name, in the
    given order.
    """
    if classes is None:
        return [("object", None)]
    if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
        classes = ",".join(classes)      # the command line's words: person=1-99 bicycle=100-199
    if isinstance(classes, str):
        text = classes.strip()
        if "=" not in text:
            if not text or "," in text:
                raise ValueError(f"classes: give one class name, or name=ids pairs such as "
                                 f"'person=1-99,bicycle=100-199'; got {classes!r}")
            return [(text, None)]
        spec = {}
        for part in text.split(","):
            name, sep, ids = part.partition("=")
            name = name.strip()
            if not sep or not name or name in spec:
                raise ValueError(f"classes: {part.strip()!r} in {classes!r} is not name=ids "
                                 f"(ids: 5, 1-99 or 1-3+7+9; each name once)")
            spec[name] = ids.strip()
        classes = spec
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"classes must be None, a class name, 'name=ids,...' or a non-empty dict "
                         f"{{name: ids}}, got {classes!r}")
    parsed, owner = [], {}
    for name, ids in classes.items():
        values = _parse_ids(name, ids)
        clash = sorted(v for v in values if v in owner)
        if clash:
            raise ValueError(f"classes: instance id {clash[0]} is given to both {owner[clash[0]]!r} "
                             f"and {name!r}")
        owner.update({v: name for v in values})
        parsed.append((str(name), values))
    return parsed


def _parse_ids(name, ids):
    """An id spec (int, (low, high), list of ints, or text '5', '1-99', '1-3+7') -> a set."""
    def bad():
        return ValueError(f"classes: the ids of {name!r} must be an int >= 1, an inclusive range "
                          f"low-high, or several joined by '+'; got {ids!r}")
    if isinstance(ids, str):
        values = set()
        for piece in ids.split("+"):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", piece)
            if not m:
                raise bad()
            low, high = int(m.group(1)), int(m.group(2) or m.group(1))
            if low < 1 or high < low:
                raise bad()
            values.update(range(low, high + 1))
        return values
    if isinstance(ids, bool):
        raise bad()
    if isinstance(ids, int):
        if ids < 1:
            raise bad()
        return {ids}
    if isinstance(ids, tuple) and len(ids) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                        for v in ids):
        if ids[0] < 1 or ids[1] < ids[0]:
            raise bad()
        return set(range(ids[0], ids[1] + 1))
    if isinstance(ids, (list, set, frozenset, range)) and ids and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ids):
        return set(ids)
    raise bad()


def _list_files(folder, extensions, what):
    if not os.path.isdir(folder):
        raise DatasetError(folder, f"the {what} folder does not exist")
    return sorted(f for f in os.listdir(folder)
                  if os.path.splitext(f)[1].lower() in extensions and os.path.isfile(os.path.join(folder, f)))


def _pair_files(image_dir, mask_dir):
    """[(image file, mask file)] matched by stem; a DatasetError lists every file left unpaired."""
    masks = _list_files(mask_dir, (".png",), "mask")
    same_dir = os.path.abspath(image_dir) == os.path.abspath(mask_dir)
    images = _list_files(image_dir, IMAGE_EXTENSIONS, "image")
    by_stem = {}
    for f in images:
        by_stem.setdefault(os.path.splitext(f)[0], []).append(f)
    problems = [f"{image_dir}: several images share the stem {stem!r}: {files}"
                for stem, files in by_stem.items() if len(files) > 1]
    pairs, used = {}, set()
    for m in masks:
        stem = os.path.splitext(m)[0]
        image = None
        for suffix in MASK_SUFFIXES:
            if suffix and not stem.endswith(suffix):
                continue
            candidates = by_stem.get(stem[:len(stem) - len(suffix)] if suffix else stem, [])
            candidates = [f for f in candidates if not (same_dir and f == m)]
            if candidates:
                image = candidates[0]
                break
        if image is None:
            if not same_dir:
                problems.append(f"mask {os.path.join(mask_dir, m)} has no image: expected "
                                f"{os.path.join(image_dir, stem.removesuffix('_mask'))}.<png|jpg|...>")
            continue
        if image in pairs:
            problems.append(f"image {os.path.join(image_dir, image)} has two masks: {pairs[image]} and {m}")
            continue
        pairs[image] = m
        used.add(m)
    for f in images:
        if f not in pairs and not (same_dir and f in used):
            problems.append(f"image {os.path.join(image_dir, f)} has no mask: expected "
                            f"{os.path.join(mask_dir, os.path.splitext(f)[0])}_mask.png or .png "
                            f"(an all-zero PNG for an image without objects)")
    if problems:
        raise DatasetError(mask_dir, problems)
    if not pairs:
        raise DatasetError(image_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return sorted(pairs.items())


def import_masks(image_dir, mask_dir, out_json, classes=None):
    """Convert a folder of images and instance-id PNG masks into a COCO instances file.

    IMAGES holds the images (.png, .jpg, ...); MASKS one PNG per image, matched by file name:
    MASKS/NAME.png or MASKS/NAME_mask.png for IMAGES/NAME.jpg (PennFudan: PNGImages/
    FudanPed00001.png with PedMasks/FudanPed00001_mask.png). A mask has the image's size and one
    integer value per object: 0 is the background, 1, 2, ... are the instances (an 8- or
    16-bit grayscale or palette PNG; an image without objects gets an all-zero mask).

    Classes (--classes): by default every instance is of one class, "object". Give one name
    (--classes pedestrian) to name that class, or name=ids pairs to tell the classes apart by
    the instance values, e.g. --classes person=1-99 bicycle=100-199 (or the same joined by a
    comma): instances 1..99 of every mask are persons, 100..199 bicycles (ids: a value, an
    inclusive range low-high, or several joined by '+', as in 1-3+7). Every value present in a
    mask must belong to a class.

    Writes OUT (COCO json: images with ids 1..N in file-name order, RLE segmentations, boxes,
    areas) atomically and returns {"ann_file", "num_images", "num_annotations", "categories"}.
    Train on it with: train --data OUT --images IMAGES.
    """
    image_dir, mask_dir, out_json = os.fspath(image_dir), os.fspath(mask_dir), os.fspath(out_json)
    spec = parse_classes(classes)
    out_parent = os.path.dirname(os.path.abspath(out_json))
    if not os.path.isdir(out_parent):
        raise ValueError(f"import_masks: the folder of out_json {out_json!r} does not exist")
    pairs = _pair_files(image_dir, mask_dir)
    class_of = {}
    for cat_id, (_, values) in enumerate(spec, start=1):
        class_of.update({v: cat_id for v in values or ()})
    default_cat = 1 if spec[0][1] is None else None

    images, annotations, problems = [], [], []
    for image_id, (image_file, mask_file) in enumerate(pairs, start=1):
        image_path, mask_path = os.path.join(image_dir, image_file), os.path.join(mask_dir, mask_file)
        try:
            with Image.open(image_path) as im:
                width, height = im.size
        except Exception as e:
            problems.append(f"image {image_path}: cannot read it ({type(e).__name__}: {e})")
            continue
        try:
            with Image.open(mask_path) as im:
                mode = im.mode
                ids = np.asarray(im) if mode in _INTEGER_MODES else None
        except Exception as e:
            problems.append(f"mask {mask_path}: cannot read it ({type(e).__name__}: {e})")
            continue
        if ids is None:
            problems.append(f"mask {mask_path}: mode {mode!r}; a mask must be a single-channel PNG of "
                            f"instance ids (grayscale 'L'/'I;16' or palette 'P'), not a colour picture")
            continue
        if ids.shape != (height, width):
            problems.append(f"mask {mask_path} is {ids.shape[1]}x{ids.shape[0]} but its image "
                            f"{image_path} is {width}x{height} (width x height)")
            continue
        images.append({"id": image_id, "file_name": image_file, "height": height, "width": width})
        values = [int(v) for v in np.unique(ids) if v != 0]
        if not values:
            continue
        unknown = [v for v in values if v not in class_of] if default_cat is None else []
        if unknown:
            given = " ".join(classes) if isinstance(classes, (list, tuple)) else classes
            problems.append(f"mask {mask_path}: instance value(s) {unknown} belong to no class of "
                            f"--classes {given!r}")
            continue
        masks = np.asfortranarray(np.stack([ids == v for v in values], axis=-1).astype(np.uint8))
        rles = mask_utils.encode(masks)
        boxes, areas = mask_utils.toBbox(rles), mask_utils.area(rles)
        for k, v in enumerate(values):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": default_cat or class_of[v],
                "segmentation": {"size": [height, width], "counts": rles[k]["counts"].decode("ascii")},
                "area": int(areas[k]), "bbox": [float(b) for b in boxes[k]], "iscrowd": 0})
    if problems:
        raise DatasetError(mask_dir, problems)
    categories = [{"id": cat_id, "name": name, "supercategory": ""}
                  for cat_id, (name, _) in enumerate(spec, start=1)]
    dataset = {"info": {"description": f"import_masks({image_dir!r}, {mask_dir!r})"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": categories}
    tmp = out_json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dataset, f, separators=(",", ":"))
    os.replace(tmp, out_json)
    return {"ann_file": out_json, "num_images": len(images), "num_annotations": len(annotations),
            "categories": [c["name"] for c in categories]}
