"""Transforms (flip, resize, compose) and the loaders: exact resume, aspect grouping, seeded
shuffling and flips, the worker thread's stop and its errors."""
import gc
import threading
import time

import numpy as np
import pytest

from minimrcnn.data import (COCO_PERSON_KEYPOINTS, CocoDataset, Compose, EvalLoader, LoaderError, Resize,
                            TrainLoader, hflip, keypoint_flip_map, make_persons)
from minimrcnn.modeling.transform import resized_image_size


# ---- transforms -------------------------------------------------------------------------------

def test_coco_keypoint_flip_map():
    assert keypoint_flip_map(COCO_PERSON_KEYPOINTS) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert keypoint_flip_map(["head", "l_hand", "r_hand", "LeftFoot", "RightFoot"]) == [0, 2, 1, 4, 3]


def target_with_masks(h, w):
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 1:4, 0:3] = 1
    masks[1, 2:5, 5:9] = 1
    return {"boxes": np.array([[0, 1, 3, 4], [5, 2, 9, 5]], np.float32), "labels": np.array([1, 2]),
            "masks": masks, "crowd_boxes": np.array([[1, 1, 2, 2]], np.float32), "image_id": 7}


def test_hflip_boxes_masks_and_image():
    h, w = 6, 10
    image = np.random.default_rng(0).random((3, h, w)).astype(np.float32)
    target = target_with_masks(h, w)
    flipped_image, t = hflip(image, target)
    np.testing.assert_array_equal(flipped_image, image[:, :, ::-1])
    np.testing.assert_array_equal(t["masks"], target["masks"][:, :, ::-1])
    np.testing.assert_array_equal(t["boxes"], [[7, 1, 10, 4], [1, 2, 5, 5]])
    np.testing.assert_array_equal(t["crowd_boxes"], [[8, 1, 9, 2]])
    for mask, box in zip(t["masks"], t["boxes"]):              # boxes still equal the masks' extents
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert t["image_id"] == 7 and t["labels"] is target["labels"]
    np.testing.assert_array_equal(target["boxes"], [[0, 1, 3, 4], [5, 2, 9, 5]])   # input unchanged
    twice_image, twice = hflip(flipped_image, t)
    np.testing.assert_array_equal(twice_image, image)
    np.testing.assert_array_equal(twice["boxes"], target["boxes"])


def test_hflip_swaps_left_and_right_keypoints():
    names = ["nose", "left_eye", "right_eye"]
    kps = np.array([[[5.0, 1.0, 2], [7.0, 1.0, 2], [3.0, 1.5, 1]],
                    [[4.0, 2.0, 2], [0.0, 0.0, 0], [2.0, 2.0, 2]]], np.float32)
    _, t = hflip(np.zeros((3, 4, 10), np.float32), {"keypoints": kps}, keypoint_flip_map(names))
    # nose mirrored; the new left eye is the old right eye mirrored (x -> W - x), and vice versa
    np.testing.assert_array_equal(t["keypoints"][0], [[5, 1, 2], [7, 1.5, 1], [3, 1, 2]])
    # an unlabelled keypoint (v = 0) stays (0, 0, 0)
    np.testing.assert_array_equal(t["keypoints"][1], [[6, 2, 2], [8, 2, 2], [0, 0, 0]])
    with pytest.raises(ValueError, match="keypoint_flip_map .* is needed"):
        hflip(np.zeros((3, 4, 10), np.float32), {"keypoints": kps})
    with pytest.raises(ValueError, match="must be a permutation of range"):
        hflip(np.zeros((3, 4, 10), np.float32), {"keypoints": kps}, [0, 1, 1])


def test_hflip_of_a_person_dataset_keeps_left_on_the_image_right(tmp_path):
    paths = make_persons(tmp_path, 3, seed=0, image_size=48, num_val=0, min_height=24, max_height=40)
    ds = CocoDataset(paths["train"], paths["image_dir"])
    image, target = ds[0]
    _, flipped = hflip(image, target, ds.keypoint_flip_map)
    for kps in flipped["keypoints"]:
        left, right = kps[5], kps[6]                            # shoulders: the figure still faces us
        if left[2] and right[2]:
            assert left[0] > right[0]


def test_resize_image_masks_boxes_keypoints():
    h, w = 6, 10
    image = np.random.default_rng(0).random((3, h, w)).astype(np.float32)
    target = target_with_masks(h, w)
    target["keypoints"] = np.array([[[2.0, 3.0, 2]], [[6.0, 4.0, 1]]], np.float32)
    out_image, t = Resize(12, 40)(image, target)
    (nh, nw), _ = resized_image_size(h, w, 12, 40)
    assert out_image.shape == (3, nh, nw) == (3, 12, 20) and out_image.dtype == np.float32
    assert t["masks"].shape == (2, 12, 20) and t["masks"].dtype == np.uint8
    assert set(np.unique(t["masks"])) == {0, 1}
    np.testing.assert_array_equal(t["masks"][0], np.repeat(np.repeat(target["masks"][0], 2, 0), 2, 1))
    np.testing.assert_allclose(t["boxes"], target["boxes"] * 2)
    np.testing.assert_allclose(t["crowd_boxes"], target["crowd_boxes"] * 2)
    np.testing.assert_allclose(t["keypoints"], [[[4, 6, 2]], [[12, 8, 1]]])
    # bilinear, half-pixel centres: a 2x upscale of a constant stays constant, of a ramp stays a ramp
    ramp = np.tile(np.arange(w, dtype=np.float32), (3, h, 1))
    up, _ = Resize(12, 40)(ramp, {})
    np.testing.assert_allclose(up[0, 0, 1:-1], (np.arange(1, 19) + 0.5) / 2 - 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="Resize: min_size must be a positive int, got 0"):
        Resize(0, 10)


def test_compose_applies_in_order():
    image = np.zeros((3, 4, 6), np.float32)
    target = target_with_masks(4, 6)
    target["boxes"] = np.array([[0, 0, 2, 2]], np.float32)
    target["masks"] = target["masks"][:1, :4, :6]
    a = Compose([lambda i, t: hflip(i, t), Resize(8, 100)])(image, target)
    b = Resize(8, 100)(*hflip(image, target))
    np.testing.assert_array_equal(a[1]["boxes"], b[1]["boxes"])
    np.testing.assert_array_equal(a[1]["boxes"], [[8, 0, 12, 4]])
    with pytest.raises(TypeError, match="every transform must be callable"):
        Compose([3])


# ---- loaders ----------------------------------------------------------------------------------

class FakeDataset:
    """Images whose pixels hold their index; ``tall`` of them are 4x6 (H x W = 6 x 4), others 4x4."""

    def __init__(self, n, tall=(), fail=None, delay=0.0):
        self.n, self.tall, self.fail, self.delay = n, set(tall), fail, delay
        self.ids = [100 + i for i in range(n)]
        self.keypoint_flip_map = None

    def __len__(self):
        return self.n

    def image_info(self, i):
        h, w = (6, 4) if i in self.tall else (4, 4)
        return {"id": self.ids[i], "file_name": f"{i}.png", "height": h, "width": w}

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        if i == self.fail:
            raise OSError("broken file")
        info = self.image_info(i)
        image = np.full((3, info["height"], info["width"]), float(i), np.float32)
        image[:, :, 0] = -1.0                                  # shows flips
        masks = np.zeros((1, info["height"], info["width"]), np.uint8)
        masks[0, :, :1] = 1
        return image, {"boxes": np.array([[0, 0, 1, info["height"]]], np.float32), "labels": np.array([1]),
                       "masks": masks, "image_id": self.ids[i]}


def take(iterator, n):
    out = [next(iterator) for _ in range(n)]
    iterator.close()
    return out


def test_resume_sees_the_same_batches():
    ds = FakeDataset(11, tall=(2, 5, 7))
    loader = TrainLoader(ds, 3, seed=4)
    assert loader.batches_per_epoch == 1 + 3                    # ceil(3/3) tall + ceil(8/3) wide
    full = take(loader.batches(), 12)                           # three epochs
    for k in (0, 1, 5, 9, 11):
        again = take(TrainLoader(ds, 3, seed=4).batches(start_iter=k), 12 - k)
        for (images_a, targets_a), (images_b, targets_b) in zip(full[k:], again):
            for a, b in zip(images_a, images_b):
                np.testing.assert_array_equal(a, b)
            assert [t["image_id"] for t in targets_a] == [t["image_id"] for t in targets_b]


def test_epochs_shuffle_group_by_aspect_and_cover_every_image():
    ds = FakeDataset(11, tall=(2, 5, 7))
    loader = TrainLoader(ds, 3, seed=0)
    epochs = [[loader.indices(e * 4 + b) for b in range(4)] for e in range(3)]
    for batches in epochs:
        seen = [j for batch in batches for j, _ in batch]
        assert set(seen) == set(range(11))                      # each image at least once per epoch
        for batch in batches:                                   # one side of aspect 1 per batch
            assert len({j in ds.tall for j, _ in batch}) == 1 and len(batch) == 3
    assert epochs[0] != epochs[1]                               # reshuffled every epoch
    other = TrainLoader(ds, 3, seed=1)
    assert [other.indices(i) for i in range(8)] != [loader.indices(i) for i in range(8)]
    flips = [f for e in epochs for batch in e for _, f in batch]
    assert 0 < sum(flips) < len(flips)
    ungrouped = TrainLoader(ds, 3, seed=0, group_by_aspect=False)
    assert ungrouped.batches_per_epoch == 4 and any(
        len({j in ds.tall for j, _ in ungrouped.indices(i)}) == 2 for i in range(40))


def test_flips_follow_the_draws():
    ds = FakeDataset(6)
    loader = TrainLoader(ds, 2, seed=3, flip_prob=0.5)
    it = loader.batches()
    for i in range(6):
        images, targets = next(it)
        for (j, flip), image, target in zip(loader.indices(i), images, targets):
            expected, expected_t = ds[j]
            if flip:
                expected, expected_t = hflip(expected, expected_t)
            np.testing.assert_array_equal(image, expected)
            np.testing.assert_array_equal(target["boxes"], expected_t["boxes"])
    it.close()
    never = TrainLoader(ds, 2, seed=3, flip_prob=0.0)
    assert not any(f for i in range(9) for _, f in never.indices(i))


def loader_threads():
    return [t for t in threading.enumerate() if t.name == "minimrcnn-loader" and t.is_alive()]


def test_worker_stops_on_close_with_and_break():
    before = len(loader_threads())
    loader = TrainLoader(FakeDataset(8), 2, prefetch=2)
    it = loader.batches()
    next(it)
    time.sleep(0.05)                                            # the worker fills the queue and waits
    it.close()
    assert len(loader_threads()) == before
    with pytest.raises(StopIteration):
        next(it)
    with loader.batches(start_iter=3) as batches:
        next(batches)
    assert len(loader_threads()) == before
    for n, _ in enumerate(loader.batches()):                    # a consumer that just stops
        if n == 2:
            break
    gc.collect()
    deadline = time.time() + 5
    while len(loader_threads()) > before and time.time() < deadline:
        time.sleep(0.01)
    assert len(loader_threads()) == before


def test_consumer_error_stops_the_worker():
    before = len(loader_threads())
    with pytest.raises(ZeroDivisionError):
        with TrainLoader(FakeDataset(8, delay=0.01), 2).batches() as batches:
            next(batches)
            1 / 0
    assert len(loader_threads()) == before


def test_worker_error_is_raised_in_the_consumer_with_the_image_id():
    ds = FakeDataset(6, fail=4)
    loader = TrainLoader(ds, 2, seed=0, group_by_aspect=False)
    bad = next(i for i in range(3) if 4 in [j for j, _ in loader.indices(i)])
    batches = loader.batches()
    for _ in range(bad):
        next(batches)
    with pytest.raises(LoaderError, match=rf"TrainLoader: loading image id 104 \(dataset index 4, "
                                          rf"iteration {bad}\) failed: OSError: broken file") as info:
        next(batches)
    assert isinstance(info.value.__cause__, OSError)
    assert not loader_threads()
    with pytest.raises(StopIteration):
        next(batches)


def test_eval_loader_order_and_error():
    ds = FakeDataset(5, tall=(1,))
    loader = EvalLoader(ds, batch_size=2)
    assert len(loader) == 3
    batches = list(loader)
    assert [[t["image_id"] for t in targets] for _, targets in batches] == [[100, 101], [102, 103], [104]]
    np.testing.assert_array_equal(batches[0][0][1], ds[1][0])   # no flip
    assert [len(b[0]) for b in EvalLoader(ds, batch_size=2, max_images=3)] == [2, 1]
    with pytest.raises(LoaderError, match=r"EvalLoader: loading image id 103 \(dataset index 3\) failed"):
        list(EvalLoader(FakeDataset(5, fail=3), batch_size=2))


def test_loader_arguments_are_checked():
    with pytest.raises(ValueError, match="TrainLoader: batch_size must be an int >= 1, got 0"):
        TrainLoader(FakeDataset(3), 0)
    with pytest.raises(ValueError, match=r"TrainLoader: flip_prob must be in \[0, 1\], got 1.5"):
        TrainLoader(FakeDataset(3), 1, flip_prob=1.5)
    with pytest.raises(ValueError, match="TrainLoader: the dataset is empty"):
        TrainLoader(FakeDataset(0), 1)
    with pytest.raises(ValueError, match="start_iter must be an int >= 0, got -1"):
        TrainLoader(FakeDataset(3), 1).batches(start_iter=-1)
