"""The COCO evaluator: results files, COCOeval metrics, per-class AP, the quiet training path.

The ground truth is a tiny COCO json + PNGs written here, read through a small duck-typed dataset
with the interface of notes/interfaces.md (not minimrcnn.data, so these tests stand alone).
Category ids are 7, 3, 12 and 5 (5 has no instances), in that file order, so contiguous labels
1, 2, 3, 4 map back to non-trivial ids. The "models" are objects with a predict() built from
that ground truth: perfect, shifted, noisy, blind.
"""
import contextlib
import copy
import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from minimrcnn.engine import coco_evaluate, evaluate, format_per_class, predictions_to_coco

K = 17   # COCO person keypoints
ONE = pytest.approx(1.0, abs=1e-12)   # a perfect AP: a mean of 1.0s, up to float rounding


# ---- fixture: a tiny COCO dataset -------------------------------------------------------------
def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE (what crowd annotations use): run lengths in column-major order,
    starting with a run of zeros."""
    flat = mask.reshape(-1, order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"counts": counts, "size": list(mask.shape)}


def _disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)


def _person_keypoints(x0, y0, x1, y1, rng):
    """17 keypoints inside the box: 12 labelled visible (v=2), 2 occluded (v=1), 3 unlabelled (0, 0, 0)."""
    kps = np.zeros((K, 3))
    kps[:, 0] = rng.uniform(x0 + 2, x1 - 2, K).round(1)
    kps[:, 1] = rng.uniform(y0 + 2, y1 - 2, K).round(1)
    kps[:, 2] = 2
    kps[[3, 4], 2] = 1
    kps[[13, 14, 15]] = 0
    return kps


def make_tiny_coco(root):
    """Three images (96x128, 112x96, 64x64 without annotations), a crowd region, keypoints."""
    rng = np.random.RandomState(0)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir)
    images = [dict(id=101, file_name="a.png", height=96, width=128),
              dict(id=205, file_name="b.png", height=112, width=96),
              dict(id=309, file_name="c.png", height=64, width=64)]
    for info in images:
        pixels = rng.randint(0, 256, (info["height"], info["width"], 3)).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(image_dir, info["file_name"]))
    categories = [dict(id=7, name="square", supercategory="shape"),
                  dict(id=3, name="disc", supercategory="shape"),
                  dict(id=12, name="person", supercategory="person",
                       keypoints=[f"kp{i}" for i in range(K)], skeleton=[[1, 2], [2, 3]]),
                  dict(id=5, name="triangle", supercategory="shape")]
    anns = []

    def add(image_id, cat_id, segmentation, h, w, iscrowd=0, keypoints=None):
        if isinstance(segmentation, list):
            rle = mask_util.merge(mask_util.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation["counts"], list):
            rle = mask_util.frPyObjects(segmentation, h, w)
        else:
            rle = segmentation
        ann = dict(id=len(anns) + 1, image_id=image_id, category_id=cat_id, segmentation=segmentation,
                   area=float(mask_util.area(rle)), bbox=mask_util.toBbox(rle).tolist(), iscrowd=iscrowd)
        if keypoints is not None:
            ann["keypoints"] = keypoints.reshape(-1).tolist()
            ann["num_keypoints"] = int((keypoints[:, 2] > 0).sum())
        anns.append(ann)

    # image 101 (96 x 128): a medium square (40 x 40), a small disc, a small person with keypoints
    add(101, 7, [[10, 20, 50, 20, 50, 60, 10, 60]], 96, 128)
    add(101, 3, _rle(_disc(96, 128, 95, 30, 12)), 96, 128)
    add(101, 12, [[62, 58, 92, 58, 92, 90, 62, 90]], 96, 128, keypoints=_person_keypoints(62, 58, 92, 90, rng))
    # image 205 (112 x 96): a small square, a disc, and a crowd of discs (uncompressed RLE)
    add(205, 7, [[60, 70, 80, 70, 80, 90, 60, 90]], 112, 96)
    add(205, 3, _rle(_disc(112, 96, 70, 30, 14)), 112, 96)
    crowd = np.zeros((112, 96), np.uint8)
    crowd[5:40, 5:40] = 1
    add(205, 3, _uncompressed_rle(crowd), 112, 96, iscrowd=1)
    ann_file = os.path.join(root, "ann.json")
    with open(ann_file, "w") as f:
        json.dump(dict(images=images, annotations=anns, categories=categories), f)
    return ann_file, image_dir


class TinyCocoDataset:
    """The dataset interface of notes/interfaces.md, over a COCO json + PNGs (labels in file order)."""

    def __init__(self, ann_file, image_dir):
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(ann_file)
        self.ann_file, self.image_dir = ann_file, image_dir
        self.ids = sorted(self.coco.getImgIds())
        cats = self.coco.dataset["categories"]
        self.cat_id_to_label = {c["id"]: label for label, c in enumerate(cats, start=1)}
        self.label_to_cat_id = {label: cat_id for cat_id, label in self.cat_id_to_label.items()}
        self.class_names = ["__background__"] + [c["name"] for c in cats]
        self.num_classes = len(self.class_names)
        kp_cats = [c for c in cats if c.get("keypoints")]
        self.keypoint_names = kp_cats[0]["keypoints"] if kp_cats else None
        self.skeleton = [(a - 1, b - 1) for a, b in kp_cats[0]["skeleton"]] if kp_cats else None

    def __len__(self):
        return len(self.ids)

    def image_info(self, i):
        info = self.coco.imgs[self.ids[i]]
        return dict(id=info["id"], file_name=info["file_name"], height=info["height"], width=info["width"])

    def load_image(self, i):
        path = os.path.join(self.image_dir, self.image_info(i)["file_name"])
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0

    def __getitem__(self, i):
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=self.ids[i]))
        objs = [a for a in anns if not a["iscrowd"]]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        target = {
            "boxes": np.array([xyxy(a["bbox"]) for a in objs], np.float32).reshape(-1, 4),
            "labels": np.array([self.cat_id_to_label[a["category_id"]] for a in objs], np.int64),
            "masks": np.array([self.coco.annToMask(a) for a in objs], np.uint8).reshape(
                -1, self.image_info(i)["height"], self.image_info(i)["width"]),
            "keypoints": np.array([a.get("keypoints", [0.0] * 3 * K) for a in objs], np.float32).reshape(-1, K, 3),
            "crowd_boxes": np.array([xyxy(a["bbox"]) for a in anns if a["iscrowd"]], np.float32).reshape(-1, 4),
            "image_id": self.ids[i],
        }
        return self.load_image(i), target


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return TinyCocoDataset(*make_tiny_coco(str(tmp_path_factory.mktemp("tiny_coco"))))


# ---- fake models ------------------------------------------------------------------------------
class GroundTruthModel:
    """predict() returns the ground truth of each image, found by its pixels; ``edit`` alters it.

    masks as probabilities (0.9 inside, 0.1 outside), keypoints for every detection ([x, y, 0.7],
    zeros for non-persons) as a keypoint head gives them."""

    def __init__(self, dataset, masks=True, keypoints=True, edit=None):
        self.dataset, self.masks, self.keypoints, self.edit = dataset, masks, keypoints, edit
        self.index = {hashlib.sha1(dataset.load_image(i).tobytes()).hexdigest(): i for i in range(len(dataset))}
        self.calls = []

    def predict(self, images):
        self.calls.append(len(images))
        out = []
        for image in images:
            i = self.index[hashlib.sha1(np.asarray(image).tobytes()).hexdigest()]
            _, t = self.dataset[i]
            d = len(t["labels"])
            pred = {"boxes": t["boxes"].copy(), "labels": t["labels"].copy(),
                    "scores": np.linspace(0.9, 0.6, d).astype(np.float32)}
            if self.masks:
                pred["masks"] = (0.1 + 0.8 * t["masks"][:, None]).astype(np.float32)
            if self.keypoints:
                kps = t["keypoints"].copy()
                kps[:, :, 2] = 0.7
                pred["keypoints"] = kps
                pred["keypoints_scores"] = np.full((d, K), 3.0, np.float32)
            out.append(self.edit(pred, i) if self.edit else pred)
        return out


def _quiet_eval(model, dataset, **kw):
    return evaluate(model, dataset, progress=False, verbose=False, **kw)


def _stats_from_file(dataset, path, iou_type):
    """Plain pycocotools, as a user would run it on the written file (on a copy of the gt)."""
    gt = COCO()
    gt.dataset = copy.deepcopy(dataset.coco.dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        e = COCOeval(gt, gt.loadRes(path), iou_type)
        if iou_type == "keypoints":
            e.params.catIds = [12]
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


# ---- tests ------------------------------------------------------------------------------------
def test_perfect_model_scores_one_on_every_task(dataset, tmp_path):
    polygon_before = copy.deepcopy(dataset.coco.anns[1]["segmentation"])
    metrics = _quiet_eval(GroundTruthModel(dataset), dataset, out_dir=str(tmp_path))
    assert set(metrics) == {"bbox", "segm", "keypoints", "per_class"}
    for task in ("bbox", "segm", "keypoints"):
        assert (metrics[task]["AP"], metrics[task]["AP50"], metrics[task]["AP75"]) == (ONE, ONE, ONE)
    # areas: one medium square, the rest small; the person (small) is the only keypoint gt
    assert metrics["bbox"]["APs"] == ONE and metrics["bbox"]["APm"] == ONE and metrics["bbox"]["APl"] is None
    assert set(metrics["keypoints"]) == {"AP", "AP50", "AP75", "APm", "APl"}
    assert metrics["keypoints"]["APm"] is None and metrics["keypoints"]["APl"] is None
    # per class, by name; the triangle has no instance: None; keypoints only for the person
    per_class = metrics["per_class"]
    assert list(per_class) == ["disc", "triangle", "square", "person"]            # category-id order
    assert per_class["triangle"] == {"bbox": None, "segm": None}
    assert per_class["disc"] == per_class["square"] == {"bbox": ONE, "segm": ONE}
    assert per_class["person"] == {"bbox": ONE, "segm": ONE, "keypoints": ONE}
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == metrics
    assert sorted(os.listdir(tmp_path / "results")) == ["bbox.json", "keypoints.json", "segm.json"]
    # the dataset's own COCO object is left as it was (COCOeval rewrites what it evaluates)
    assert dataset.coco.anns[1]["segmentation"] == polygon_before and "ignore" not in dataset.coco.anns[1]


def test_results_files_reload_and_give_the_returned_and_printed_ap(dataset, tmp_path, capsys):
    rng = np.random.RandomState(3)

    def noisy(pred, i):                   # jittered boxes and masks, shuffled scores, one false positive
        d = len(pred["labels"])
        pred["boxes"] = pred["boxes"] + rng.uniform(-4, 4, (d, 4)).astype(np.float32)
        pred["boxes"][:, 2:] = np.maximum(pred["boxes"][:, 2:], pred["boxes"][:, :2] + 1)
        pred["scores"] = rng.uniform(0.3, 1.0, d).astype(np.float32)
        pred["masks"] = np.roll(pred["masks"], rng.randint(-3, 4), axis=3)
        pred["keypoints"][:, :, :2] += rng.normal(0, 1.5, (d, K, 2)).astype(np.float32)
        h, w = pred["masks"].shape[-2:]
        fp_mask = np.zeros((1, 1, h, w), np.float32)
        fp_mask[..., 2:12, 2:12] = 0.8
        pred["boxes"] = np.concatenate([pred["boxes"], [[2, 2, 12, 12]]]).astype(np.float32)
        pred["labels"] = np.concatenate([pred["labels"], [1]])
        pred["scores"] = np.concatenate([pred["scores"], [0.95]]).astype(np.float32)
        pred["masks"] = np.concatenate([pred["masks"], fp_mask])
        pred["keypoints"] = np.concatenate([pred["keypoints"], np.full((1, K, 3), 5, np.float32)])
        pred["keypoints_scores"] = np.concatenate([pred["keypoints_scores"], np.ones((1, K), np.float32)])
        return pred

    metrics = evaluate(GroundTruthModel(dataset, edit=noisy), dataset, out_dir=str(tmp_path), progress=False)
    printed = capsys.readouterr().out
    for task in ("bbox", "segm", "keypoints"):
        ap = metrics[task]["AP"]
        assert 0.05 < ap < 0.95, (task, ap)                         # a real, non-trivial score
        e = _stats_from_file(dataset, str(tmp_path / "results" / f"{task}.json"), task)
        assert e.stats[0] == ap and e.stats[1] == metrics[task]["AP50"] and e.stats[2] == metrics[task]["AP75"]
        # the standard summary is printed, and its first line is this AP
        block = printed.split(f"IoU metric: {task}\n")[1]
        first = block.splitlines()[0]
        assert first.startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all |")
        assert first.endswith(f"= {ap:0.3f}")
    # per class: each category on its own through COCOeval gives the per-class AP
    for name, cat_id in (("square", 7), ("disc", 3), ("person", 12)):
        for task in ("bbox", "segm"):
            gt = COCO()
            gt.dataset = copy.deepcopy(dataset.coco.dataset)
            with contextlib.redirect_stdout(io.StringIO()):
                gt.createIndex()
                e = COCOeval(gt, gt.loadRes(str(tmp_path / "results" / f"{task}.json")), task)
                e.params.catIds = [cat_id]
                e.evaluate()
                e.accumulate()
                e.summarize()
            assert metrics["per_class"][name][task] == pytest.approx(e.stats[0], abs=1e-12)
    # the per-class table is printed with these values
    assert "per-class AP" in printed
    row = [line for line in printed.splitlines() if line.startswith("square ")][0].split()
    assert row[1:] == [f"{metrics['per_class']['square']['bbox']:.3f}", f"{metrics['per_class']['square']['segm']:.3f}"]
    triangle = [line for line in printed.splitlines() if line.startswith("triangle ")][0].split()
    assert triangle[1:] == ["-", "-"]


def test_category_ids_map_back(dataset, tmp_path):
    _quiet_eval(GroundTruthModel(dataset), dataset, out_dir=str(tmp_path))
    with open(tmp_path / "results" / "bbox.json") as f:
        results = json.load(f)
    got = sorted((r["image_id"], r["category_id"], tuple(round(v, 3) for v in r["bbox"])) for r in results)
    want = sorted((a["image_id"], a["category_id"], tuple(round(v, 3) for v in a["bbox"]))
                  for a in dataset.coco.dataset["annotations"] if not a["iscrowd"])
    assert got == want
    assert {r["category_id"] for r in results} == {7, 3, 12}


def test_shifted_boxes_pass_at_iou_50_not_75(dataset):
    def shift(pred, i):                   # x + w/4: IoU = (3/4) / (5/4) = 0.6
        w = pred["boxes"][:, 2] - pred["boxes"][:, 0]
        pred["boxes"][:, [0, 2]] += (w / 4)[:, None]
        return pred

    metrics = _quiet_eval(GroundTruthModel(dataset, keypoints=False, edit=shift), dataset)
    assert set(metrics) == {"bbox", "segm", "per_class"}         # no keypoints predicted: none scored
    assert metrics["bbox"]["AP50"] == ONE and metrics["bbox"]["AP75"] == 0.0
    assert metrics["bbox"]["AP50"] > metrics["bbox"]["AP"] > metrics["bbox"]["AP75"]
    assert metrics["segm"]["AP"] == ONE                          # segm scores the (untouched) masks, not boxes
    metrics = _quiet_eval(GroundTruthModel(dataset, masks=False, keypoints=False, edit=shift), dataset)
    assert set(metrics) == {"bbox", "per_class"}


def test_no_detections_scores_zero_without_a_crash(dataset, tmp_path):
    def blind(pred, i):
        h, w = pred["masks"].shape[-2:]
        return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int64),
                "scores": np.zeros((0,), np.float32), "masks": np.zeros((0, 1, h, w), np.float32),
                "keypoints": np.zeros((0, K, 3), np.float32), "keypoints_scores": np.zeros((0, K), np.float32)}

    metrics = _quiet_eval(GroundTruthModel(dataset, edit=blind), dataset, out_dir=str(tmp_path))
    for task in ("bbox", "segm", "keypoints"):
        assert metrics[task]["AP"] == 0.0 and metrics[task]["AP50"] == 0.0
        with open(tmp_path / "results" / f"{task}.json") as f:
            assert json.load(f) == []
    assert metrics["bbox"]["APl"] is None                        # no large gt: still "no value", not 0
    assert metrics["per_class"]["square"] == {"bbox": 0.0, "segm": 0.0}


def test_max_images_scores_only_those_images(dataset, tmp_path):
    model = GroundTruthModel(dataset)
    metrics = _quiet_eval(model, dataset, out_dir=str(tmp_path), max_images=1, batch_size=3)
    assert model.calls == [1]
    # the gt of the images not evaluated does not count as missed
    assert metrics["bbox"]["AP"] == ONE and metrics["segm"]["AP"] == ONE
    with open(tmp_path / "results" / "bbox.json") as f:
        assert {r["image_id"] for r in json.load(f)} == {101}
    model = GroundTruthModel(dataset)
    _quiet_eval(model, dataset, batch_size=2)
    assert model.calls == [2, 1]


def test_quiet_path_prints_nothing(dataset, capsys):
    _quiet_eval(GroundTruthModel(dataset), dataset)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_predictions_to_coco_formats():
    h, w = 20, 30
    mask = np.zeros((2, 1, h, w), np.float32)
    mask[0, 0, 2:6, 3:9] = 0.9
    mask[0, 0, 10, 10] = 0.5                                     # not > 0.5: background
    mask[1, 0, 12:18, 20:28] = 0.51
    pred = {"boxes": np.array([[3, 2, 9, 6], [20, 12, 28, 18]], np.float32), "labels": np.array([2, 1]),
            "scores": np.array([0.8, 0.4], np.float32), "masks": mask,
            "keypoints": np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)}
    bbox, segm, kps = predictions_to_coco(pred, 42, {1: 7, 2: 3})
    assert bbox == [{"image_id": 42, "category_id": 3, "bbox": [3.0, 2.0, 6.0, 4.0], "score": pytest.approx(0.8)},
                    {"image_id": 42, "category_id": 7, "bbox": [20.0, 12.0, 8.0, 6.0], "score": pytest.approx(0.4)}]
    assert [s["category_id"] for s in segm] == [3, 7] and all("bbox" not in s for s in segm)
    assert isinstance(segm[0]["segmentation"]["counts"], str)
    json.dumps([bbox, segm, kps])                                # JSON-ready
    decoded = mask_util.decode([dict(s["segmentation"], counts=s["segmentation"]["counts"].encode()) for s in segm])
    assert decoded.shape == (h, w, 2)
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), (mask[:, 0] > 0.5).astype(np.uint8))
    assert kps[1]["keypoints"] == [12.0, 13.0, 1.0, 15.0, 16.0, 1.0, 18.0, 19.0, 1.0, 21.0, 22.0, 1.0]
    assert kps[1]["category_id"] == 7 and kps[1]["score"] == pytest.approx(0.4)
    # no masks / keypoints predicted: empty lists
    assert predictions_to_coco({k: pred[k] for k in ("boxes", "labels", "scores")}, 1, {1: 7, 2: 3})[1:] == ([], [])


def test_bad_input_is_refused_with_its_value(dataset):
    pred = {"boxes": np.array([[0, 0, 5, 5]], np.float32), "labels": np.array([9]), "scores": np.array([0.5])}
    with pytest.raises(ValueError, match=r"labels \[9\]"):
        predictions_to_coco(pred, 1, {1: 7})
    with pytest.raises(ValueError, match="x2 < x1"):
        predictions_to_coco(dict(pred, boxes=np.array([[5, 0, 1, 5]], np.float32), labels=np.array([1])), 1, {1: 7})
    with pytest.raises(ValueError, match="non-finite"):
        predictions_to_coco(dict(pred, scores=np.array([np.nan]), labels=np.array([1])), 1, {1: 7})
    with pytest.raises(ValueError, match="lacks"):
        predictions_to_coco({"boxes": pred["boxes"]}, 1, {1: 7})
    model = GroundTruthModel(dataset)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        _quiet_eval(model, dataset, batch_size=0)
    with pytest.raises(ValueError, match="max_images must be None or a positive integer, got -1"):
        _quiet_eval(model, dataset, max_images=-1)
    with pytest.raises(TypeError, match="predict"):
        _quiet_eval(object(), dataset)
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(dataset.coco, [], "boxes")

    def small_masks(pred, i):
        pred["masks"] = pred["masks"][..., :-1]
        return pred
    with pytest.raises(ValueError, match=r"prediction\['masks'\] for image 0"):
        _quiet_eval(GroundTruthModel(dataset, edit=small_masks), dataset)
    assert model.calls == []                                      # the argument checks came first


def test_keypoints_need_sigmas_for_other_than_17(dataset):
    results = [{"image_id": 101, "category_id": 12, "keypoints": [1.0, 2.0, 1.0] * 5, "score": 0.5}]
    with pytest.raises(ValueError, match="5 keypoints, the ground truth 17"):
        coco_evaluate(dataset.coco, results, "keypoints")


def test_format_per_class():
    text = format_per_class({"cat": {"bbox": 0.5, "segm": None}, "a_long_name": {"bbox": 1.0, "segm": 0.25}})
    lines = text.splitlines()
    assert lines[1].split() == ["class", "bbox", "segm"]
    assert lines[2].split() == ["cat", "0.500", "-"] and lines[3].split() == ["a_long_name", "1.000", "0.250"]


def test_untrained_classroom_model_end_to_end(dataset, tmp_path):
    from minimrcnn.config import get_config
    from minimrcnn.models import build_model

    model = build_model(get_config("classroom_fpn", num_classes=4))
    model.train()
    metrics = evaluate(model, dataset, out_dir=str(tmp_path), max_images=2, progress=False, verbose=False)
    assert model.training                                         # predict restored the mode
    assert set(metrics) == {"bbox", "segm", "per_class"}          # the mask head is on, no keypoint head
    for task in ("bbox", "segm"):
        assert set(metrics[task]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in metrics[task].values())
        with open(tmp_path / "results" / f"{task}.json") as f:
            results = json.load(f)
        assert {r["image_id"] for r in results} <= {101, 205}
        assert {r["category_id"] for r in results} <= {7, 3, 12}
        if results:
            e = _stats_from_file(dataset, str(tmp_path / "results" / f"{task}.json"), task)
            assert e.stats[0] == (-1 if metrics[task]["AP"] is None else metrics[task]["AP"])
    assert set(metrics["per_class"]) == {"square", "disc", "person", "triangle"}
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == metrics
