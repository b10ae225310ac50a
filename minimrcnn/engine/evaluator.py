"""COCO evaluation: a model's detections on a dataset, scored by pycocotools' COCOeval.

One function per step, so the trainer and the notebooks can use each on its own::

    evaluate(model, dataset, out_dir)            the whole job (the trainer and the CLI call this)
      model.predict(images)                      per image {"boxes", "labels", "scores",
                                                 "masks", "keypoints", "keypoints_scores"}
      predictions_to_coco(pred, image_id, label_to_cat_id)
                                                 -> COCO results lists: bbox, segm, keypoints
      write_json_atomic(out_dir/results/bbox.json, results)     (segm.json, keypoints.json)
      coco_evaluate(coco_gt, results, iou_type)  -> (stats, per_class, COCOeval)

The COCO results format (what ``COCO.loadRes`` reads), one dict per detection:

    bbox       {"image_id", "category_id", "bbox": [x, y, w, h], "score"}
    segm       {"image_id", "category_id", "segmentation": RLE of (mask > 0.5), "score"}
               (no "bbox" key: ``loadRes`` would then treat the entry as a box result)
    keypoints  {"image_id", "category_id", "keypoints": [x1, y1, v1, ..., xK, yK, vK], "score"}
               v = 1 (COCOeval ignores the visibility of detections); score = the box's score

The metrics are COCOeval's own (``COCOeval.stats``), as fractions:

    AP    precision averaged over the 10 IoU thresholds .50:.05:.95, the 101 recall points
          0:.01:1 and the categories, all areas, at most 100 detections per image
          (20 for keypoints, where IoU is the object keypoint similarity OKS)
    AP50, AP75                  the same at a single IoU threshold .50 / .75
    APs, APm, APl               the same for small (area < 32^2), medium, large (> 96^2) objects
                                (keypoints: APm and APl only, COCO has no small persons)

``per_class[name][task]`` is one category's AP, averaged the standard way (Detectron2's table):
the mean of ``COCOeval.eval["precision"][T, R, k, area=all, maxDets=100]`` over its entries > -1.

Missing values: where COCOeval has no ground truth for a metric (APs on a set without small
objects, a class with no instance) it writes -1; we report ``None`` (JSON ``null``) instead --
a number would read as a score, and NaN is not valid JSON.
"""
import contextlib
import io
import json
import os

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from ..files import atomic_write

__all__ = ["evaluate", "predictions_to_coco", "coco_evaluate", "write_json_atomic", "format_per_class",
           "IOU_TYPES", "STAT_NAMES"]

IOU_TYPES = ("bbox", "segm", "keypoints")

# Names of the entries of COCOeval.stats we report, in stats order (stats[0], stats[1], ...).
STAT_NAMES = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl"),
}

MASK_THRESHOLD = 0.5    # a pixel belongs to the instance where its mask probability is > 0.5


# ---- small helpers ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(enabled=True):
    """Swallow what pycocotools prints ("creating index...", "DONE (t=0.01s)") when enabled."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _metric(value):
    """COCOeval's -1 ("no ground truth for this metric") -> None; anything else -> float."""
    value = float(value)
    return None if value == -1 else value


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (:func:`minimrcnn.files.atomic_write`), so a
    reader (or a crash) sees the old file or the new one, never half of one. NaN and infinities
    are refused (``allow_nan=False``): they are not JSON."""
    text = json.dumps(obj, allow_nan=False)
    with atomic_write(path) as f:
        f.write(text.encode())


# ---- predictions -> COCO results --------------------------------------------------------------
def predictions_to_coco(prediction, image_id, label_to_cat_id):
    """One image's detections in the COCO results format: ``(bbox, segm, keypoints)`` lists.

    prediction: a dict of ndarrays as ``model.predict`` returns them --
        "boxes" (D, 4) xyxy in input-image pixels, "labels" (D,) contiguous labels,
        "scores" (D,); optional "masks" (D, 1, H, W) (or (D, H, W)) probabilities and
        "keypoints" (D, K, 3) [x, y, score].
    image_id: the COCO image id; label_to_cat_id: {contiguous label: COCO category id}.

    bbox: [x1, y1, x2 - x1, y2 - y1]; segm: the RLE of mask > 0.5 (pycocotools.mask.encode of a
    Fortran-ordered uint8 (H, W, D) array; counts as str for JSON); keypoints: the flat
    [x, y, 1] * K list. segm / keypoints are empty lists when the prediction has no masks /
    keypoints. Values are Python floats and ints (``json.dump``-ready).
    """
    if not isinstance(prediction, dict):
        raise TypeError(f"prediction must be a dict of arrays, got {type(prediction).__name__}")
    missing = [k for k in ("boxes", "labels", "scores") if k not in prediction]
    if missing:
        raise ValueError(f"prediction for image {image_id} lacks {missing}; keys: {sorted(prediction)}")
    boxes = np.asarray(prediction["boxes"], dtype=np.float64)
    labels = np.asarray(prediction["labels"])
    scores = np.asarray(prediction["scores"], dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"prediction['boxes'] for image {image_id} must be (D, 4), got shape {boxes.shape}")
    num_dets = boxes.shape[0]
    if labels.shape != (num_dets,) or scores.shape != (num_dets,):
        raise ValueError(f"prediction for image {image_id}: boxes {boxes.shape}, labels {labels.shape} and "
                         f"scores {scores.shape} disagree on the number of detections")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(f"prediction for image {image_id} has non-finite boxes or scores")
    if num_dets and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"prediction['labels'] for image {image_id} must be integers, got {labels.dtype}")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        bad = int(np.nonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0][0])
        raise ValueError(f"prediction['boxes'][{bad}] for image {image_id} has x2 < x1 or y2 < y1: "
                         f"{boxes[bad].tolist()}")
    unknown = sorted({int(l) for l in labels} - set(label_to_cat_id))
    if unknown:
        raise ValueError(f"prediction for image {image_id} has labels {unknown} that label_to_cat_id "
                         f"does not map (it maps {sorted(label_to_cat_id)})")
    image_id = int(image_id)
    cat_ids = [int(label_to_cat_id[int(l)]) for l in labels]
    score_list = scores.tolist()

    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]                                   # (x1, y1, x2, y2) -> (x, y, w, h)
    bbox_results = [{"image_id": image_id, "category_id": c, "bbox": b, "score": s}
                    for c, b, s in zip(cat_ids, xywh.tolist(), score_list)]

    segm_results = []
    if "masks" in prediction:
        masks = np.asarray(prediction["masks"])
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.ndim != 3 or masks.shape[0] != num_dets:
            raise ValueError(f"prediction['masks'] for image {image_id} must be (D, 1, H, W) with D = "
                             f"{num_dets}, got shape {np.shape(prediction['masks'])}")
        if num_dets:
            binary = np.asfortranarray((masks > MASK_THRESHOLD).transpose(1, 2, 0).astype(np.uint8))  # (H, W, D)
            rles = mask_util.encode(binary)
            for c, rle, s in zip(cat_ids, rles, score_list):
                rle["counts"] = rle["counts"].decode("ascii")
                segm_results.append({"image_id": image_id, "category_id": c, "segmentation": rle, "score": s})

    keypoint_results = []
    if "keypoints" in prediction:
        keypoints = np.asarray(prediction["keypoints"], dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[0] != num_dets or keypoints.shape[2] != 3:
            raise ValueError(f"prediction['keypoints'] for image {image_id} must be (D, K, 3) with D = "
                             f"{num_dets}, got shape {keypoints.shape}")
        if not np.isfinite(keypoints[:, :, :2]).all():
            raise ValueError(f"prediction['keypoints'] for image {image_id} has non-finite coordinates")
        xyv = keypoints.copy()
        xyv[:, :, 2] = 1.0                                       # visibility: COCOeval ignores it for detections
        flat = xyv.reshape(num_dets, 3 * xyv.shape[1]).tolist()   # (D, 3K): x1, y1, v1, x2, y2, ...
        keypoint_results = [{"image_id": image_id, "category_id": c, "keypoints": k, "score": s}
                            for c, k, s in zip(cat_ids, flat, score_list)]
    return bbox_results, segm_results, keypoint_results


# ---- COCOeval ---------------------------------------------------------------------------------
def _gt_for_eval(coco_gt):
    """A COCO object over shallow copies of ``coco_gt``'s annotations, safe to hand to COCOeval.

    COCOeval writes into the annotations it evaluates (segmentations become RLE, an "ignore"
    flag appears); the copies keep the dataset's own ``coco`` untouched (a training loader may
    be reading it). Fields COCOeval needs and a valid file may leave out are filled as the COCO
    format defines them: "iscrowd" 0, "bbox" the box around the segmentation, "area" the
    segmentation's pixel count (the box's w * h without one).
    """
    annotations = []
    for ann in coco_gt.dataset.get("annotations", []):
        ann = dict(ann)
        has_segm = bool(ann.get("segmentation"))
        if "bbox" not in ann:
            if not has_segm:
                raise ValueError(f"ground-truth annotation {ann.get('id')} has neither 'bbox' nor 'segmentation'")
            ann["bbox"] = mask_util.toBbox(coco_gt.annToRLE(ann)).tolist()
        if "area" not in ann:
            ann["area"] = (float(mask_util.area(coco_gt.annToRLE(ann))) if has_segm
                           else float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)
    gt = COCO()
    gt.dataset = {**coco_gt.dataset, "annotations": annotations}
    with _quiet():
        gt.createIndex()
    return gt


def _load_results(coco_gt, results):
    """``coco_gt.loadRes(results)``, also for an empty list (where loadRes itself fails).

    loadRes writes into the result dicts (ids, areas, box polygons), so it gets copies."""
    if results:
        with _quiet():
            return coco_gt.loadRes([dict(r) for r in results])
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                       "categories": list(coco_gt.dataset.get("categories", [])), "annotations": []}
    with _quiet():
        coco_dt.createIndex()
    return coco_dt


def coco_evaluate(coco_gt, results, iou_type, image_ids=None, kpt_oks_sigmas=None, verbose=False):
    """Score COCO results with COCOeval: ``(stats, per_class, cocoeval)``.

    coco_gt: the ground truth (a ``pycocotools.coco.COCO``); it is not modified.
    results: a list of result dicts (see :func:`predictions_to_coco`) or the path of a results
        JSON file; an empty list scores 0 wherever there is ground truth.
    iou_type: "bbox" | "segm" | "keypoints".
    image_ids: the images to score (default: all of coco_gt's); ground truth in other images
        does not count as missed.
    kpt_oks_sigmas: per-keypoint OKS sigmas for keypoints; default COCO's 17 person sigmas
        (required for any other number of keypoints).
    verbose: print COCOeval's standard summary (the 10 / 12 lines), headed "IoU metric: TYPE".

    stats: {"AP", "AP50", "AP75", "APs", "APm", "APl"} (keypoints: no "APs") from
    ``cocoeval.stats``; per_class: {category id: AP}, the mean of
    ``cocoeval.eval["precision"][:, :, k, area all, max maxDets]`` over its entries > -1.
    Missing values (no ground truth) are None.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if not isinstance(coco_gt, COCO):
        raise TypeError(f"coco_gt must be a pycocotools.coco.COCO, got {type(coco_gt).__name__}")
    if isinstance(results, (str, os.PathLike)):
        with open(results) as f:
            results = json.load(f)
    if not isinstance(results, list):
        raise TypeError(f"results must be a list of dicts or a JSON file path, got {type(results).__name__}")
    if image_ids is not None:
        image_ids = sorted(int(i) for i in image_ids)
        if not image_ids:
            raise ValueError("image_ids is empty: there is nothing to evaluate")
        unknown = sorted(set(image_ids) - set(coco_gt.getImgIds()))
        if unknown:
            raise ValueError(f"image_ids {unknown[:10]} are not images of the ground truth")
    result_key = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
    for i, r in enumerate(results):
        if result_key not in r:
            raise ValueError(f"results[{i}] has no {result_key!r} entry, needed for iou_type {iou_type!r}")
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]   # see the module docstring

    gt = _gt_for_eval(coco_gt)
    dt = _load_results(gt, results)
    cocoeval = COCOeval(gt, dt, iou_type)
    if image_ids is not None:
        cocoeval.params.imgIds = image_ids
    if iou_type == "keypoints":
        _set_keypoint_params(cocoeval.params, gt, results, kpt_oks_sigmas)
    with _quiet():
        cocoeval.evaluate()
        cocoeval.accumulate()
    if verbose:
        print(f"IoU metric: {iou_type}")
    with _quiet(not verbose):
        cocoeval.summarize()

    stats = {name: _metric(cocoeval.stats[i]) for i, name in enumerate(STAT_NAMES[iou_type])}
    precision = cocoeval.eval["precision"]          # (T iou thresholds, R recalls, K cats, A areas, M maxDets)
    area_all = cocoeval.params.areaRngLbl.index("all")
    per_class = {}
    for k, cat_id in enumerate(cocoeval.params.catIds):
        p = precision[:, :, k, area_all, -1]
        p = p[p > -1]
        per_class[int(cat_id)] = float(p.mean()) if p.size else None
    return stats, per_class, cocoeval


def _set_keypoint_params(params, gt, results, kpt_oks_sigmas):
    """Keypoint COCOeval: only the categories with keypoint ground truth, and their OKS sigmas."""
    kp_anns = [a for a in gt.dataset["annotations"] if a.get("keypoints")]
    if not kp_anns:
        raise ValueError("the ground truth has no keypoint annotations: iou_type 'keypoints' cannot be evaluated")
    for a in kp_anns:
        if "num_keypoints" not in a:
            raise ValueError(f"ground-truth annotation {a.get('id')} has 'keypoints' but no 'num_keypoints'")
    num_keypoints = {len(a["keypoints"]) // 3 for a in kp_anns}
    if len(num_keypoints) != 1:
        raise ValueError(f"ground-truth annotations disagree on the number of keypoints: {sorted(num_keypoints)}")
    K = num_keypoints.pop()
    for i, r in enumerate(results):
        if len(r["keypoints"]) != 3 * K:
            raise ValueError(f"results[{i}] has {len(r['keypoints']) // 3} keypoints, the ground truth {K}")
    if kpt_oks_sigmas is not None:
        sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
        if sigmas.shape != (K,) or not (sigmas > 0).all():
            raise ValueError(f"kpt_oks_sigmas must be {K} positive numbers, got {kpt_oks_sigmas!r}")
        params.kpt_oks_sigmas = sigmas
    elif K != len(params.kpt_oks_sigmas):
        raise ValueError(f"the ground truth has {K} keypoints; COCO's OKS sigmas are for "
                         f"{len(params.kpt_oks_sigmas)}: pass kpt_oks_sigmas (one per keypoint)")
    params.catIds = sorted({int(a["category_id"]) for a in kp_anns})


# ---- the whole evaluation ----------------------------------------------------------------------
_DATASET_ATTRS = ("coco", "ids", "label_to_cat_id", "cat_id_to_label", "class_names", "load_image")


def evaluate(model, dataset, out_dir=None, batch_size=2, progress=True, max_images=None, verbose=True,
             kpt_oks_sigmas=None):
    """Run ``model.predict`` over ``dataset`` in order and score it with COCOeval; the metrics dict.

    model: anything with ``predict(list of (3, H, W) images) -> list of prediction dicts`` (a
        MaskRCNN in either mode: predict switches to eval mode and back).
    dataset: a dataset with the minimrcnn interface (``coco``, ``ids``, ``label_to_cat_id``,
        ``cat_id_to_label``, ``class_names``, ``load_image``); images must be at the size of
        their COCO image entry (boxes and masks are compared with the ground truth in pixels).
    out_dir: where to write ``results/bbox.json``, ``results/segm.json`` (masks predicted),
        ``results/keypoints.json`` (keypoints predicted) and ``metrics.json``; None: write nothing.
    batch_size: images per predict call; progress: a tqdm bar; max_images: score only the first
        max_images images (quick validation during training); verbose: print COCOeval's summary
        per task and the per-class AP table; kpt_oks_sigmas: see :func:`coco_evaluate`.

    Returns {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...} (masks predicted
    and the ground truth has segmentations), "keypoints": {"AP", "AP50", "AP75", "APm", "APl"}
    (keypoints predicted and the ground truth has keypoints), "per_class": {class name: {task:
    AP}}}, fractions from COCOeval, None where there is no ground truth for a value.
    """
    if not callable(getattr(model, "predict", None)):
        raise TypeError(f"model must have a predict(images) method, got {type(model).__name__}")
    missing = [a for a in _DATASET_ATTRS if not hasattr(dataset, a)]
    if missing:
        raise TypeError(f"dataset ({type(dataset).__name__}) lacks {missing}: see minimrcnn.data.CocoDataset")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_images is not None and (not isinstance(max_images, int) or isinstance(max_images, bool)
                                   or max_images <= 0):
        raise ValueError(f"max_images must be None or a positive integer, got {max_images!r}")
    num_images = len(dataset.ids)
    if num_images == 0:
        raise ValueError("dataset has no images: there is nothing to evaluate")
    if max_images is not None:
        num_images = min(num_images, max_images)
    coco_gt = dataset.coco
    image_ids = [int(i) for i in dataset.ids[:num_images]]
    unknown = [i for i in image_ids if i not in coco_gt.imgs]
    if unknown:
        raise ValueError(f"dataset.ids {unknown[:10]} are not images of dataset.coco")

    results = {task: [] for task in IOU_TYPES}
    tasks_predicted = tasks_scored = None
    bar = tqdm(total=num_images, desc="evaluate", unit="img", disable=not progress, leave=verbose)
    try:
        for start in range(0, num_images, batch_size):
            indices = range(start, min(start + batch_size, num_images))
            images = [dataset.load_image(i) for i in indices]
            predictions = model.predict(images)
            if len(predictions) != len(images):
                raise ValueError(f"model.predict returned {len(predictions)} predictions for {len(images)} images")
            for i, image, prediction in zip(indices, images, predictions):
                image_id = image_ids[i]
                _check_image_size(image, prediction, coco_gt.imgs[image_id], i)
                predicted = ("bbox",) + tuple(t for t, key in (("segm", "masks"), ("keypoints", "keypoints"))
                                              if key in prediction)
                if tasks_predicted is None:        # the first image: check the ground truth can score them
                    tasks_predicted = predicted
                    tasks_scored = [t for t in predicted if t == "bbox" or _gt_has(coco_gt, image_ids, t)]
                elif predicted != tasks_predicted:
                    raise ValueError(f"model.predict gave {predicted} for image {i} but {tasks_predicted} before")
                for task, task_results in zip(IOU_TYPES, predictions_to_coco(prediction, image_id,
                                                                             dataset.label_to_cat_id)):
                    results[task].extend(task_results)
            bar.update(len(images))
    finally:
        bar.close()

    if out_dir is not None:
        for task in tasks_predicted:
            write_json_atomic(os.path.join(out_dir, "results", f"{task}.json"), results[task])

    metrics, per_class = {}, {}
    for task in tasks_scored:
        metrics[task], per_class[task], _ = coco_evaluate(coco_gt, results[task], task, image_ids=image_ids,
                                                          kpt_oks_sigmas=kpt_oks_sigmas, verbose=verbose)
    if verbose:
        for task in tasks_predicted:
            if task not in tasks_scored:
                print(f"{task}: not scored, the ground truth of these images has no {task} annotations")
    metrics["per_class"] = _per_class_by_name(per_class, dataset)
    if verbose:
        print(format_per_class(metrics["per_class"]))
    if out_dir is not None:
        write_json_atomic(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def _check_image_size(image, prediction, image_info, index):
    """Boxes and masks are compared with the ground truth in pixels: sizes must agree."""
    size = (int(image_info["height"]), int(image_info["width"]))
    if tuple(np.shape(image)[-2:]) != size:
        raise ValueError(f"dataset image {index} (id {image_info['id']}) is {tuple(np.shape(image))}, but its "
                         f"COCO entry says height x width = {size}: evaluate on images at their annotated size")
    if "masks" in prediction and tuple(np.shape(prediction["masks"])[-2:]) != size:
        raise ValueError(f"prediction['masks'] for image {index} (id {image_info['id']}) has shape "
                         f"{np.shape(prediction['masks'])}, the image is {size}")


def _gt_has(coco_gt, image_ids, task):
    """Whether the ground truth of these images can score ``task`` ("segm" | "keypoints").

    segm needs every annotation to have a segmentation (COCOeval turns each into a mask):
    none -> False, some -> an error naming one without."""
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=image_ids))
    if task == "keypoints":
        return any(a.get("keypoints") for a in anns)
    without = [a.get("id") for a in anns if not a.get("segmentation")]
    if anns and len(without) == len(anns):
        return False
    if without:
        raise ValueError(f"ground-truth annotations {without[:10]} have no 'segmentation' while others do: "
                         f"segm cannot be scored")
    return True


def _per_class_by_name(per_class, dataset):
    """{task: {category id: AP}} -> {class name: {task: AP}} in category-id order."""
    cats = dataset.coco.cats
    out = {}
    for cat_id in sorted({c for task_aps in per_class.values() for c in task_aps}):
        label = dataset.cat_id_to_label.get(cat_id)
        name = dataset.class_names[label] if label is not None else cats[cat_id]["name"]
        if name in out:                                           # two categories with one name
            name = f"{name} (category {cat_id})"
        out[name] = {task: task_aps[cat_id] for task, task_aps in per_class.items() if cat_id in task_aps}
    return out


def format_per_class(per_class):
    """The per-class AP table as text: one row per class, one column per task.

    "-": no ground truth of that class (AP None); blank: the task is not scored for the class
    (keypoints, for classes without keypoints)."""
    tasks = [t for t in IOU_TYPES if any(t in row for row in per_class.values())]
    width = max([len("class")] + [len(name) for name in per_class])
    lines = ["per-class AP (IoU=0.50:0.95, area=all)",
             "  ".join([f"{'class':<{width}}"] + [f"{t:>9}" for t in tasks])]
    for name, row in per_class.items():
        cells = [f"{'' if t not in row else '-' if row[t] is None else format(row[t], '.3f'):>9}" for t in tasks]
        lines.append("  ".join([f"{name:<{width}}"] + cells))
    return "\n".join(lines)
