"""Boxes (IoU, clipping, BoxCoder), anchors and NMS: hand-checked values, invariants, bad input.

Expected numbers are derived by hand from torchvision's formulas (ops/boxes.py, BoxCoder in
models/detection/_utils.py, AnchorGenerator in models/detection/anchor_utils.py); the parity
tests in tests/parity/ compare with torchvision itself where it is installed.
"""
import importlib
import math
import sys

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import ops
nms_module = importlib.import_module("minimrcnn.ops.nms")   # ops.nms is the function


def random_boxes(rng, n, scale=100.0, dtype=np.float32):
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(0, scale / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


# ---- IoU, area, clip, small boxes ----------------------------------------------------------------

def test_box_iou_hand_checked():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], np.float32)
    b = np.array([[1, 1, 3, 3],      # overlaps a[0] in a 1x1 square: 1 / (4 + 4 - 1)
                  [2, 0, 4, 2],      # touches a[0] along an edge: 0
                  [1, 1, 2, 2],      # inside a[1]: 1 / 16
                  [0, 0, 2, 2]], np.float32)
    expected = np.array([[1 / 7, 0, 1 / 4, 1],
                         [4 / 16, 4 / 16, 1 / 16, 4 / 16]], np.float32)
    iou = ops.box_iou(a, b)
    assert iou.shape == (2, 4) and iou.dtype == np.float32
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    np.testing.assert_allclose(ops.box_iou(b, a), expected.T, rtol=1e-6)
    np.testing.assert_array_equal(ops.box_area(b), [4, 4, 1, 4])


def test_box_iou_empty_and_tensor_input():
    a = np.zeros((0, 4), np.float32)
    b = np.array([[0, 0, 1, 1]], np.float32)
    assert ops.box_iou(a, b).shape == (0, 1)
    assert ops.box_iou(b, a).shape == (1, 0)
    np.testing.assert_allclose(ops.box_iou(mr.Tensor(b), mr.Tensor(b)), [[1.0]])


def test_box_ioa_is_the_share_of_each_box_inside_each_region():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [3, 3, 3, 8]], np.float32)
    regions = np.array([[0, 0, 10, 10], [0, 0, 100, 100]], np.float32)
    np.testing.assert_allclose(ops.box_ioa(boxes, regions), [[1.0, 1.0], [0.25, 1.0], [0.0, 1.0], [0.0, 0.0]])
    assert ops.box_ioa(boxes, np.zeros((0, 4), np.float32)).shape == (4, 0)
    with pytest.raises(ValueError, match=r"regions\[0\].*not a valid box"):
        ops.box_ioa(boxes, np.array([[5, 5, 1, 1]], np.float32))


def test_clip_and_remove_small_boxes():
    boxes = np.array([[-5, -3, 50, 40], [10, 20, 120, 90], [3, 4, 3.5, 30]], np.float32)
    clipped = ops.clip_boxes_to_image(boxes, (60, 100))         # (height, width)
    np.testing.assert_array_equal(clipped, [[0, 0, 50, 40], [10, 20, 100, 60], [3, 4, 3.5, 30]])
    assert clipped.dtype == np.float32 and boxes[0, 0] == -5  # input untouched
    keep = ops.remove_small_boxes(clipped, 1.0)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, [0, 1])               # box 2 is 0.5 wide
    np.testing.assert_array_equal(ops.remove_small_boxes(clipped, 0.5), [0, 1, 2])  # >= min_size
    assert ops.remove_small_boxes(np.zeros((0, 4), np.float32), 1.0).shape == (0,)


# ---- BoxCoder ------------------------------------------------------------------------------------

@pytest.mark.ex_box_coder
def test_encode_hand_checked():
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], np.float64)
    gt = np.array([[5, 5, 15, 25], [0, 0, 20, 10]], np.float64)
    # box 0: centres (5, 10) -> (10, 15), same size: dx = 10 * 5 / 10, dy = 10 * 5 / 20
    # box 1: centres (5, 10) -> (10, 5), w x2, h /2: dw = 5 log 2, dh = 5 log 1/2
    expected = [[5.0, 2.5, 0.0, 0.0], [5.0, -2.5, 5 * math.log(2), -5 * math.log(2)]]
    np.testing.assert_allclose(coder.encode(gt, proposals), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coder.decode(coder.encode(gt, proposals), proposals), gt, rtol=1e-12)


@pytest.mark.ex_box_coder
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_round_trip(weights):
    rng = np.random.default_rng(0)
    proposals = random_boxes(rng, 200, dtype=np.float64) + np.array([0, 0, 1, 1])
    gt = random_boxes(rng, 200, dtype=np.float64) + np.array([0, 0, 1, 1])
    coder = ops.BoxCoder(weights)
    deltas = coder.encode(gt, proposals)
    assert deltas.shape == (200, 4) and deltas.dtype == np.float64
    np.testing.assert_allclose(coder.decode(deltas, proposals), gt, rtol=1e-10, atol=1e-10)
    # float32 in, float32 out
    d32 = coder.encode(gt.astype(np.float32), proposals.astype(np.float32))
    assert d32.dtype == np.float32
    assert coder.decode(d32, proposals.astype(np.float32)).dtype == np.float32


@pytest.mark.ex_box_coder
def test_decode_per_class_and_clamp():
    coder = ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
    boxes = np.array([[10, 20, 30, 60]], np.float64)              # w 20, h 40, centre (20, 40)
    codes = np.array([[0, 0, 0, 0,                                 # class 0: the box itself
                       0.5, -0.25, math.log(2), 0,                 # class 1: shifted, 2x wider
                       0, 0, 10.0, -10.0]])                        # class 2: dw clamped, dh not
    out = coder.decode(codes, boxes)
    assert out.shape == (1, 12)
    np.testing.assert_allclose(out[0, 0:4], [10, 20, 30, 60])
    np.testing.assert_allclose(out[0, 4:8], [30 - 20, 30 - 20, 30 + 20, 30 + 20])  # cx 30, cy 30
    w = 20 * 1000 / 16                                             # exp(log(1000/16)) * 20
    h = 40 * math.exp(-10.0)
    np.testing.assert_allclose(out[0, 8:12], [20 - w / 2, 40 - h / 2, 20 + w / 2, 40 + h / 2])
    # the default clip is log(1000 / 16); a custom one is honoured
    out = ops.BoxCoder((1, 1, 1, 1), bbox_xform_clip=math.log(2)).decode(codes, boxes)
    np.testing.assert_allclose(out[0, 10] - out[0, 8], 40)


def test_boxcoder_empty_and_bad_input():
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    e = np.zeros((0, 4), np.float32)
    assert coder.encode(e, e).shape == (0, 4)
    assert coder.decode(np.zeros((0, 8), np.float32), e).shape == (0, 8)
    with pytest.raises(ValueError, match=r"proposals\[1\]"):
        coder.encode(np.ones((2, 4)) * [0, 0, 1, 1], np.array([[0, 0, 1, 1], [5, 5, 5, 9.0]]))
    with pytest.raises(ValueError, match="same length"):
        coder.encode(np.array([[0, 0, 1, 1.0]]), np.array([[0, 0, 1, 1], [0, 0, 2, 2.0]]))
    with pytest.raises(ValueError, match=r"rel_codes .*\(N, 4\*K\).*\(3, 5\)"):
        coder.decode(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"boxes .*\(3, 3\)"):
        coder.decode(np.zeros((3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="weights"):
        ops.BoxCoder((1.0, 1.0, 1.0))


# ---- anchors -------------------------------------------------------------------------------------

@pytest.mark.ex_anchors
def test_cell_anchors_hand_checked():
    # size 32, ratio h/w = 0.5: h = 32 sqrt(.5) = 22.63, w = 32 / sqrt(.5) = 45.25; halves round
    # to 11 and 23 (22.627 -> 23, 11.314 -> 11)
    np.testing.assert_array_equal(ops.generate_anchors((32,), (0.5, 1.0, 2.0)),
                                  [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    # rows are ratio-major: (ratio 1, size 5), (ratio 1, size 7); halves 2.5 -> 2 and 3.5 -> 4
    # (round half to even, like torch.round)
    np.testing.assert_array_equal(ops.generate_anchors((5, 7), (1.0,)),
                                  [[-2, -2, 2, 2], [-4, -4, 4, 4]])
    assert ops.generate_anchors((32,), (0.5,)).dtype == np.float32


@pytest.mark.ex_anchors
def test_anchor_grid_values_and_ordering():
    gen = ops.AnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),))
    assert gen.num_anchors_per_location() == [3]
    (anchors,) = gen((64, 96), [(2, 3)])                       # strides 64 // 2 = 32, 96 // 3 = 32
    assert anchors.shape == (2 * 3 * 3, 4) and anchors.dtype == np.float32
    base = ops.generate_anchors((32,), (0.5, 1.0, 2.0))
    for y in range(2):
        for x in range(3):
            for a in range(3):                                  # (H, W, A) ordering
                np.testing.assert_array_equal(anchors[(y * 3 + x) * 3 + a],
                                              base[a] + [32 * x, 32 * y, 32 * x, 32 * y])
    np.testing.assert_array_equal(anchors[15], [64 - 23, 32 - 11, 64 + 23, 32 + 11])  # y=1, x=2
    np.testing.assert_array_equal(ops.anchors_at(anchors, (2, 3), 1, 2, 3), anchors[15:18])


def test_anchor_strides_floor_division_and_defaults():
    gen = ops.AnchorGenerator()
    assert gen.num_anchors_per_location() == [3] * 5
    feature_sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    assert gen.strides((800, 1216), feature_sizes) == [(4, 4), (8, 8), (16, 16), (32, 32), (61, 64)]
    anchors = gen((800, 1216), feature_sizes)
    assert [len(a) for a in anchors] == [h * w * 3 for h, w in feature_sizes]
    # last level, cell (y=1, x=1): shift (64, 61), base of size 512 ratio 1 is +-256
    np.testing.assert_array_equal(anchors[4][(1 * 19 + 1) * 3 + 1], [64 - 256, 61 - 256, 64 + 256, 61 + 256])
    # cached arrays are read-only, so a caller cannot corrupt the cache
    assert not anchors[0].flags.writeable
    assert gen((800, 1216), feature_sizes)[0] is anchors[0]
    # feature maps may be passed instead of sizes
    fmaps = [np.zeros((1, 2, h, w), np.float32) for h, w in feature_sizes]
    np.testing.assert_array_equal(gen((800, 1216), fmaps)[2], anchors[2])
    # a flat sizes tuple means one size per level (torchvision)
    assert ops.AnchorGenerator((16, 32), (1.0,)).num_anchors_per_location() == [1, 1]


def test_anchor_bad_input():
    gen = ops.AnchorGenerator()
    with pytest.raises(ValueError, match="5"):
        gen((800, 800), [(200, 200)])
    with pytest.raises(ValueError, match="image_size"):
        gen((800,), [(1, 1)] * 5)
    with pytest.raises(ValueError, match=r"feature_sizes\[0\]"):
        gen((8, 8), [(16, 16)] + [(1, 1)] * 4)
    with pytest.raises(ValueError, match="one entry per level"):
        ops.AnchorGenerator(((32,), (64,)), ((1.0,),) * 3)
    with pytest.raises(ValueError, match=r"aspect_ratios\[0\]"):
        ops.AnchorGenerator(((32,),), ((0.0,),))


def test_the_anchors_of_one_location_are_drawn_by_viz():
    """ops gives the anchors of a location (anchors_at); drawing them is minimrcnn.viz's."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from minimrcnn import viz
    assert not hasattr(ops, "draw_anchors")
    gen = ops.AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))
    (anchors,) = gen((128, 128), [(4, 4)])
    cell = ops.anchors_at(anchors, (4, 4), 2, 2, 6)
    np.testing.assert_array_equal(cell, anchors[(2 * 4 + 2) * 6:(2 * 4 + 3) * 6])
    fig, ax = plt.subplots()
    viz.draw_anchors(ax, None, cell, image_size=(128, 128))
    widths = sorted(round(p.get_width(), 3) for p in ax.patches)
    for w in cell[:, 2] - cell[:, 0]:
        assert round(float(w), 3) in widths
    plt.close(fig)


# ---- NMS -----------------------------------------------------------------------------------------

@pytest.mark.ex_nms
def test_nms_hand_checked():
    boxes = np.array([[0, 0, 10, 10],      # 0: best
                      [1, 1, 11, 11],      # 1: IoU with 0 = 81 / 119 = 0.68
                      [20, 20, 30, 30],    # 2: far away
                      [0, 0, 10, 5]],      # 3: IoU with 0 = 0.5 exactly (not > 0.5: kept)
                     np.float32)
    scores = np.array([0.9, 0.8, 0.3, 0.7], np.float32)
    for fn in (ops.nms, ops.nms_reference):
        keep = fn(boxes, scores, 0.5)
        assert keep.dtype == np.int64
        np.testing.assert_array_equal(keep, [0, 3, 2])        # by decreasing score
        np.testing.assert_array_equal(fn(boxes, scores, 0.7), [0, 1, 3, 2])
        np.testing.assert_array_equal(fn(boxes, scores, 0.49), [0, 2])


@pytest.mark.ex_nms
def test_nms_ties_keep_input_order():
    # equal scores are taken in input order (torchvision: stable descending sort)
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [0, 3])
    np.testing.assert_array_equal(ops.nms(boxes[::-1].copy(), scores, 0.5), [0, 1])


@pytest.mark.ex_nms
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_matches_reference_random(dtype):
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        boxes = random_boxes(rng, n, dtype=dtype)
        if trial % 3 == 0:                                         # ties
            scores = rng.integers(0, 4, n).astype(np.float32)
        else:
            scores = rng.random(n).astype(np.float32)
        if trial % 4 == 0:                                         # duplicated boxes
            boxes[n // 2:] = boxes[: n - n // 2]
        if trial % 5 == 0:                                         # integer corners: exact IoUs
            boxes = np.round(boxes)
        thr = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        keep = ops.nms(boxes, scores, thr)
        np.testing.assert_array_equal(keep, ops.nms_reference(boxes, scores, thr))
        # invariants: sorted by score, no two kept boxes overlap by more than thr
        assert np.all(np.diff(scores[keep]) <= 0)
        iou = ops.box_iou(boxes[keep], boxes[keep]).astype(np.float64)
        np.fill_diagonal(iou, 0)
        assert not np.any(iou > thr)


def test_nms_accepts_tensors_and_int_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.int64)
    scores = np.array([1, 2], np.uint8)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [1])
    np.testing.assert_array_equal(ops.nms(mr.Tensor(boxes.astype(np.float32)),
                                          mr.Tensor(scores.astype(np.float32)), 0.5), [1])


def test_nms_empty():
    for fn in (ops.nms, ops.nms_reference):
        keep = fn(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5)
        assert keep.shape == (0,) and keep.dtype == np.int64
    keep = ops.batched_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                           np.zeros((0,), np.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


def test_nms_bad_input():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    with pytest.raises(ValueError, match=r"boxes .*\(N, 4\).*\(2, 3\)"):
        ops.nms(boxes[:, :3], scores, 0.5)
    with pytest.raises(ValueError, match=r"scores .*\(N,\).*\(2, 1\)"):
        ops.nms(boxes, scores[:, None], 0.5)
    with pytest.raises(ValueError, match="2 boxes and 3 scores"):
        ops.nms(boxes, np.zeros(3, np.float32), 0.5)
    bad = boxes.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"boxes\[1\] = \[1.0, 1.0, nan, 11.0\]"):
        ops.nms(bad, scores, 0.5)
    bad = boxes.copy()
    bad[0, 2] = -1                                                  # x2 < x1
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        ops.nms_reference(bad, scores, 0.5)
    with pytest.raises(ValueError, match=r"scores\[1\] = inf"):
        ops.nms(boxes, np.array([0.1, np.inf], np.float32), 0.5)
    with pytest.raises(ValueError, match="iou_threshold .* nan"):
        ops.nms(boxes, scores, float("nan"))
    with pytest.raises(ValueError, match="iou_threshold"):
        ops.nms(boxes, scores, "0.5")
    with pytest.raises(ValueError, match=r"idxs .*\(3,\)"):
        ops.batched_nms(boxes, scores, np.zeros(3, np.int64), 0.5)
    with pytest.raises(TypeError, match="idxs .*float"):
        ops.batched_nms(boxes, scores, np.zeros(2, np.float32), 0.5)
    with pytest.raises(ValueError, match=r"boxes1\[0\]"):
        ops.box_iou(bad, boxes)


def test_cython_kernel_checks_its_permutation():
    ext = pytest.importorskip("minimrcnn._ext.nms")
    boxes = np.zeros((2, 4), np.float32)
    with pytest.raises(IndexError, match="out of range"):
        ext.nms_sorted(boxes, np.array([0, 5], np.int64), 0.5)
    with pytest.raises(ValueError, match="order"):
        ext.nms_sorted(boxes, np.array([0], np.int64), 0.5)


@pytest.mark.ex_nms
def test_batched_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # same category: box 1 and 2 are suppressed by box 0; different categories: nothing is
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, np.array([0, 0, 0, 0]), 0.5), [0, 3])
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, np.array([0, 1, 2, 0]), 0.5), [0, 1, 2, 3])
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, np.array([0, 1, 0, 1]), 0.5), [0, 1, 3])


def _per_class_nms(boxes, scores, idxs, thr):
    """The definition: NMS per category in float64, kept boxes by decreasing score, ties by index."""
    boxes = boxes.astype(np.float64)
    keep = np.sort(np.concatenate([np.nonzero(idxs == c)[0][ops.nms_reference(boxes[idxs == c], scores[idxs == c], thr)]
                                   for c in np.unique(idxs)]))
    return keep[np.argsort(-scores[keep], kind="stable")]


@pytest.mark.ex_nms
@pytest.mark.parametrize("first_category", [0, 2 ** 26], ids=["small_ids", "ids_2^26"])
def test_batched_nms_is_nms_per_category(first_category):
    """float32 boxes with category ids near 2^26: torchvision's coordinate offset collapses the boxes
    (and its answer depended on the number of boxes); ours is NMS per category, at any size."""
    rng = np.random.default_rng(2)
    for n in (50, 400, 1500):                           # torchvision: <= 1000 offset, above per category
        boxes = random_boxes(rng, n, scale=300, dtype=np.float32)
        scores = rng.random(n).astype(np.float32)
        idxs = first_category + rng.integers(0, 5, n)
        expected = _per_class_nms(boxes, scores, idxs, 0.5)
        np.testing.assert_array_equal(ops.batched_nms(boxes, scores, idxs, 0.5), expected)
    # tied scores across categories: lower index first, as torchvision's stable sort
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    np.testing.assert_array_equal(ops.batched_nms(boxes, np.ones(3, np.float32), np.array([1, 0, 1]) + first_category,
                                                  0.5), [0, 1])


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e38])
def test_nms_of_huge_float32_boxes_is_nms_in_float64(scale):
    """Areas of such boxes overflow float32: every IoU was NaN and identical boxes both survived."""
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 60, scale=scale, dtype=np.float64)
    boxes[30:] = boxes[:30]                              # each box twice
    boxes = boxes.astype(np.float32).astype(np.float64)  # float32 values, exactly
    scores = rng.random(60)
    expected = ops.nms_reference(boxes, scores, 0.5)     # float64: no overflow at these sizes
    assert len(expected) <= 30
    for fn in (ops.nms, ops.nms_reference):
        np.testing.assert_array_equal(fn(boxes.astype(np.float32), scores.astype(np.float32), 0.5), expected)
    idxs = np.arange(60) % 3
    np.testing.assert_array_equal(ops.batched_nms(boxes.astype(np.float32), scores.astype(np.float32), idxs, 0.5),
                                  _per_class_nms(boxes, scores, idxs, 0.5))


def test_nms_of_huge_float64_boxes():
    boxes = np.array([[0, 0, 1e300, 1e300], [0, 0, 1e300, 1e300], [0, 0, 1e299, 1e299]])
    np.testing.assert_array_equal(ops.nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5), [0, 2])


def test_batched_nms_negative_coordinates():
    boxes = np.array([[-100, 0, -90, 10], [-100, 0, -90, 10]], np.float32)
    np.testing.assert_array_equal(ops.batched_nms(boxes, np.array([0.9, 0.8], np.float32),
                                                  np.array([0, 1]), 0.5), [0, 1])


def test_gpu_bitmask_greedy_pass_on_host():
    """The GPU path's greedy pass (its host fallback) over a bitmask built here from box_iou."""
    rng = np.random.default_rng(3)
    for n in (1, 63, 64, 65, 200):
        boxes = random_boxes(rng, n, scale=60, dtype=np.float32)
        thr = 0.4
        above = ops.box_iou(boxes, boxes).astype(np.float64) > thr   # boxes are already in score order
        above = np.triu(above, k=1)
        col_blocks = (n + 63) // 64
        padded = np.zeros((n, col_blocks * 64), bool)
        padded[:, :n] = above
        weights = (np.uint64(1) << np.arange(64, dtype=np.uint64))
        mask = (padded.reshape(n, col_blocks, 64) * weights).sum(axis=2, dtype=np.uint64)
        keep = np.nonzero(nms_module._gather_keep_host(mask, n))[0]
        np.testing.assert_array_equal(keep, ops.nms(boxes, -np.arange(n, dtype=np.float32), thr))


def test_cuda_source_is_found():
    from minimrcnn import _ext
    path = _ext.cuda_source_path("nms")
    assert path.is_file() and "nms_gather_keep" in path.read_text()


def test_nms_falls_back_to_reference_without_the_extension(monkeypatch):
    import minimrcnn._ext
    monkeypatch.setitem(sys.modules, "minimrcnn._ext.nms", None)      # import now fails
    monkeypatch.delattr(minimrcnn._ext, "nms", raising=False)
    minimrcnn._ext.cpu_module.cache_clear()                           # the loader asks again
    rng = np.random.default_rng(4)
    boxes, scores = random_boxes(rng, 100), rng.random(100).astype(np.float32)
    try:
        with pytest.warns(RuntimeWarning, match="not built"):
            keep = ops.nms(boxes, scores, 0.5)
    finally:
        minimrcnn._ext.cpu_module.cache_clear()                       # later tests: the kernel
    np.testing.assert_array_equal(keep, ops.nms_reference(boxes, scores, 0.5))
