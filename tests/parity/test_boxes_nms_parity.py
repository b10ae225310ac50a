"""Parity of ops.boxes / ops.anchors / ops.nms with torchvision (skipped where it is missing).

Where the arithmetic is the same (+, -, *, /, min, max, round) the results must be bit-identical:
box_iou, clip, remove_small_boxes, anchors, the kept indices of nms and batched_nms. BoxCoder
goes through exp/log, whose float32 implementations (NumPy's, torch's SLEEF) may differ by an ulp,
so it is compared with a float32 tolerance and exactly where no transcendental is involved.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection._utils import BoxCoder as TVBoxCoder  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402

from minimrcnn import ops  # noqa: E402


def random_boxes(rng, n, scale=100.0, dtype=np.float32, min_size=0.0):
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(min_size, scale / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_iou_area_clip_small(dtype):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 60, dtype=dtype), random_boxes(rng, 90, dtype=dtype)
    np.testing.assert_array_equal(ops.box_iou(a, b), torchvision.ops.box_iou(t(a), t(b)).numpy())
    np.testing.assert_array_equal(ops.box_area(a), torchvision.ops.box_area(t(a)).numpy())
    c = (a - 20) * 1.3
    np.testing.assert_array_equal(ops.clip_boxes_to_image(c, (77, 91)),
                                  torchvision.ops.clip_boxes_to_image(t(c), (77, 91)).numpy())
    np.testing.assert_array_equal(ops.remove_small_boxes(a, 12.5),
                                  torchvision.ops.remove_small_boxes(t(a), 12.5).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms(dtype):
    rng = np.random.default_rng(1)
    for trial in range(80):
        n = int(rng.integers(1, 500))
        boxes = random_boxes(rng, n, dtype=dtype)
        scores = (rng.integers(0, 5, n) if trial % 3 == 0 else rng.random(n)).astype(dtype)  # ties
        if trial % 4 == 0:
            boxes[n // 2:] = boxes[: n - n // 2]                  # duplicates
        if trial % 5 == 0:
            boxes = np.round(boxes)                               # exact IoU values such as 0.5
        thr = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        expected = torchvision.ops.nms(t(boxes), t(scores), thr).numpy()
        np.testing.assert_array_equal(ops.nms(boxes, scores, thr), expected)
        np.testing.assert_array_equal(ops.nms_reference(boxes, scores, thr), expected)


def test_batched_nms():
    rng = np.random.default_rng(2)
    for trial in range(40):
        # up to 1000 boxes torchvision uses the coordinate trick, above it one NMS per category
        n = int(rng.choice([10, 200, 1000, 1001, 3000]))
        boxes = random_boxes(rng, n, scale=400)
        ties = trial % 3 == 0 and n <= 1000      # tied scores only where torchvision's order is stable
        # (distinct scores otherwise: torch's unstable sort orders ties of the per-category path)
        scores = (rng.integers(0, 6, n) if ties else rng.permutation(n) / n).astype(np.float32)
        idxs = rng.integers(0, int(rng.choice([1, 3, 80])), n)
        thr = float(rng.choice([0.5, 0.7]))
        expected = torchvision.ops.batched_nms(t(boxes), t(scores), t(idxs), thr).numpy()
        np.testing.assert_array_equal(ops.batched_nms(boxes, scores, idxs, thr), expected)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder(weights):
    rng = np.random.default_rng(3)
    ours, theirs = ops.BoxCoder(weights), TVBoxCoder(weights)
    gt, proposals = random_boxes(rng, 500, min_size=1), random_boxes(rng, 500, min_size=1)
    enc = ours.encode(gt, proposals)
    enc_tv = theirs.encode_single(t(gt), t(proposals)).numpy()
    np.testing.assert_array_equal(enc[:, :2], enc_tv[:, :2])          # no log involved
    np.testing.assert_allclose(enc, enc_tv, rtol=1e-6, atol=1e-6)
    codes = rng.normal(0, 2, (500, 4 * 3)).astype(np.float32)
    codes[::7, 2] = 8.0                                                 # beyond the clamp
    dec = ours.decode(codes, proposals)
    np.testing.assert_allclose(dec, theirs.decode_single(t(codes), t(proposals)).numpy(), rtol=3e-6, atol=1e-5)
    np.testing.assert_allclose(dec.reshape(500, 3, 4), theirs.decode(t(codes), [t(proposals)]).numpy(),
                               rtol=3e-6, atol=1e-5)
    # float64: the same formulas to rounding
    gt64, p64, c64 = gt.astype(np.float64), proposals.astype(np.float64), codes.astype(np.float64)
    np.testing.assert_allclose(ours.encode(gt64, p64), theirs.encode_single(t(gt64), t(p64)).numpy(),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ours.decode(c64, p64), theirs.decode_single(t(c64), t(p64)).numpy(),
                               rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("sizes,aspect_ratios,image_size,strides", [
    (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (800, 1216), (4, 8, 16, 32, 64)),
    (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (480, 640), (4, 8, 16, 32, 64)),
    (((16, 40, 100),), ((0.3, 0.7, 1.3, 3.1),), (99, 131), (7,)),
    (((8, 16), (33,)), ((1.0, 2.0), (0.25, 0.5, 4.0)), (64, 72), (4, 9)),
])
def test_anchor_generator(sizes, aspect_ratios, image_size, strides):
    h, w = image_size
    grids = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
    images = ImageList(torch.zeros(2, 3, h, w), [(h, w), (h - 5, w - 7)])
    feats = [torch.zeros(2, 4, gh, gw) for gh, gw in grids]
    expected = TVAnchorGenerator(sizes, aspect_ratios)(images, feats)
    ours = ops.AnchorGenerator(sizes, aspect_ratios)
    got = np.concatenate(ours(image_size, grids))
    for per_image in expected:                                     # the same anchors for every image
        np.testing.assert_array_equal(got, per_image.numpy())
    assert ours.num_anchors_per_location() == TVAnchorGenerator(sizes, aspect_ratios).num_anchors_per_location()
