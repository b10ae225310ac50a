"""CocoDataset: polygons, RLE (compressed and uncompressed), crowds, keypoints, empty images,
label mapping, boxes from masks, and one clear DatasetError for each kind of malformed file."""
import copy
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from minimrcnn.data import CocoDataset, DatasetError

H, W = 12, 16


def uncompressed_rle(mask):
    """COCO's uncompressed RLE of a (H, W) {0, 1} mask: column-major run lengths, zeros first."""
    flat = mask.T.ravel()
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def block(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


@pytest.fixture
def coco_dir(tmp_path):
    """A small valid COCO file (3 images, categories 7 and 3 with keypoints on 7) + its PNGs."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image_dir / name)
    rle = mask_utils.encode(np.asfortranarray(block(5, 9, 10, 15)))
    data = {
        "images": [{"id": 10, "file_name": "a.png", "height": H, "width": W},
                   {"id": 20, "file_name": "b.png", "height": H, "width": W},
                   {"id": 30, "file_name": "c.png", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "dog", "keypoints": ["nose", "left_ear", "right_ear"],
                        "skeleton": [[1, 2], [1, 3]]},
                       {"id": 3, "name": "cat"}],
        "annotations": [
            # polygon square covering pixels x 2..5, y 1..4 (as pycocotools rasterises it)
            {"id": 1, "image_id": 10, "category_id": 3, "iscrowd": 0, "area": 16.0,
             "segmentation": [[2, 1, 6, 1, 6, 5, 2, 5]], "bbox": [2, 1, 4, 4]},
            # compressed RLE, no bbox: the box comes from the mask
            {"id": 2, "image_id": 10, "category_id": 7, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
             "keypoints": [11, 6, 2, 12, 5, 1, 0, 0, 0]},
            # uncompressed RLE crowd region
            {"id": 3, "image_id": 10, "category_id": 3, "iscrowd": 1,
             "segmentation": uncompressed_rle(block(8, 12, 0, 4)), "bbox": [0, 8, 4, 4], "area": 16},
            {"id": 4, "image_id": 30, "category_id": 7, "iscrowd": 0,
             "segmentation": uncompressed_rle(block(0, 3, 0, 2)), "bbox": [0, 0, 2, 3], "area": 6},
        ],
    }
    return tmp_path, data


def write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def build(coco_dir, **kw):
    tmp_path, data = coco_dir
    return CocoDataset(write(tmp_path, data), tmp_path / "images", **kw)


def test_targets_polygons_rle_crowd_keypoints_and_empty_images(coco_dir):
    ds = build(coco_dir)
    assert len(ds) == 3 and ds.ids == [10, 20, 30]
    assert ds.class_names == ["__background__", "cat", "dog"] and ds.num_classes == 3
    assert ds.cat_id_to_label == {3: 1, 7: 2} and ds.label_to_cat_id == {1: 3, 2: 7}
    assert ds.keypoint_names == ["nose", "left_ear", "right_ear"]
    assert ds.skeleton == [(0, 1), (0, 2)] and ds.keypoint_flip_map == [0, 2, 1]
    assert ds.image_info(1) == {"id": 20, "file_name": "b.png", "height": H, "width": W}

    image, t = ds[0]
    assert image.dtype == np.float32 and image.shape == (3, H, W) and 0 <= image.min() and image.max() <= 1
    png = np.asarray(Image.open(os.path.join(ds.image_dir, "a.png")))
    np.testing.assert_allclose(image, png.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert t["image_id"] == 10
    assert t["labels"].dtype == np.int64 and t["labels"].tolist() == [1, 2]      # crowd left out
    assert t["boxes"].dtype == np.float32
    np.testing.assert_array_equal(t["boxes"], [[2, 1, 6, 5], [10, 5, 15, 9]])     # xywh -> xyxy; mask extent
    assert t["masks"].dtype == np.uint8 and t["masks"].shape == (2, H, W)
    np.testing.assert_array_equal(t["masks"][0], block(1, 5, 2, 6))
    np.testing.assert_array_equal(t["masks"][1], block(5, 9, 10, 15))
    np.testing.assert_array_equal(t["crowd_boxes"], [[0, 8, 4, 12]])
    assert t["keypoints"].shape == (2, 3, 3) and t["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(t["keypoints"][1], [[11, 6, 2], [12, 5, 1], [0, 0, 0]])
    np.testing.assert_array_equal(t["keypoints"][0], 0)        # a cat: no keypoints, v = 0

    _, empty = ds[1]                                            # an image without annotations
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, H, W) and empty["keypoints"].shape == (0, 3, 3)
    assert empty["crowd_boxes"].shape == (0, 4)

    _, t3 = ds[2]                                               # uncompressed RLE, non-crowd
    np.testing.assert_array_equal(t3["masks"][0], block(0, 3, 0, 2))
    np.testing.assert_array_equal(ds.load_image(2), ds[2][0])


def test_coco_object_has_what_cocoeval_needs(coco_dir):
    ds = build(coco_dir)
    ann = ds.coco.anns[2]                                       # bbox, area filled in from the mask
    assert ann["bbox"] == [10.0, 5.0, 5.0, 4.0] and ann["area"] == 20.0 and ann["iscrowd"] == 0
    assert ann["num_keypoints"] == 2
    assert ds.coco.anns[4]["keypoints"] == [0] * 9 and ds.coco.anns[4]["num_keypoints"] == 0
    assert sorted(ds.coco.getImgIds()) == [10, 20, 30] and sorted(ds.coco.getCatIds()) == [3, 7]
    # the ground truth scored as detections gives AP 1 (the file round-trips through COCOeval)
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in ds.coco.dataset["annotations"] if not a["iscrowd"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(ds.coco, ds.coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_empty_boxes_are_left_out_with_a_warning(coco_dir):
    tmp_path, data = coco_dir
    data["annotations"][0]["bbox"] = [2, 1, 0, 4]
    with pytest.warns(UserWarning, match=r"1 non-crowd annotation\(s\) have an empty box.*ids \[1\]"):
        ds = CocoDataset(write(tmp_path, data), tmp_path / "images")
    assert ds[0][1]["labels"].tolist() == [2]
    assert 1 in ds.coco.anns                                    # still there for evaluation


def test_index_out_of_range(coco_dir):
    ds = build(coco_dir)
    with pytest.raises(IndexError, match="image index 3 out of range for a dataset of 3 images"):
        ds[3]


# ---- malformed files: one DatasetError each, naming the file, the id and the problem ------------

def _ann(data, ann_id):
    return next(a for a in data["annotations"] if a["id"] == ann_id)


MALFORMED = {
    "missing_key": (lambda d: d.pop("annotations"),
                    r"missing the key\(s\) \['annotations'\]"),
    "top_level_list": (lambda d: ["not", "an", "object"],
                       r"the top level must be a JSON object .* got a list"),
    "images_not_list": (lambda d: d.update(images={"id": 1}),
                        r"'images' must be a list, got dict"),
    "image_missing_width": (lambda d: d["images"][1].pop("width"),
                            r"images\[1\] \(id 20\): missing the key\(s\) \['width'\]"),
    "image_bad_height": (lambda d: d["images"][0].update(height=0),
                         r"image id 10: 'height' and 'width' must be positive integers, got 0 and 16"),
    "duplicate_image_id": (lambda d: d["images"][2].update(id=10),
                           r"image id 10: the id appears twice in 'images' \(entries 0 and 2\)"),
    "duplicate_annotation_id": (lambda d: _ann(d, 4).update(id=1),
                                r"annotation id 1: the id appears twice in 'annotations' \(entries 0 and 3\)"),
    "duplicate_category_id": (lambda d: d["categories"].append({"id": 3, "name": "cow"}),
                              r"category id 3 \('cow'\): the id appears twice"),
    "odd_polygon": (lambda d: _ann(d, 1).update(segmentation=[[2, 1, 6, 1, 6, 5, 2]]),
                    r"annotation id 1 \(image id 10\): polygon 0 of 'segmentation' has an odd number "
                    r"of coordinates \(7\)"),
    "two_point_polygon": (lambda d: _ann(d, 1).update(segmentation=[[2, 1, 6, 5]]),
                          r"annotation id 1 \(image id 10\): polygon 0 .* has 2 point\(s\); a polygon needs at least 3"),
    "polygon_outside": (lambda d: _ann(d, 1).update(segmentation=[[2, 1, 60, 1, 60, 5]]),
                        r"annotation id 1 \(image id 10\): polygon 0 .* spans x 2..60.*outside the 16x12 image"),
    "segmentation_string": (lambda d: _ann(d, 1).update(segmentation="square"),
                            r"annotation id 1 \(image id 10\): 'segmentation' must be a list of polygons or "
                            r"an RLE object, got a str"),
    "unknown_category": (lambda d: _ann(d, 2).update(category_id=99),
                         r"annotation id 2 \(image id 10\): unknown category_id 99 \(the categories are 3, 7\)"),
    "unknown_image": (lambda d: _ann(d, 4).update(image_id=40),
                      r"annotation id 4 \(image id 40\): unknown image_id 40"),
    "box_outside_image": (lambda d: _ann(d, 1).update(bbox=[10, 1, 8, 4]),
                          r"annotation id 1 \(image id 10\): 'bbox' \[x, y, w, h\] = \[10, 1, 8, 4\] lies "
                          r"outside the 16x12 image \(x \+ w = 18"),
    "negative_box": (lambda d: _ann(d, 1).update(bbox=[2, 1, -4, 4]),
                     r"annotation id 1 \(image id 10\): 'bbox' \[2, 1, -4, 4\] has a negative width"),
    "box_three_numbers": (lambda d: _ann(d, 1).update(bbox=[2, 1, 4]),
                          r"annotation id 1 \(image id 10\): 'bbox' must be \[x, y, w, h\] \(4 finite numbers\)"),
    "no_segmentation": (lambda d: _ann(d, 1).pop("segmentation"),
                        r"annotation id 1 \(image id 10\): no 'segmentation': every non-crowd instance needs a mask"),
    "rle_size": (lambda d: _ann(d, 2)["segmentation"].update(size=[W, H]),
                 r"annotation id 2 \(image id 10\): the RLE's size \[16, 12\] differs from the image's "
                 r"\[height, width\] = \[12, 16\]"),
    "rle_counts_sum": (lambda d: _ann(d, 4)["segmentation"]["counts"].append(5),
                       r"annotation id 4 \(image id 30\): the uncompressed RLE's counts sum to 197, not "
                       r"height \* width = 192"),
    "rle_bad_string": (lambda d: _ann(d, 2)["segmentation"].update(counts="~~~"),
                       r"annotation id 2 \(image id 10\): a compressed RLE's 'counts' holds characters outside"),
    "keypoints_length": (lambda d: _ann(d, 2).update(keypoints=[1, 2, 2]),
                         r"annotation id 2 \(image id 10\): 'keypoints' must be 9 numbers"),
    "keypoint_visibility": (lambda d: _ann(d, 2).update(keypoints=[11, 6, 3, 12, 5, 1, 0, 0, 0]),
                            r"annotation id 2 \(image id 10\): keypoint visibility must be 0, 1 or 2, got 3"),
    "keypoints_without_names": (lambda d: _ann(d, 1).update(keypoints=[1, 1, 2]),
                                r"annotation id 1 \(image id 10\): has 'keypoints' but its category 3 \('cat'\) "
                                r"declares none"),
    "bad_skeleton": (lambda d: d["categories"][0].update(skeleton=[[1, 4]]),
                     r"category id 7 \('dog'\): 'skeleton' must be a list of \[a, b\] pairs of keypoint "
                     r"numbers 1..3"),
    "iscrowd_two": (lambda d: _ann(d, 1).update(iscrowd=2),
                    r"annotation id 1 \(image id 10\): 'iscrowd' must be 0 or 1, got 2"),
    "no_categories": (lambda d: (d["categories"].clear(), d["annotations"].clear()),
                      r"'categories' is empty"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_raises_one_clear_error(coco_dir, case):
    tmp_path, data = coco_dir
    data = copy.deepcopy(data)
    mutate, message = MALFORMED[case]
    replaced = mutate(data)                                     # mutates data in place, except:
    path = write(tmp_path, replaced if case == "top_level_list" else data)
    with pytest.raises(DatasetError, match=message) as info:
        CocoDataset(path, tmp_path / "images")
    assert str(info.value).startswith(path)                    # the file is named first
    assert isinstance(info.value, ValueError)
    print(info.value)


def test_not_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"ann.json: not a JSON file: Expecting value: line 1 column 13"):
        CocoDataset(path, tmp_path)


def test_annotation_file_not_found(tmp_path):
    with pytest.raises(DatasetError, match=r"nope.json: annotation file not found"):
        CocoDataset(tmp_path / "nope.json", tmp_path)


def test_image_file_missing(coco_dir):
    tmp_path, data = coco_dir
    os.remove(tmp_path / "images" / "b.png")
    with pytest.raises(DatasetError, match=r"image id 20: image file not found: .*images/b.png"):
        CocoDataset(write(tmp_path, data), tmp_path / "images")
    CocoDataset(write(tmp_path, data), tmp_path / "images", check_images=False)   # checks can be skipped


def test_image_file_unreadable(coco_dir):
    tmp_path, data = coco_dir
    (tmp_path / "images" / "b.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DatasetError, match=r"image id 20: cannot read .*b.png as an image "
                                           r"\(UnidentifiedImageError"):
        CocoDataset(write(tmp_path, data), tmp_path / "images")


def test_image_size_differs_from_the_file(coco_dir):
    tmp_path, data = coco_dir
    Image.new("RGB", (W + 1, H)).save(tmp_path / "images" / "c.png")
    with pytest.raises(DatasetError, match=r"image id 30: .*c.png is 17x12 \(width x height\) but the "
                                           r"file says 16x12"):
        CocoDataset(write(tmp_path, data), tmp_path / "images")


def test_truncated_image_fails_when_loaded_naming_the_image(coco_dir):
    tmp_path, data = coco_dir
    ds = CocoDataset(write(tmp_path, data), tmp_path / "images")
    png = (tmp_path / "images" / "c.png").read_bytes()
    (tmp_path / "images" / "c.png").write_bytes(png[:60])      # header intact, pixels cut off
    with pytest.raises(DatasetError, match=r"image id 30: cannot decode .*c.png"):
        ds[2]


def test_several_problems_are_listed_in_one_error(coco_dir):
    tmp_path, data = coco_dir
    _ann(data, 1)["category_id"] = 99
    _ann(data, 4)["bbox"] = [0, 0, 2, 30]
    with pytest.raises(DatasetError) as info:
        CocoDataset(write(tmp_path, data), tmp_path / "images")
    text = str(info.value)
    assert "2 problems:" in text and "annotation id 1 (image id 10): unknown category_id 99" in text
    assert "annotation id 4 (image id 30): 'bbox'" in text and len(info.value.problems) == 2
