"""import_masks: a folder of images plus instance-id PNGs (the PennFudan layout) -> COCO json."""
import json

import numpy as np
import pytest
from PIL import Image

from minimrcnn.data import CocoDataset, DatasetError, import_masks, parse_classes


def write_pair(images, masks, stem, ids, mask_name=None, image_ext=".png", mode="L"):
    """An RGB image and its instance-id mask (mode "L", "P" (palette) or "I;16")."""
    h, w = ids.shape
    rng = np.random.default_rng(len(stem))
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{stem}{image_ext}")
    if mode == "I;16":
        mask = Image.fromarray(ids.astype(np.uint16))
    else:
        mask = Image.fromarray(ids.astype(np.uint8), mode="L")
        if mode == "P":
            mask = mask.convert("P")
    assert mask.mode == mode
    mask.save(masks / (mask_name or f"{stem}_mask.png"))


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "PNGImages", tmp_path / "PedMasks"
    images.mkdir()
    masks.mkdir()
    a = np.zeros((10, 12), np.uint8)
    a[1:4, 2:6] = 1
    a[5:9, 7:11] = 2
    b = np.zeros((8, 9), np.uint8)
    b[0:3, 0:2] = 1
    write_pair(images, masks, "FudanPed00001", a, image_ext=".jpg", mode="P")       # PennFudan names
    write_pair(images, masks, "FudanPed00002", b, mask_name="FudanPed00002.png")   # same stem
    write_pair(images, masks, "FudanPed00003", np.zeros((5, 5), np.uint8))          # no objects
    return tmp_path, images, masks, a, b


def test_pennfudan_layout_round_trips_through_coco_dataset(folders):
    tmp_path, images, masks, a, b = folders
    out = tmp_path / "ann.json"
    summary = import_masks(images, masks, out)
    assert summary == {"ann_file": str(out), "num_images": 3, "num_annotations": 3, "categories": ["object"]}
    data = json.loads(out.read_text())
    assert [im["file_name"] for im in data["images"]] == ["FudanPed00001.jpg", "FudanPed00002.png",
                                                          "FudanPed00003.png"]
    assert data["annotations"][0]["bbox"] == [2.0, 1.0, 4.0, 3.0] and data["annotations"][0]["area"] == 12
    ds = CocoDataset(out, images)
    assert ds.class_names == ["__background__", "object"]
    _, t = ds[0]
    np.testing.assert_array_equal(t["masks"], [(a == 1), (a == 2)])
    np.testing.assert_array_equal(t["boxes"], [[2, 1, 6, 4], [7, 5, 11, 9]])
    assert t["labels"].tolist() == [1, 1]
    np.testing.assert_array_equal(ds[1][1]["masks"], [(b == 1)])
    assert ds[2][1]["masks"].shape == (0, 5, 5)


def test_one_class_name_and_classes_by_instance_ids(folders):
    tmp_path, images, masks, a, _ = folders
    import_masks(images, masks, tmp_path / "one.json", classes="pedestrian")
    assert CocoDataset(tmp_path / "one.json", images).class_names == ["__background__", "pedestrian"]
    import_masks(images, masks, tmp_path / "two.json", classes="person=1,bicycle=2-5")
    ds = CocoDataset(tmp_path / "two.json", images)
    assert ds.class_names == ["__background__", "person", "bicycle"]
    assert ds[0][1]["labels"].tolist() == [1, 2] and ds[1][1]["labels"].tolist() == [1]
    with pytest.raises(DatasetError, match=r"FudanPed00001_mask.png: instance value\(s\) \[2\] belong to no "
                                           r"class of --classes 'person=1'"):
        import_masks(images, masks, tmp_path / "x.json", classes="person=1")
    assert not (tmp_path / "x.json").exists()


def test_parse_classes():
    assert parse_classes(None) == [("object", None)]
    assert parse_classes("cat") == [("cat", None)]
    assert parse_classes("a=1-3+7,b=4") == [("a", {1, 2, 3, 7}), ("b", {4})]
    assert parse_classes({"a": (1, 2), "b": [5, 6]}) == [("a", {1, 2}), ("b", {5, 6})]
    assert parse_classes(["a=1-3+7", "b=4"]) == parse_classes("a=1-3+7,b=4")      # argparse's words
    assert parse_classes(["cat"]) == [("cat", None)]
    with pytest.raises(ValueError, match=r"classes must be None, a class name"):
        parse_classes([])
    with pytest.raises(ValueError, match=r"instance id 2 is given to both 'a' and 'b'"):
        parse_classes("a=1-2,b=2")
    with pytest.raises(ValueError, match=r"the ids of 'a' must be an int >= 1.*got '0'"):
        parse_classes("a=0")
    with pytest.raises(ValueError, match=r"give one class name, or name=ids pairs"):
        parse_classes("cat,dog")


def test_mask_without_image_and_image_without_mask(folders):
    tmp_path, images, masks, _, _ = folders
    Image.new("L", (4, 4)).save(masks / "ghost_mask.png")
    Image.new("RGB", (4, 4)).save(images / "lonely.png")
    with pytest.raises(DatasetError) as info:
        import_masks(images, masks, tmp_path / "ann.json")
    text = str(info.value)
    assert "2 problems" in text
    assert "mask " + str(masks / "ghost_mask.png") + " has no image: expected " + str(images / "ghost") in text
    assert "image " + str(images / "lonely.png") + " has no mask: expected " + str(masks / "lonely") in text


def test_sizes_differ(folders):
    tmp_path, images, masks, _, _ = folders
    Image.new("L", (6, 5)).save(masks / "FudanPed00003_mask.png")
    with pytest.raises(DatasetError, match=r"FudanPed00003_mask.png is 6x5 but its image .*FudanPed00003.png "
                                           r"is 5x5 \(width x height\)"):
        import_masks(images, masks, tmp_path / "ann.json")


def test_colour_mask_is_refused(folders):
    tmp_path, images, masks, _, _ = folders
    Image.new("RGB", (5, 5)).save(masks / "FudanPed00003_mask.png")
    with pytest.raises(DatasetError, match=r"FudanPed00003_mask.png: mode 'RGB'; a mask must be a "
                                           r"single-channel PNG of instance ids"):
        import_masks(images, masks, tmp_path / "ann.json")


def test_sixteen_bit_masks_and_one_folder(tmp_path):
    folder = tmp_path / "all"
    folder.mkdir()
    ids = np.zeros((6, 7), np.uint16)
    ids[1:3, 1:3] = 300
    ids[4:6, 2:7] = 1000
    write_pair(folder, folder, "x", ids, mode="I;16")           # x.png and x_mask.png side by side
    summary = import_masks(folder, folder, tmp_path / "ann.json")
    assert summary["num_images"] == 1 and summary["num_annotations"] == 2
    ds = CocoDataset(tmp_path / "ann.json", folder)
    np.testing.assert_array_equal(ds[0][1]["masks"], [ids == 300, ids == 1000])


def test_bad_folders_and_output(tmp_path):
    with pytest.raises(DatasetError, match=r"nope: the mask folder does not exist"):
        import_masks(tmp_path, tmp_path / "nope", tmp_path / "ann.json")
    with pytest.raises(ValueError, match=r"the folder of out_json .* does not exist"):
        import_masks(tmp_path, tmp_path, tmp_path / "no" / "ann.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images"):
        import_masks(tmp_path / "empty", tmp_path / "empty", tmp_path / "ann.json")
