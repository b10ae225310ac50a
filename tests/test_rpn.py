"""The RPN and its helpers: Matcher, BalancedPositiveNegativeSampler, ImageList, RPNHead and
RegionProposalNetwork (proposals, targets, losses, a few training steps)."""
from collections import OrderedDict

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import nn, ops
from minimrcnn.modeling.image_list import ImageList
from minimrcnn.modeling.matcher import BalancedPositiveNegativeSampler, Matcher
from minimrcnn.modeling.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers

BELOW, BETWEEN = Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS


# ---- Matcher ---------------------------------------------------------------------------------

def _reference_match(quality, high, low, allow_low_quality_matches):
    """The matching rule written as loops, for comparison."""
    num_gt, num_pred = quality.shape
    best_gt = [int(np.argmax(quality[:, n])) for n in range(num_pred)]
    matches = []
    for n in range(num_pred):
        v = quality[best_gt[n], n]
        matches.append(best_gt[n] if v >= high else BETWEEN if v >= low else BELOW)
    if allow_low_quality_matches:
        for m in range(num_gt):
            for n in range(num_pred):
                if quality[m, n] == quality[m].max():
                    matches[n] = best_gt[n]
    return np.array(matches, dtype=np.int64)


def test_matcher_thresholds():
    quality = np.array([[0.8, 0.7, 0.69, 0.3, 0.29, 0.0],
                        [0.1, 0.2, 0.10, 0.1, 0.10, 0.0]], np.float32)
    matched_idxs = Matcher(0.7, 0.3)(quality)
    assert matched_idxs.dtype == np.int64
    # >= high: matched; [low, high): between; < low: below (0.7 and 0.3 are float32 here)
    np.testing.assert_array_equal(matched_idxs, [0, 0, BETWEEN, BETWEEN, BELOW, BELOW])


def test_matcher_picks_the_best_gt_lowest_index_on_ties():
    quality = np.array([[0.75, 0.9, 0.8],
                        [0.95, 0.9, 0.1]])
    np.testing.assert_array_equal(Matcher(0.7, 0.3)(quality), [1, 0, 0])


def test_matcher_low_quality_matches_restore_every_tied_best_prediction():
    quality = np.array([[0.9, 0.1, 0.0, 0.0, 0.0],     # gt 0: a good match (pred 0)
                        [0.0, 0.4, 0.4, 0.2, 0.0],     # gt 1: best 0.4, tied at preds 1 and 2
                        [0.0, 0.0, 0.5, 0.0, 0.1]])    # gt 2: best 0.5 at pred 2
    without = Matcher(0.7, 0.3)(quality)
    np.testing.assert_array_equal(without, [0, BETWEEN, BETWEEN, BELOW, BELOW])
    with_low = Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality)
    # pred 1 goes to gt 1; pred 2 is gt 1's tie too, but its own best gt is gt 2 (torchvision)
    np.testing.assert_array_equal(with_low, [0, 1, 2, BELOW, BELOW])


@pytest.mark.parametrize("allow", [False, True])
def test_matcher_agrees_with_the_loop_reference(allow):
    rng = np.random.default_rng(0)
    for _ in range(20):
        quality = rng.integers(0, 10, size=(rng.integers(1, 5), rng.integers(1, 30))) / 10.0  # many ties
        np.testing.assert_array_equal(Matcher(0.7, 0.3, allow)(quality),
                                      _reference_match(quality, 0.7, 0.3, allow))


def test_matcher_errors():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        Matcher(0.7, 0.3)(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="No proposal boxes"):
        Matcher(0.7, 0.3)(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)


# ---- sampler ---------------------------------------------------------------------------------

def _labels(num_pos, num_neg, num_ignored, seed=0):
    labels = np.array([1.0] * num_pos + [0.0] * num_neg + [-1.0] * num_ignored, np.float32)
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("num_pos, num_neg, expected_pos, expected_neg", [
    (300, 2000, 128, 128),    # enough of both: half positive
    (10, 2000, 10, 246),      # few positives: negatives fill the batch
    (300, 20, 128, 20),       # few negatives: no more positives than the fraction allows
    (0, 50, 0, 50),
])
def test_sampler_counts(num_pos, num_neg, expected_pos, expected_neg):
    labels = _labels(num_pos, num_neg, 100)
    pos, neg = BalancedPositiveNegativeSampler(256, 0.5, generator=0)([labels])
    assert pos[0].dtype == bool and pos[0].shape == labels.shape
    assert pos[0].sum() == expected_pos and neg[0].sum() == expected_neg
    assert (labels[pos[0]] == 1).all() and (labels[neg[0]] == 0).all()


def test_sampler_positive_labels_are_any_class_and_fraction_floors():
    labels = np.array([3, 1, 2, 0, 0, 0, 0, -1] * 10)        # RoI heads: class labels >= 1
    pos, neg = BalancedPositiveNegativeSampler(16, 0.25, generator=1)([labels, labels])
    for p, n in zip(pos, neg):
        assert p.sum() == 4 and n.sum() == 12 and not (p & n).any()


def test_sampler_seeding():
    labels = [_labels(100, 1000, 10, seed=1), _labels(50, 500, 0, seed=2)]
    a = BalancedPositiveNegativeSampler(64, 0.5, generator=np.random.default_rng(7))(labels)
    b = BalancedPositiveNegativeSampler(64, 0.5, generator=7)(labels)
    c = BalancedPositiveNegativeSampler(64, 0.5, generator=8)(labels)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(x, y)
    assert any((x != y).any() for x, y in zip(a[0] + a[1], c[0] + c[1]))
    # the default draws from nn.init's global generator, which manual_seed resets
    sampler = BalancedPositiveNegativeSampler(64, 0.5)
    nn.init.manual_seed(5)
    d = sampler(labels)
    nn.init.manual_seed(5)
    e = sampler(labels)
    for x, y in zip(d[0] + d[1], e[0] + e[1]):
        np.testing.assert_array_equal(x, y)


def test_sampler_is_uniform():
    labels = _labels(20, 20, 0)
    sampler = BalancedPositiveNegativeSampler(10, 0.5, generator=0)
    counts = sum(sampler([labels])[0][0].astype(int) for _ in range(400))
    # each positive is picked with probability 5/20: 100 of 400 draws
    assert counts[labels == 1].min() > 60 and counts[labels == 1].max() < 140


# ---- ImageList, RPNHead ----------------------------------------------------------------------

def test_image_list_checks_sizes():
    images = ImageList(mr.Tensor(np.zeros((2, 3, 32, 48), np.float32)), [(32, 40), (20, 48)])
    assert images.image_sizes == [(32, 40), (20, 48)] and len(images) == 2
    with pytest.raises(ValueError, match="image_sizes"):
        ImageList(mr.Tensor(np.zeros((2, 3, 32, 48), np.float32)), [(32, 40)])
    with pytest.raises(ValueError, match=r"image_sizes\[1\]"):
        ImageList(mr.Tensor(np.zeros((2, 3, 32, 48), np.float32)), [(32, 40), (33, 48)])


def test_rpn_head_shapes_names_and_init():
    nn.init.manual_seed(0)
    head = RPNHead(16, 3)
    assert list(head.state_dict()) == ["conv.0.0.weight", "conv.0.0.bias", "cls_logits.weight",
                                       "cls_logits.bias", "bbox_pred.weight", "bbox_pred.bias"]
    assert head.conv[0][0].weight.shape == (16, 16, 3, 3)
    for name, p in head.named_parameters():
        if name.endswith("bias"):
            assert (p.data == 0).all()
        else:
            assert 0.008 < p.data.std() < 0.012, name
    feats = [mr.Tensor(np.ones((2, 16, 8, 10), np.float32)), mr.Tensor(np.ones((2, 16, 4, 5), np.float32))]
    logits, bbox_reg = head(feats)
    assert [t.shape for t in logits] == [(2, 3, 8, 10), (2, 3, 4, 5)]
    assert [t.shape for t in bbox_reg] == [(2, 12, 8, 10), (2, 12, 4, 5)]
    assert len(RPNHead(16, 3, conv_depth=2).conv) == 2


def test_rpn_head_loads_the_old_single_conv_key():
    head = RPNHead(4, 3)
    sd = head.state_dict()
    old = OrderedDict((k.replace("conv.0.0.", "conv."), v + 1) for k, v in sd.items())
    head.load_state_dict(old)
    np.testing.assert_array_equal(head.conv[0][0].weight.data, sd["conv.0.0.weight"] + 1)


def test_concat_box_prediction_layers_orders_rows_like_the_anchors():
    # level 0: N=2, A=2, H=1, W=3; value encodes (n, a, h, w) and delta j
    n, a, h, w = np.meshgrid(np.arange(2), np.arange(2), np.arange(1), np.arange(3), indexing="ij")
    cls = mr.Tensor((1000 * n + 100 * a + 10 * h + w).astype(np.float32))              # (2, 2, 1, 3)
    reg = mr.Tensor(np.repeat(cls.data[:, :, None], 4, axis=2).reshape(2, 8, 1, 3)
                    + np.tile(np.arange(4, dtype=np.float32), 2)[None, :, None, None] * 0.1)
    box_cls, box_regression = concat_box_prediction_layers([cls], [reg])
    assert box_cls.shape == (12, 1) and box_regression.shape == (12, 4)
    # row n*T + (h*W + w)*A + a
    expected = [1000 * n_ + 100 * a_ + w_ for n_ in range(2) for w_ in range(3) for a_ in range(2)]
    np.testing.assert_array_equal(box_cls.data[:, 0], expected)
    np.testing.assert_allclose(box_regression.data, np.array(expected)[:, None] + [0, 0.1, 0.2, 0.3], rtol=1e-6)


# ---- RegionProposalNetwork -------------------------------------------------------------------

def _rpn(channels=8, pre=dict(training=300, testing=200), post=dict(training=60, testing=40), **kw):
    generator = ops.AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    return RegionProposalNetwork(generator, RPNHead(channels, 3), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
                                 batch_size_per_image=64, positive_fraction=0.5, pre_nms_top_n=pre,
                                 post_nms_top_n=post, nms_thresh=0.7, **kw)


def _inputs(seed=0, channels=8, image_sizes=((64, 96), (50, 80))):
    rng = np.random.default_rng(seed)
    images = ImageList(mr.Tensor(np.zeros((len(image_sizes), 3, 64, 96), np.float32)), list(image_sizes))
    feats = OrderedDict([
        ("p2", mr.Tensor(rng.standard_normal((len(image_sizes), channels, 16, 24)).astype(np.float32))),
        ("p3", mr.Tensor(rng.standard_normal((len(image_sizes), channels, 8, 12)).astype(np.float32)))])
    return images, feats


def _spread_weights(rpn, seed=0, std=0.3):
    rng = np.random.default_rng(seed)
    for p in rpn.parameters():
        p.data[...] = rng.normal(0, std, p.shape)


def test_proposals_shapes_inside_image_sorted_and_capped():
    nn.init.manual_seed(0)
    rpn = _rpn().eval()
    _spread_weights(rpn)
    images, feats = _inputs()
    with mr.no_grad():
        boxes, losses = rpn(images, feats)
    assert losses == {}
    assert len(boxes) == 2
    for b, (h, w) in zip(boxes, images.image_sizes):
        assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4
        assert 0 < len(b) <= 40
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert ((b[:, 2] - b[:, 0]) >= 1e-3).all() and ((b[:, 3] - b[:, 1]) >= 1e-3).all()

    # the same through filter_proposals, with the scores: decreasing, and NMS done per level
    logits, deltas = rpn.head(list(feats.values()))
    per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in logits]
    anchors = rpn._anchors(images, list(feats.values()), per_level)
    cls, reg = concat_box_prediction_layers(logits, deltas)
    b2, scores = rpn.filter_proposals(reg.data.reshape(2, -1, 4), cls.data.reshape(2, -1), anchors,
                                      images.image_sizes, per_level)
    for b, bb, s in zip(boxes, b2, scores):
        np.testing.assert_array_equal(b, bb)
        assert (np.diff(s) <= 0).all() and ((s > 0) & (s < 1)).all()


def test_train_and_test_top_n_and_score_thresh():
    rpn = _rpn(pre=dict(training=300, testing=5), post=dict(training=1000, testing=1000))
    _spread_weights(rpn)
    images, feats = _inputs()
    with mr.no_grad():
        rpn.eval()
        boxes, _ = rpn(images, feats)
        assert all(len(b) <= 10 for b in boxes)          # 5 per level, 2 levels
        rpn.train()
        boxes_train, _ = rpn(images, feats, [{"boxes": np.zeros((0, 4), np.float32)}] * 2)
        assert all(len(b) > 10 for b in boxes_train)
        rpn.eval()
        rpn.score_thresh = 1.0
        assert all(len(b) == 0 for b in rpn(images, feats)[0])


@pytest.mark.ex_rpn_targets
def test_assign_targets_labels_and_background_images():
    rpn = _rpn()
    images, feats = _inputs()
    per_level = [16 * 24 * 3, 8 * 12 * 3]
    anchors = rpn._anchors(images, list(feats.values()), per_level)
    gt = np.array([[20, 10, 52, 42]], np.float32)
    labels, matched = rpn.assign_targets_to_anchors([anchors, anchors], [{"boxes": gt},
                                                                          {"boxes": np.zeros((0, 4))}])
    iou = ops.box_iou(gt, anchors)[0]
    assert set(np.unique(labels[0])) <= {-1.0, 0.0, 1.0}
    assert (labels[0][iou >= 0.7] == 1).all() and (labels[0][iou.argmax()] == 1)
    assert (labels[0][iou < 0.3] == 0).all()
    assert (labels[0][(iou >= 0.3) & (iou < 0.7) & (iou < iou.max())] == -1).all()
    np.testing.assert_array_equal(matched[0][labels[0] == 1], np.repeat(gt, (labels[0] == 1).sum(), 0))
    assert (labels[1] == 0).all() and (matched[1] == 0).all()       # no boxes: all background


@pytest.mark.ex_rpn_targets
def test_anchors_inside_crowd_regions_are_not_negatives():
    """Detectron's crowd filter: a would-be negative anchor more than 70% inside a crowd box is
    ignored (-1); outside it stays negative; a positive inside it stays positive; crowd boxes
    are never matched as gt."""
    rpn = _rpn()
    images, feats = _inputs()
    anchors = rpn._anchors(images, list(feats.values()), [16 * 24 * 3, 8 * 12 * 3])
    gt = np.array([[20, 10, 52, 42]], np.float32)
    crowd = np.array([[0, 0, 40, 64], [60, 0, 60, 64]], np.float32)    # the second has no area
    plain, _ = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt}])
    labels, matched = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt, "crowd_boxes": crowd}])
    ioa = ops.box_ioa(anchors, crowd).max(axis=1)
    inside = ioa > 0.7
    assert (inside & (plain[0] == 0)).any() and (~inside & (plain[0] == 0)).any()
    assert (labels[0][inside & (plain[0] == 0)] == -1).all()
    np.testing.assert_array_equal(labels[0][~inside], plain[0][~inside])
    assert (inside & (plain[0] == 1)).any() and (labels[0][plain[0] == 1] == 1).all()
    np.testing.assert_array_equal(matched[0][labels[0] == 1], np.repeat(gt, (labels[0] == 1).sum(), 0))
    # an image with only crowd regions: negatives, except inside the crowd
    labels, _ = rpn.assign_targets_to_anchors([anchors], [{"boxes": np.zeros((0, 4), np.float32),
                                                           "crowd_boxes": crowd}])
    np.testing.assert_array_equal(labels[0], np.where(inside, -1.0, 0.0))
    # no crowd box, or none given: unchanged
    labels, _ = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt, "crowd_boxes": np.zeros((0, 4))}])
    np.testing.assert_array_equal(labels[0], plain[0])


def test_training_losses_and_bad_targets():
    rpn = _rpn().train()
    _spread_weights(rpn, std=0.1)
    images, feats = _inputs()
    rpn.fg_bg_sampler.generator = np.random.default_rng(0)
    targets = [{"boxes": np.array([[20, 10, 52, 42], [60, 30, 90, 60]], np.float32)},
               {"boxes": mr.Tensor(np.zeros((0, 4), np.float32))}]
    _, losses = rpn(images, feats, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    for v in losses.values():
        assert v.shape == () and np.isfinite(v.item()) and v.item() > 0
    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    for name, p in rpn.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad).all() and np.abs(p.grad).sum() > 0, name

    # only background: no box loss
    _, losses = rpn(images, feats, [{"boxes": np.zeros((0, 4), np.float32)}] * 2)
    assert losses["loss_rpn_box_reg"].item() == 0 and np.isfinite(losses["loss_objectness"].item())

    with pytest.raises(ValueError, match="targets should not be None"):
        rpn(images, feats)
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]\[0\]"):
        rpn(images, feats, [{"boxes": np.array([[10, 10, 5, 20]], np.float32)}, {"boxes": np.zeros((0, 4))}])
    with pytest.raises(ValueError, match="list of 2"):
        rpn(images, feats, [{"boxes": np.zeros((0, 4))}])


def test_head_with_the_wrong_number_of_anchors_is_reported():
    rpn = RegionProposalNetwork(ops.AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)), RPNHead(8, 3),
                                0.7, 0.3, 64, 0.5, dict(training=10, testing=10), dict(training=10, testing=10), 0.7)
    images, feats = _inputs()
    with pytest.raises(ValueError, match="anchors per location"):
        rpn.eval()(images, OrderedDict(p2=feats["p2"]))


def test_a_few_sgd_steps_reduce_the_losses():
    """One image, one box: training only the head lowers both losses."""
    nn.init.manual_seed(0)
    generator = ops.AnchorGenerator(((16,),), ((0.5, 1.0, 2.0),))
    rpn = RegionProposalNetwork(generator, RPNHead(4, 3), 0.7, 0.3, 32, 0.5, dict(training=100, testing=100),
                                dict(training=20, testing=20), 0.7).train()
    rng = np.random.default_rng(0)
    images = ImageList(mr.Tensor(np.zeros((1, 3, 48, 48), np.float32)), [(48, 48)])
    feats = OrderedDict(p2=mr.Tensor(rng.standard_normal((1, 4, 12, 12)).astype(np.float32)))
    targets = [{"boxes": np.array([[14, 10, 34, 38]], np.float32)}]
    optimizer = mr.optim.SGD(rpn.parameters(), lr=0.5, momentum=0.9)
    history = []
    for _ in range(15):
        rpn.fg_bg_sampler.generator = np.random.default_rng(0)   # the same sample every step
        _, losses = rpn(images, feats, targets)
        history.append([v.item() for v in losses.values()])
        optimizer.zero_grad()
        (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
        optimizer.step()
    history = np.array(history)
    assert np.isfinite(history).all()
    assert history[-1, 0] < 0.7 * history[0, 0], history[:, 0]
    assert history[-1, 1] < 0.7 * history[0, 1], history[:, 1]


def test_non_finite_objectness_is_reported():
    rpn = _rpn().eval()
    objectness = np.zeros((1, 10), np.float32)
    objectness[0, 3] = np.nan
    with pytest.raises(FloatingPointError, match="1 non-finite"):
        rpn.filter_proposals(np.zeros((1, 10, 4), np.float32), objectness,
                             np.tile([[0, 0, 8, 8]], (10, 1)).astype(np.float32), [(16, 16)], [10])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    cupy = pytest.importorskip("cupy")
    rpn = _rpn()
    _spread_weights(rpn, std=0.1)
    images, feats = _inputs()
    targets = [{"boxes": np.array([[20, 10, 52, 42]], np.float32)}, {"boxes": np.zeros((0, 4), np.float32)}]
    results = []
    for device in ("cpu", "cuda"):
        rpn.to(device)
        rpn.fg_bg_sampler.generator = np.random.default_rng(0)
        feats_on = OrderedDict((k, v.to(device)) for k, v in feats.items())
        for training in (False, True):
            rpn.train(training)
            boxes, losses = rpn(images.to(device), feats_on, targets if training else None)
            results.append(([cupy.asnumpy(b) if device == "cuda" else b for b in boxes],
                            {k: float(v.item()) for k, v in losses.items()}))
    for (cpu_boxes, cpu_losses), (gpu_boxes, gpu_losses) in zip(results[:2], results[2:]):
        for a, b in zip(cpu_boxes, gpu_boxes):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-4)
        for k in cpu_losses:
            np.testing.assert_allclose(cpu_losses[k], gpu_losses[k], rtol=1e-5)
