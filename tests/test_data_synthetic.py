"""Synthetic shapes and persons: determinism, exact {0,1} masks with boxes at their extents,
occlusion-correct masks and keypoint visibility, valid COCO files, and the cache."""
import filecmp
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from minimrcnn.data import (COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON, CocoDataset, make_persons,
                            make_shapes, synthetic_data)
from minimrcnn.data.synthetic import occlusion

SIZE = 48


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), 8, seed=3, image_size=SIZE, num_val=2,
                       min_size=8, max_size=24, min_objects=3, max_objects=6)


@pytest.fixture(scope="module")
def persons(tmp_path_factory):
    return make_persons(tmp_path_factory.mktemp("persons"), 8, seed=3, image_size=SIZE, num_val=2,
                        min_height=20, max_height=44, min_persons=2, max_persons=3, occluder_prob=1.0)


def files(paths):
    """The dataset's files (the cache's params.json aside), relative to its folder."""
    root = os.path.dirname(paths["train"])
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                  if f != "params.json")


def same_bytes(a, b):
    root_a, root_b = os.path.dirname(a["train"]), os.path.dirname(b["train"])
    return files(a) == files(b) and all(filecmp.cmp(os.path.join(root_a, f), os.path.join(root_b, f),
                                                    shallow=False) for f in files(a))


@pytest.mark.parametrize("make", [make_shapes, make_persons])
def test_same_seed_same_bytes_other_seed_other_data(tmp_path, make):
    a = make(tmp_path / "a", 3, seed=5, image_size=32, num_val=1)
    b = make(tmp_path / "b", 3, seed=5, image_size=32, num_val=1)
    c = make(tmp_path / "c", 3, seed=6, image_size=32, num_val=1)
    assert files(a) == ["images/000001.png", "images/000002.png", "images/000003.png", "train.json", "val.json"]
    assert same_bytes(a, b)
    root_a, root_c = os.path.dirname(a["train"]), os.path.dirname(c["train"])
    for f in files(a):
        assert not filecmp.cmp(os.path.join(root_a, f), os.path.join(root_c, f), shallow=False), f
    # image k depends on (seed, k) only, not on how many are drawn
    d = make(tmp_path / "d", 2, seed=5, image_size=32, num_val=0)
    assert filecmp.cmp(os.path.join(a["image_dir"], "000002.png"), os.path.join(d["image_dir"], "000002.png"),
                       shallow=False)


def test_splits_and_categories(shapes, persons):
    train, val = json.load(open(shapes["train"])), json.load(open(shapes["val"]))
    assert [im["id"] for im in train["images"]] == list(range(1, 7))
    assert [im["id"] for im in val["images"]] == [7, 8]
    assert [(c["id"], c["name"]) for c in train["categories"]] == [(1, "square"), (2, "circle"), (3, "triangle")]
    ds = CocoDataset(shapes["train"], shapes["image_dir"])
    assert ds.class_names == ["__background__", "square", "circle", "triangle"] and ds.num_classes == 4
    cat = json.load(open(persons["train"]))["categories"]
    assert len(cat) == 1 and cat[0]["name"] == "person"
    assert cat[0]["keypoints"] == list(COCO_PERSON_KEYPOINTS) and len(cat[0]["keypoints"]) == 17
    assert cat[0]["skeleton"] == [list(p) for p in COCO_PERSON_SKELETON]
    assert min(min(p) for p in cat[0]["skeleton"]) == 1 and max(max(p) for p in cat[0]["skeleton"]) == 17


@pytest.mark.parametrize("kind", ["shapes", "persons"])
def test_masks_are_binary_and_boxes_are_their_extents(kind, shapes, persons):
    paths = shapes if kind == "shapes" else persons
    for split in ("train", "val"):
        coco = COCO(paths[split])                                # pycocotools reads the file as it is
        ds = CocoDataset(paths[split], paths["image_dir"])
        assert ds.ids == sorted(coco.getImgIds())
        for i in range(len(ds)):
            image, t = ds[i]
            assert image.shape == (3, SIZE, SIZE)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=ds.ids[i]))
            assert len(anns) == len(t["labels"]) and set(np.unique(t["masks"])) <= {0, 1}
            for ann, mask, box, label in zip(anns, t["masks"], t["boxes"], t["labels"]):
                np.testing.assert_array_equal(mask, coco.annToMask(ann))      # round trip
                ys, xs = np.nonzero(mask)
                np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                assert ann["area"] == mask.sum() and label == ann["category_id"]
                assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
            assert (t["masks"].sum(axis=0) <= 1).all()          # visible masks never overlap


def test_objects_per_image_and_sizes(tmp_path):
    paths = make_shapes(tmp_path, 20, seed=0, num_val=0)        # the defaults: 128 px, 2..6 of 12..60 px
    ds = CocoDataset(paths["train"], paths["image_dir"])
    counts = [len(ds[i][1]["labels"]) for i in range(len(ds))]
    assert min(counts) >= 1 and max(counts) <= 6 and np.mean(counts) >= 3
    labels = np.concatenate([ds[i][1]["labels"] for i in range(len(ds))])
    assert set(labels.tolist()) == {1, 2, 3}
    boxes = np.concatenate([ds[i][1]["boxes"] for i in range(len(ds))])
    extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert extent.max() <= 60 * np.sqrt(2) + 1 and np.median(extent) >= 12


def test_occlusion_rule():
    a = np.zeros((6, 6), bool)
    a[1:5, 1:5] = True
    b = np.zeros((6, 6), bool)
    b[3:6, 3:6] = True
    visible, covered = occlusion([a, b])                        # b painted over a
    np.testing.assert_array_equal(visible[0], a & ~b)
    np.testing.assert_array_equal(visible[1], b)
    np.testing.assert_array_equal(covered[0], b)
    assert not covered[1].any()


def test_masks_match_what_is_painted_on_top(shapes):
    """Each visible mask's pixels carry one object's colour (a mask that kept a hidden part, or
    the lower object's mask winning, would cover pixels of another colour)."""
    from PIL import Image
    coco = COCO(shapes["train"])
    checked = 0
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        pixels = np.asarray(Image.open(os.path.join(shapes["image_dir"], info["file_name"])), np.float32) / 255
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            colours = pixels[coco.annToMask(ann) > 0]
            near = np.abs(colours - np.median(colours, axis=0)).max(axis=1) < 0.25
            assert near.mean() > 0.85, (image_id, ann["id"], near.mean())
            checked += 1
    assert checked >= 15


def test_every_object_keeps_min_visible_of_its_area(tmp_path, monkeypatch):
    import minimrcnn.data.synthetic as synthetic
    scenes = []

    def recording(masks):
        result = occlusion(masks)
        scenes.append((list(masks), result[0]))
        return result
    monkeypatch.setattr(synthetic, "occlusion", recording)
    make_shapes(tmp_path, 4, seed=1, image_size=64, num_val=0, min_objects=6, max_objects=6,
                min_size=20, max_size=30, min_visible=0.8)
    final = [scene for scene in scenes if len(scene[0]) > 1]   # the scenes' last calls among others
    assert final
    for full, visible in final:
        for m, v in zip(full, visible):
            assert v.sum() >= 0.8 * m.sum()


def test_person_keypoints_and_visibility(persons):
    coco = COCO(persons["train"])
    seen = np.zeros(3, int)
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))      # painting order = id order
        masks = [coco.annToMask(a) for a in anns]
        for n, ann in enumerate(anns):
            kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
            assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
            for x, y, v in kps:
                seen[int(v)] += 1
                if v == 0:
                    assert (x, y) == (0, 0)
                    continue
                assert 0 <= x < SIZE and 0 <= y < SIZE
                if v == 2:       # not under a figure painted later
                    assert not any(m[int(y), int(x)] for m in masks[n + 1:])
                else:            # covered: not this figure's visible pixel
                    assert not masks[n][int(y), int(x)]
            # the person's left is on the image's right (facing the viewer)
            left, right = kps[5], kps[6]                                       # shoulders
            if left[2] and right[2]:
                assert left[0] > right[0]
    assert seen.min() > 0, seen                                 # all three flags occur


def test_arguments_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="make_shapes: num_images must be an int >= 1, got 0"):
        make_shapes(tmp_path / "x", 0)
    with pytest.raises(ValueError, match=r"make_shapes: min_size \(50\) must be <= max_size \(20\)"):
        make_shapes(tmp_path / "x", 2, min_size=50, max_size=20)
    with pytest.raises(ValueError, match=r"make_shapes: num_val must be an int in \[0, 1\], got 2"):
        make_shapes(tmp_path / "x", 2, num_val=2)
    with pytest.raises(ValueError, match=r"make_persons: occluder_prob must be in \[0, 1\], got 2"):
        make_persons(tmp_path / "x", 2, occluder_prob=2)
    assert not (tmp_path / "x").exists()


def test_synthetic_data_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    paths = synthetic_data("shapes", 3, seed=2, image_size=32, progress=False, num_val=1)
    root = os.path.dirname(paths["train"])
    assert os.path.dirname(root) == str(tmp_path / "xdg" / "minimrcnn")
    assert os.path.basename(root).startswith("shapes-3img-seed2-32px-")
    assert sorted(os.listdir(os.path.dirname(root))) == [os.path.basename(root)]     # no temp dir left
    stamp = os.stat(paths["train"]).st_mtime_ns
    assert synthetic_data("shapes", 3, seed=2, image_size=32, progress=False, num_val=1) == paths
    assert os.stat(paths["train"]).st_mtime_ns == stamp         # reused, not regenerated
    other = synthetic_data("shapes", 3, seed=2, image_size=32, progress=False, num_val=1, max_objects=3)
    assert other["train"] != paths["train"]                    # every argument is in the key
    direct = make_shapes(tmp_path / "direct", 3, seed=2, image_size=32, num_val=1)
    assert same_bytes(paths, direct)
    explicit = synthetic_data("persons", 2, image_size=32, cache_dir=tmp_path / "mine", progress=False)
    assert explicit["train"].startswith(str(tmp_path / "mine"))
    with pytest.raises(ValueError, match=r"kind must be one of \['persons', 'shapes'\], got 'cars'"):
        synthetic_data("cars", 3)


def test_interrupted_generation_leaves_no_cache_entry(tmp_path, monkeypatch):
    import minimrcnn.data.synthetic as synthetic

    def boom(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setitem(synthetic._MAKERS, "shapes", boom)
    with pytest.raises(KeyboardInterrupt):
        synthetic_data("shapes", 3, cache_dir=tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["shapes", "persons"])
def test_targets_scored_as_detections_give_ap_one(kind, shapes, persons):
    """The dataset's targets, written in COCO's results format, score AP = 1 against ds.coco:
    the json, CocoDataset's targets and COCOeval agree on every box, mask and keypoint."""
    import contextlib
    import io
    from pycocotools.cocoeval import COCOeval
    paths = shapes if kind == "shapes" else persons
    ds = CocoDataset(paths["train"], paths["image_dir"])
    results = {"bbox": [], "segm": [], "keypoints": []}
    for i in range(len(ds)):
        _, t = ds[i]
        for m in range(len(t["labels"])):
            x1, y1, x2, y2 = (float(v) for v in t["boxes"][m])
            common = {"image_id": t["image_id"], "category_id": ds.label_to_cat_id[int(t["labels"][m])],
                      "score": 1.0}
            results["bbox"].append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1]})
            rle = mask_utils.encode(np.asfortranarray(t["masks"][m]))
            results["segm"].append({**common, "segmentation": {"size": rle["size"],
                                                                "counts": rle["counts"].decode()}})
            if "keypoints" in t:
                results["keypoints"].append({**common, "keypoints": t["keypoints"][m].ravel().tolist()})
    for task in ("bbox", "segm") + (("keypoints",) if kind == "persons" else ()):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(ds.coco, ds.coco.loadRes(results[task]), task)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), (kind, task, ev.stats[0])
