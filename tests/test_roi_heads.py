"""RoI heads: pooler, box / mask / keypoint heads, their losses, post-processing and mask pasting.

Everything is tiny (a few channels, a few RoIs) so that the whole file runs in seconds.
"""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import ops
from minimrcnn.config import get_config
from minimrcnn.modeling.box_head import FastRCNNPredictor, Res5Head, TwoMLPHead, fastrcnn_loss
from minimrcnn.functional.resize import resize_bicubic
from minimrcnn.modeling.keypoint_head import (KeypointRCNNHeads, KeypointRCNNPredictor, heatmaps_to_keypoints,
                                              keypointrcnn_loss, keypoints_to_heatmap)
from minimrcnn.modeling.mask_head import MaskMLPHead, MaskMLPPredictor, MaskRCNNHeads, MaskRCNNPredictor
from minimrcnn.modeling.mask_loss import maskrcnn_inference, maskrcnn_loss
from minimrcnn.modeling.poolers import LevelMapper, MultiScaleRoIPooler
from minimrcnn.modeling.roi_heads import C4RoIHeads, RoIHeads
from minimrcnn.models import build_res5_head, build_roi_heads
from minimrcnn.ops import paste_masks_in_image

IMAGE = (64, 80)                                   # (h, w)


def _pyramid(rng, C=3, n=1, levels=4, shape=IMAGE, dtype=np.float32):
    """FPN-like features "0".."3" at strides 4..32 (plus an unused "pool")."""
    feats = OrderedDict()
    for i in range(levels):
        s = 2 ** (i + 2)
        feats[str(i)] = mr.Tensor(rng.standard_normal((n, C, shape[0] // s, shape[1] // s)).astype(dtype))
    feats["pool"] = mr.Tensor(np.zeros((n, C, 1, 2), dtype))
    return feats


def _square(cx, cy, side):
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


# ---- pooler --------------------------------------------------------------------------------------

def test_level_mapper_canonical_sizes():
    mapper = LevelMapper(2, 5)
    boxes = np.array([_square(500, 500, s) for s in (112, 224, 448, 10, 5000, 111.9)], np.float32)
    levels = mapper([boxes[:3], boxes[3:]]) + 2
    assert levels.tolist() == [3, 4, 5, 2, 5, 2]


def test_pooler_reads_the_mapped_level_in_input_order():
    # every level is a constant map equal to its level number: the output tells the level used
    feats = OrderedDict((str(k - 2), mr.Tensor(np.full((2, 1, 512 // 2 ** k, 512 // 2 ** k), float(k), np.float32)))
                        for k in (2, 3, 4, 5))
    pooler = MultiScaleRoIPooler(["0", "1", "2", "3"], 2, 2)
    b0 = np.array([_square(256, 256, 448), _square(100, 100, 30), _square(300, 200, 224)], np.float32)
    b1 = np.array([_square(200, 256, 112)], np.float32)
    out = pooler(feats, [b0, b1], [(512, 512), (512, 500)])
    assert out.shape == (4, 1, 2, 2)
    np.testing.assert_allclose(out.data[:, 0, 0, 0], [5, 2, 4, 3])
    assert pooler.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]


def test_pooler_single_level_infers_the_scale_and_matches_roi_align():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)      # stride 16 of a 64 x 80 image
    boxes = np.array([[3.3, 5.1, 40.7, 30.2], [0, 0, 63, 50]], np.float32)
    pooler = MultiScaleRoIPooler(["0"], 3, 2)
    out = pooler({"0": mr.Tensor(x)}, [boxes], [IMAGE])
    assert pooler.scales == [1 / 16]
    rois = np.concatenate([np.zeros((2, 1), np.float32), boxes], axis=1)
    np.testing.assert_array_equal(out.data, ops.roi_align(x, rois, 3, 1 / 16, 2).data)


def test_pooler_methods_differ():
    rng = np.random.default_rng(1)
    feats = _pyramid(rng)
    boxes = [np.array([[3.3, 5.1, 40.7, 30.2], [10.6, 2.2, 70.1, 61.7]], np.float32)]
    outs = {m: MultiScaleRoIPooler(["0", "1", "2", "3"], 3, 2, method=m)(feats, boxes, [IMAGE]).data
            for m in ("roi_align", "roi_pool", "roi_warp")}
    for a, b in (("roi_align", "roi_pool"), ("roi_align", "roi_warp"), ("roi_pool", "roi_warp")):
        assert np.abs(outs[a] - outs[b]).max() > 1e-3, (a, b)


def test_pooler_gradcheck_two_levels():
    # a 32 x 32 image, maps at strides 4 and 8 (levels 2, 3), s0 = 16, k0 = 3: RoIs 0 and 2 read
    # level 3, RoI 1 level 2, so the per-level results must be put back in input order
    boxes = [np.array([[2.5, 3.5, 20.5, 22.1], [1.0, 1.0, 6.0, 7.0], [4.0, 10.0, 28.0, 30.0]])]
    assert LevelMapper(2, 3, 16, 3)(boxes).tolist() == [1, 0, 1]
    pooler = MultiScaleRoIPooler(["0", "1"], 2, 2, canonical_scale=16, canonical_level=3)
    rng = np.random.default_rng(2)
    a = mr.Tensor(rng.standard_normal((1, 2, 8, 8)), requires_grad=True)
    b = mr.Tensor(rng.standard_normal((1, 2, 4, 4)), requires_grad=True)
    mr.gradcheck(lambda a, b: pooler({"0": a, "1": b}, boxes, [(32, 32)]), [a, b])


def test_pooler_errors_name_the_problem():
    pooler = MultiScaleRoIPooler(["0", "1"], 2, 2)
    with pytest.raises(KeyError, match="missing"):
        pooler({"0": mr.Tensor(np.zeros((1, 1, 4, 4), np.float32))}, [np.zeros((0, 4), np.float32)], [(16, 16)])
    with pytest.raises(ValueError, match="method"):
        MultiScaleRoIPooler(["0"], 2, 2, method="roi_max")


# ---- head shapes and parameter names ---------------------------------------------------------------

def test_box_heads_shapes_and_names():
    x = mr.Tensor(np.random.default_rng(0).standard_normal((5, 4, 7, 7)).astype(np.float32))
    head = TwoMLPHead(4 * 49, 16)
    pred = FastRCNNPredictor(16, 3)
    logits, deltas = pred(head(x))
    assert logits.shape == (5, 3) and deltas.shape == (5, 12)
    assert list(head.state_dict()) == ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"]
    assert list(pred.state_dict()) == ["cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias"]


def test_res5_head_shape():
    cfg = get_config("classroom_c4", classroom_widths=(8, 8, 8, 8), norm="frozen_bn")
    head = Res5Head(build_res5_head(cfg))
    x = mr.Tensor(np.random.default_rng(0).standard_normal((3, head.in_channels, 7, 7)).astype(np.float32))
    assert head.res5_features(x).shape == (3, head.out_channels, 7, 7)
    assert head(x).shape == (3, head.out_channels)
    assert next(iter(head.state_dict())).startswith("res5.0.")


@pytest.mark.parametrize("num_classes", [4, 1])           # class-specific, class-agnostic
def test_mask_fcn_head_shapes_and_names(num_classes):
    x = mr.Tensor(np.random.default_rng(0).standard_normal((2, 3, 14, 14)).astype(np.float32))
    head = MaskRCNNHeads(3, (5, 5), 1)
    pred = MaskRCNNPredictor(5, 6, num_classes)
    assert pred(head(x)).shape == (2, num_classes, 28, 28)
    assert list(head.state_dict()) == ["0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias"]
    assert list(pred.state_dict()) == ["conv5_mask.weight", "conv5_mask.bias",
                                       "mask_fcn_logits.weight", "mask_fcn_logits.bias"]
    # torchvision < 0.13 names load too
    old = {k.replace("0.0.", "mask_fcn1.").replace("1.0.", "mask_fcn2."): v for k, v in head.state_dict().items()}
    MaskRCNNHeads(3, (5, 5), 1).load_state_dict(old)


def test_mask_mlp_head_shapes():
    x = mr.Tensor(np.random.default_rng(0).standard_normal((2, 3, 14, 14)).astype(np.float32))
    head = MaskMLPHead(3, 14, (8, 8))
    pred = MaskMLPPredictor(8, 4, 28)
    assert pred(head(x)).shape == (2, 4, 28, 28)
    assert list(head.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_keypoint_head_shapes_and_names():
    x = mr.Tensor(np.random.default_rng(0).standard_normal((2, 3, 14, 14)).astype(np.float32))
    head = KeypointRCNNHeads(3, (4, 4, 4))
    pred = KeypointRCNNPredictor(4, 5)
    assert pred(head(x)).shape == (2, 5, 56, 56)
    assert [k for k in head.state_dict() if k.endswith("weight")] == ["0.weight", "2.weight", "4.weight"]
    assert list(pred.state_dict()) == ["kps_score_lowres.weight", "kps_score_lowres.bias"]


# ---- losses on hand-made cases ----------------------------------------------------------------------

def test_fastrcnn_loss_by_hand():
    logits = mr.Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    deltas = np.zeros((2, 12), np.float32)
    deltas[0, 8:12] = [0.05, 2.0, 0.0, 0.0]      # deltas of class 2 for RoI 0 (a positive of class 2)
    deltas[0, 4:8] = 100.0                         # other classes' deltas are ignored
    box_regression = mr.Tensor(deltas, requires_grad=True)
    labels = [np.array([2]), np.array([0])]
    targets = [np.array([[0.0, 1.0, 0.0, 0.0]], np.float32), np.array([[9.0, 9.0, 9.0, 9.0]], np.float32)]
    cls_loss, box_loss = fastrcnn_loss(logits, box_regression, labels, targets)
    assert math.isclose(cls_loss.item(), math.log(3), rel_tol=1e-6)
    # smooth L1 (beta 1/9): 0.5 * 0.05^2 * 9 (inside) + (1 - 0.5/9) (outside), over 2 sampled RoIs
    expected = (0.5 * 0.05 ** 2 * 9 + (1.0 - 0.5 / 9)) / 2
    assert math.isclose(box_loss.item(), expected, rel_tol=1e-5)
    (cls_loss + box_loss).backward()
    assert np.count_nonzero(box_regression.grad) == 2      # only class 2's dx, dy of RoI 0


def _mask_case(logits):
    """One image, one gt mask covering the left half of the box [0, 0, 8, 8] (value 1 at x < 4)."""
    gt = np.zeros((1, 8, 8), np.uint8)
    gt[0, :, :4] = 1
    proposals = [np.array([[0, 0, 8, 8]], np.float32)]
    return maskrcnn_loss(mr.Tensor(logits), proposals, [gt], [np.array([2])], [np.array([0])]), gt


@pytest.mark.ex_mask_loss
def test_mask_loss_sigmoid_uses_the_gt_class_channel_only():
    logits = np.full((1, 3, 4, 4), 50.0, np.float32)
    logits[0, 2] = 2.0
    loss, _ = _mask_case(logits)
    # the 4x4 targets are RoIAlign (aligned=False) of the half mask: pixel centres sit at integer
    # coordinates, so the bins' samples x = 0.5, 1.5 | 2.5, 3.5 | 4.5, 5.5 | ... read 1, 1 | 1, 0.5 | 0, 0
    # and the target columns are 1, 0.75, 0, 0. BCE(z=2, t) = softplus(2) - 2 t.
    softplus = 2.0 + math.log1p(math.exp(-2.0))
    expected = (softplus - 2.0 + softplus - 1.5 + 2 * softplus) / 4
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


@pytest.mark.ex_mask_loss
def test_mask_loss_softmax_and_agnostic():
    gt = np.zeros((1, 8, 8), np.uint8)
    gt[0, :, :4] = 1
    proposals = [np.array([[0, 0, 8, 8]], np.float32)]
    args = (proposals, [gt], [np.array([2])], [np.array([0])])
    # softmax: all-zero logits over 3 classes -> log 3 at every pixel
    loss = maskrcnn_loss(mr.Tensor(np.zeros((1, 3, 4, 4), np.float32)), *args, loss="softmax")
    assert math.isclose(loss.item(), math.log(3), rel_tol=1e-6)
    # softmax: pixels inside want class 2, outside background 0
    logits = np.zeros((1, 3, 4, 4), np.float32)
    logits[0, 2, :, :2] = 5.0
    logits[0, 0, :, 2:] = 5.0
    loss = maskrcnn_loss(mr.Tensor(logits), *args, loss="softmax")
    assert math.isclose(loss.item(), math.log(1 + 2 * math.exp(-5)), rel_tol=1e-5)
    # class-agnostic: the single channel is used whatever the class
    logits = np.full((1, 1, 4, 4), 0.0, np.float32)
    loss = maskrcnn_loss(mr.Tensor(logits), *args, class_agnostic=True)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    with pytest.raises(ValueError, match="softmax"):
        maskrcnn_loss(mr.Tensor(logits), *args, loss="softmax", class_agnostic=True)


def test_mask_inference_picks_the_predicted_class():
    logits = np.zeros((2, 3, 2, 2), np.float32)
    logits[0, 1] = 1.0
    logits[1, 2] = -1.0
    probs = maskrcnn_inference(mr.Tensor(logits), [np.array([1]), np.array([2])])
    assert [p.shape for p in probs] == [(1, 1, 2, 2), (1, 1, 2, 2)]
    np.testing.assert_allclose(probs[0], 1 / (1 + math.exp(-1)), rtol=1e-6)
    np.testing.assert_allclose(probs[1], 1 / (1 + math.exp(1)), rtol=1e-6)
    soft = maskrcnn_inference(logits, [np.array([1, 2])], loss="softmax")[0]
    np.testing.assert_allclose(soft[0], math.e / (math.e + 2), rtol=1e-6)


@pytest.mark.ex_keypoint_targets
def test_keypoints_to_heatmap_by_hand():
    rois = np.array([[0, 0, 56, 56], [10, 20, 38, 48]], np.float32)
    kps = np.array([[[10.5, 20.2, 2], [56, 56, 2], [3, 4, 0]],           # in; on the far edge; invisible
                    [[9, 30, 1], [24, 34, 1], [38, 48, 1]]], np.float32)  # outside; in (scale 2); edge
    heatmaps, valid = keypoints_to_heatmap(kps, rois, 56)
    assert valid.tolist() == [[1, 1, 0], [0, 1, 1]]
    assert heatmaps.tolist() == [[20 * 56 + 10, 55 * 56 + 55, 0], [0, 28 * 56 + 28, 55 * 56 + 55]]


@pytest.mark.ex_keypoint_targets
def test_keypoint_loss_by_hand():
    logits = np.zeros((1, 2, 56, 56), np.float32)
    gt = np.array([[[10.5, 20.2, 2], [3, 4, 0]]], np.float32)        # second keypoint invisible
    loss = keypointrcnn_loss(mr.Tensor(logits), [np.array([[0, 0, 56, 56]], np.float32)], [gt], [np.array([0])])
    assert math.isclose(loss.item(), math.log(56 * 56), rel_tol=1e-6)
    logits[0, 0, 20, 10] = 10.0
    loss = keypointrcnn_loss(mr.Tensor(logits), [np.array([[0, 0, 56, 56]], np.float32)], [gt], [np.array([0])])
    assert math.isclose(loss.item(), math.log(math.exp(10) + 56 * 56 - 1) - 10, rel_tol=1e-5)


def test_bicubic_resize_identity_and_constant():
    x = np.random.default_rng(0).standard_normal((3, 9, 7)).astype(np.float32)
    np.testing.assert_allclose(resize_bicubic(x, (9, 7)), x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resize_bicubic(np.full((2, 5, 5), 3.0, np.float32), (13, 4)), 3.0, rtol=1e-6)


def test_heatmaps_to_keypoints_by_hand():
    maps = np.zeros((1, 2, 56, 56), np.float32)
    maps[0, 0, 7, 5] = 4.0
    maps[0, 1, 50, 40] = 3.0
    xy, scores = heatmaps_to_keypoints(maps, np.array([[10, 20, 66, 76]], np.float32))   # 56 x 56: no resize
    np.testing.assert_allclose(xy[0], [[15.5, 27.5, 1], [50.5, 70.5, 1]])
    np.testing.assert_allclose(scores[0], [4.0, 3.0])


# ---- paste masks -------------------------------------------------------------------------------------

def test_paste_masks_by_hand():
    # a 2x2 mask of ones, box [2, 2, 6, 6]: padded to 4x4 (zero border), box grows x2 about its
    # centre to [0, 0, 8, 8] (9 x 9 pixels), bilinear 4 -> 9 gives the profile p below
    masks = np.ones((1, 1, 2, 2), np.float32)
    out = paste_masks_in_image(masks, np.array([[2, 2, 6, 6]], np.float32), (10, 10))
    p = np.array([0, 1 / 6, 11 / 18, 1, 1, 1, 11 / 18, 1 / 6, 0])
    expected = np.zeros((10, 10))
    expected[:9, :9] = np.outer(p, p)
    assert out.shape == (1, 1, 10, 10)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)
    # the same box clipped by a smaller image keeps the top-left part
    out = paste_masks_in_image(masks, np.array([[2, 2, 6, 6]], np.float32), (5, 7))
    np.testing.assert_allclose(out[0, 0], expected[:5, :7], atol=1e-6)
    assert paste_masks_in_image(np.zeros((0, 1, 28, 28), np.float32), np.zeros((0, 4), np.float32),
                                (5, 7)).shape == (0, 1, 5, 7)


# ---- RoIHeads: training and inference -------------------------------------------------------------------

def _tiny_cfg(**kw):
    base = dict(fpn_channels=4, box_head_dim=8, mask_head_layers=(4, 4), keypoint_head_layers=(4, 4),
                num_keypoints=3, box_batch_size_per_image=16, num_classes=3)
    base.update(kw)
    return get_config("classroom_fpn", **base)


def _targets(rng, with_keypoints=True):
    gt_boxes = [np.array([[4, 6, 40, 50], [30, 10, 76, 60]], np.float32), np.array([[10, 10, 30, 26]], np.float32)]
    targets = []
    for b in gt_boxes:
        masks = np.zeros((len(b),) + IMAGE, np.uint8)
        for j, (x1, y1, x2, y2) in enumerate(b.astype(int)):
            masks[j, y1:y2, x1:x2] = 1
        t = dict(boxes=b, labels=np.arange(1, len(b) + 1, dtype=np.int64), masks=masks)
        if with_keypoints:
            xy = rng.uniform(b[:, None, :2], b[:, None, 2:], (len(b), 3, 2))
            t["keypoints"] = np.concatenate([xy, np.ones((len(b), 3, 1))], axis=2).astype(np.float32)
        targets.append(t)
    return targets


def _proposals(rng, n=12):
    out = []
    for _ in range(2):
        xy = rng.uniform(0, 50, (n, 2))
        out.append(np.concatenate([xy, xy + rng.uniform(6, 30, (n, 2))], axis=1).astype(np.float32))
    return out


@pytest.mark.parametrize("overrides", [dict(keypoint_on=True), dict(mask_head="mlp"),
                                       dict(mask_loss="softmax", pooler="roi_pool"),
                                       dict(mask_class_agnostic=True, pooler="roi_warp")],
                         ids=["fcn+keypoints", "mlp", "softmax", "agnostic"])
def test_training_losses_reach_every_parameter(overrides):
    rng = np.random.default_rng(0)
    cfg = _tiny_cfg(**overrides)
    heads = build_roi_heads(cfg, cfg.fpn_channels)
    feats = _pyramid(rng, C=cfg.fpn_channels, n=2)
    heads.train()
    result, losses = heads(feats, _proposals(rng), [IMAGE, (60, 70)], _targets(rng, cfg.keypoint_on))
    expected = {"loss_classifier", "loss_box_reg", "loss_mask"} | ({"loss_keypoint"} if cfg.keypoint_on else set())
    assert result == [] and set(losses) == expected
    assert all(np.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in heads.named_parameters():
        assert p.grad is not None and np.abs(p.grad).max() > 0, name


def test_proposals_inside_crowd_regions_are_not_negatives():
    heads = build_roi_heads(_tiny_cfg(), 4)
    gt, labels_gt = np.array([[4, 6, 40, 50]], np.float32), np.array([2])
    proposals = np.array([[4, 6, 40, 50],            # the gt itself: positive, inside the crowd too
                          [50, 4, 60, 14],           # inside the crowd box: not a negative
                          [52, 40, 78, 62],          # 10% inside: still a negative
                          [5, 55, 20, 62]],          # outside: a negative
                         np.float32)
    crowd = np.array([[0, 0, 70, 40]], np.float32)
    matched, labels = heads.assign_targets_to_proposals([proposals], [gt], [labels_gt], [crowd])
    np.testing.assert_array_equal(labels[0], [2, -1, 0, 0])
    _, labels = heads.assign_targets_to_proposals([proposals], [gt], [labels_gt])
    np.testing.assert_array_equal(labels[0], [2, 0, 0, 0])
    # a background image with a crowd region
    _, labels = heads.assign_targets_to_proposals([proposals], [np.zeros((0, 4), np.float32)],
                                                  [np.zeros((0,), np.int64)], [crowd])
    np.testing.assert_array_equal(labels[0], [-1, -1, 0, 0])


def test_c4_mask_branch_shares_res5():
    rng = np.random.default_rng(0)
    cfg = get_config("classroom_c4", classroom_widths=(8, 8, 8, 8), norm="frozen_bn", num_classes=3,
                     mask_head_layers=(4,), box_batch_size_per_image=8)
    heads = build_roi_heads(cfg, 32)
    assert isinstance(heads, C4RoIHeads) and heads.mask_head is None and heads.mask_roi_pool is None
    assert heads.has_mask()
    feats = OrderedDict([("0", mr.Tensor(rng.standard_normal((2, 32, 4, 5)).astype(np.float32)))])
    heads.train()
    _, losses = heads(feats, _proposals(rng, 6), [IMAGE, IMAGE], _targets(rng, False))
    losses["loss_mask"].backward()          # the mask loss alone trains res5 through the shared features
    assert np.abs(heads.mask_predictor.conv5_mask.weight.grad).max() > 0
    assert np.abs(heads.box_head.res5[0].conv1.weight.grad).max() > 0
    assert heads.box_predictor.cls_score.weight.grad is None
    heads.eval()
    result, _ = heads(feats, _proposals(rng, 6), [IMAGE, IMAGE])
    assert result[0]["masks"].shape[1:] == (1, 14, 14)            # Figure 4 left: 14x14 masks


def test_postprocess_shapes_and_limits():
    rng = np.random.default_rng(3)
    heads = build_roi_heads(_tiny_cfg(box_detections_per_img=7, keypoint_on=True), 4)
    heads.eval()
    result, losses = heads(_pyramid(rng, C=4, n=2), _proposals(rng, 20), [IMAGE, (60, 70)])
    assert losses == {}
    for r, (h, w) in zip(result, [IMAGE, (60, 70)]):
        n = len(r["boxes"])
        assert 0 < n <= 7
        assert r["boxes"].shape == (n, 4) and r["labels"].dtype == np.int64
        assert ((r["labels"] >= 1) & (r["labels"] <= 2)).all()
        assert (r["scores"] > 0.05).all() and (np.diff(r["scores"]) <= 0).all()
        assert (r["boxes"] >= 0).all() and (r["boxes"][:, 2] <= w).all() and (r["boxes"][:, 3] <= h).all()
        assert r["masks"].shape == (n, 1, 28, 28) and 0 <= r["masks"].min() and r["masks"].max() <= 1
        assert r["keypoints"].shape == (n, 3, 3) and r["keypoints_scores"].shape == (n, 3)


def test_postprocess_by_hand():
    heads = RoIHeads(None, None, None, 0.5, 0.5, 8, 0.25, None, 0.3, 0.5, 100)
    # 2 proposals, 3 classes; zero deltas keep the proposals
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.1, 0.4]], np.float32))
    proposals = [np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)]
    boxes, scores, labels = heads.postprocess_detections(logits, np.zeros((2, 12), np.float32), proposals, [(20, 20)])
    # class 1 at proposal 0 (0.6) and class 2 at proposal 1 (0.4): different classes never suppress;
    # class 2 at proposal 0 (0.3) is not > 0.3
    np.testing.assert_allclose(scores[0], [0.6, 0.4], rtol=1e-5)
    assert labels[0].tolist() == [1, 2]
    np.testing.assert_allclose(boxes[0], proposals[0])


def test_training_with_a_background_image_and_no_positives():
    rng = np.random.default_rng(4)
    heads = build_roi_heads(_tiny_cfg(), 4)
    heads.train()
    targets = [dict(boxes=np.zeros((0, 4), np.float32), labels=np.zeros((0,), np.int64),
                    masks=np.zeros((0,) + IMAGE, np.uint8))]
    feats = _pyramid(rng, C=4, n=1)
    _, losses = heads(feats, _proposals(rng)[:1], [IMAGE], targets)
    assert losses["loss_mask"].item() == 0 and losses["loss_box_reg"].item() == 0
    sum(losses.values()).backward()


def test_targets_are_checked():
    heads = build_roi_heads(_tiny_cfg(), 4)
    heads.train()
    feats = _pyramid(np.random.default_rng(0), C=4, n=1)
    with pytest.raises(ValueError, match="masks"):
        heads(feats, [np.zeros((1, 4), np.float32)], [IMAGE], [dict(boxes=np.zeros((0, 4), np.float32),
                                                                     labels=np.zeros((0,), np.int64))])


def test_inference_without_proposals_gives_empty_results():
    heads = build_roi_heads(_tiny_cfg(keypoint_on=True), 4)
    heads.eval()
    empty = np.zeros((0, 4), np.float32)
    result, _ = heads(_pyramid(np.random.default_rng(5), C=4, n=2), [empty, empty], [IMAGE, IMAGE])
    shapes = {k: v.shape for k, v in result[1].items()}
    assert shapes == {"boxes": (0, 4), "labels": (0,), "scores": (0,), "masks": (0, 1, 28, 28),
                      "keypoints": (0, 3, 3), "keypoints_scores": (0, 3)}
