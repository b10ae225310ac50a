"""The RPN against torchvision's RegionProposalNetwork: same weights, same features.

Eval: the proposals must be the same boxes (to ~1e-4). Training: the anchor labels, the matched
gt boxes and the regression targets must agree, and with the same sampled anchors forced into
both (torchvision's ``fg_bg_sampler`` monkeypatched to return our masks) so must the two losses
and their gradients with respect to the head's weights.
"""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection import rpn as tv_rpn  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList as TVImageList  # noqa: E402

import minimrcnn as mr  # noqa: E402
from minimrcnn import ops  # noqa: E402
from minimrcnn.modeling.image_list import ImageList  # noqa: E402
from minimrcnn.modeling.rpn import RegionProposalNetwork, RPNHead  # noqa: E402

SIZES = ((16,), (32,), (64,))
RATIOS = ((0.5, 1.0, 2.0),) * 3
C = 8
PADDED = (96, 128)
IMAGE_SIZES = [(96, 128), (80, 110)]
FEATURE_SIZES = [(24, 32), (12, 16), (6, 8)]     # strides 4, 8, 16
KW = dict(fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=64, positive_fraction=0.5,
          pre_nms_top_n=dict(training=600, testing=300), post_nms_top_n=dict(training=200, testing=100),
          nms_thresh=0.7)
TARGETS = [np.array([[10, 12, 50, 60], [60, 20, 120, 90], [30, 30, 46, 40]], np.float32),
           np.array([[5, 40, 70, 78]], np.float32)]


def _build(seed=0):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    tv = tv_rpn.RegionProposalNetwork(TVAnchorGenerator(SIZES, RATIOS), tv_rpn.RPNHead(C, 3), **KW)
    # larger weights than the N(0, 0.01) init, so that scores and deltas spread out
    with torch.no_grad():
        for p in tv.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, 0.1, tuple(p.shape)).astype(np.float32)))
    ours = RegionProposalNetwork(ops.AnchorGenerator(SIZES, RATIOS), RPNHead(C, 3), **KW)
    ours.load_state_dict({k: v.numpy() for k, v in tv.state_dict().items()})
    feats = [rng.standard_normal((2, C) + s).astype(np.float32) for s in FEATURE_SIZES]
    images = rng.random((2, 3) + PADDED).astype(np.float32)
    tv_inputs = (TVImageList(torch.from_numpy(images), IMAGE_SIZES),
                 OrderedDict((str(i), torch.from_numpy(f)) for i, f in enumerate(feats)))
    our_inputs = (ImageList(mr.Tensor(images), IMAGE_SIZES),
                  OrderedDict((str(i), mr.Tensor(f)) for i, f in enumerate(feats)))
    return tv, ours, tv_inputs, our_inputs


def _compare_proposals(tv_boxes, our_boxes):
    assert len(tv_boxes) == len(our_boxes)
    for expected, got in zip(tv_boxes, our_boxes):
        expected = expected.detach().numpy()
        assert got.shape == expected.shape
        # both are sorted by score; same scores give the same order
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_proposals_match_torchvision(training):
    tv, ours, tv_inputs, our_inputs = _build()
    tv.train(training)
    ours.train(training)
    tv_targets = [{"boxes": torch.from_numpy(b)} for b in TARGETS] if training else None
    targets = [{"boxes": b} for b in TARGETS] if training else None
    with torch.no_grad():
        tv_boxes, _ = tv(*tv_inputs, tv_targets)
    with mr.no_grad():
        our_boxes, _ = ours(*our_inputs, targets)
    limit = KW["post_nms_top_n"]["training" if training else "testing"]
    assert all(len(b) <= limit for b in our_boxes)
    _compare_proposals(tv_boxes, our_boxes)


def _tv_anchors(tv, tv_inputs):
    features = list(tv_inputs[1].values())
    return tv.anchor_generator(tv_inputs[0], features)


def test_anchor_labels_and_regression_targets_match_torchvision():
    tv, ours, tv_inputs, _ = _build()
    tv_anchors = _tv_anchors(tv, tv_inputs)
    tv_targets = [{"boxes": torch.from_numpy(b)} for b in TARGETS]
    tv_labels, tv_matched = tv.assign_targets_to_anchors(tv_anchors, tv_targets)
    tv_regression = tv.box_coder.encode(tv_matched, tv_anchors)

    anchors = [a.numpy() for a in tv_anchors]
    labels, matched = ours.assign_targets_to_anchors(anchors, [{"boxes": b} for b in TARGETS])
    for i in range(2):
        np.testing.assert_array_equal(labels[i], tv_labels[i].numpy())
        np.testing.assert_array_equal(matched[i], tv_matched[i].numpy())
        pos = labels[i] == 1
        assert pos.sum() >= len(TARGETS[i])          # every gt box has its best anchor(s)
        assert (labels[i] == -1).any() and (labels[i] == 0).any()
        targets = ours.box_coder.encode(matched[i][pos], anchors[i][pos])
        np.testing.assert_allclose(targets, tv_regression[i].numpy()[pos], rtol=1e-6, atol=1e-6)


def test_losses_and_gradients_match_torchvision_with_the_same_sample(monkeypatch):
    tv, ours, tv_inputs, our_inputs = _build()
    tv.train()
    ours.train()
    ours.fg_bg_sampler.generator = np.random.default_rng(0)
    sampled = {}
    draw = ours.fg_bg_sampler.__call__

    def our_sampler(labels):                 # remember the sample ours draws...
        sampled["masks"] = draw(labels)
        return sampled["masks"]

    def tv_sampler(labels):                  # ...and give the same one to torchvision
        pos, neg = sampled["masks"]
        return ([torch.from_numpy(m.astype(np.uint8)) for m in pos],
                [torch.from_numpy(m.astype(np.uint8)) for m in neg])

    monkeypatch.setattr(ours, "fg_bg_sampler", our_sampler)
    monkeypatch.setattr(tv, "fg_bg_sampler", tv_sampler)

    _, losses = ours(*our_inputs, [{"boxes": b} for b in TARGETS])
    _, tv_losses = tv(*tv_inputs, [{"boxes": torch.from_numpy(b)} for b in TARGETS])
    for name in ("loss_objectness", "loss_rpn_box_reg"):
        np.testing.assert_allclose(losses[name].item(), tv_losses[name].item(), rtol=1e-5, atol=1e-7)
    pos, neg = sampled["masks"]
    assert sum(int(m.sum()) for m in pos) > 0 and sum(int(m.sum()) for m in neg) > 0

    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    (tv_losses["loss_objectness"] + tv_losses["loss_rpn_box_reg"]).backward()
    ours_params = dict(ours.named_parameters())
    for name, p in tv.named_parameters():
        expected = p.grad.numpy()
        got = ours_params[name].grad
        assert got is not None, name
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(), err_msg=name)


def test_filter_proposals_match_torchvision_at_fpn_scale():
    """Five levels, ~33k anchors per image, the top-k really cutting: the same proposals except
    where two scores are within an ulp or two (the sigmoids differ by an ulp now and then, and
    torchvision breaks exact ties with an unstable sort), so compare the sorted scores to an ulp
    or two and require almost every box to be identical."""
    sizes = ((32,), (64,), (128,), (256,), (512,))
    ratios = ((0.5, 1.0, 2.0),) * 5
    kw = dict(KW, pre_nms_top_n=dict(training=2000, testing=1000), post_nms_top_n=dict(training=2000, testing=1000))
    tv = tv_rpn.RegionProposalNetwork(TVAnchorGenerator(sizes, ratios), tv_rpn.RPNHead(C, 3), **kw).eval()
    ours = RegionProposalNetwork(ops.AnchorGenerator(sizes, ratios), RPNHead(C, 3), **kw).eval()
    padded, image_sizes = (320, 416), [(320, 400), (300, 416)]
    grids = [(padded[0] // s, padded[1] // s) for s in (4, 8, 16, 32, 64)]
    num_anchors_per_level = [h * w * 3 for h, w in grids]
    rng = np.random.default_rng(3)
    total = sum(num_anchors_per_level)
    objectness = rng.standard_normal((2, total)).astype(np.float32)
    deltas = (rng.standard_normal((2, total, 4)) * 0.2).astype(np.float32)
    anchors = np.concatenate(ours.anchor_generator(padded, grids))

    boxes, scores = ours.filter_proposals(deltas, objectness, anchors, image_sizes, num_anchors_per_level)
    with torch.no_grad():
        tv_anchors = tv.anchor_generator(TVImageList(torch.zeros((2, 3) + padded), image_sizes),
                                         [torch.zeros((2, C) + g) for g in grids])
        np.testing.assert_array_equal(anchors, tv_anchors[0].numpy())
        proposals = tv.box_coder.decode(torch.from_numpy(deltas.reshape(-1, 4)), tv_anchors).view(2, -1, 4)
        tv_boxes, tv_scores = tv.filter_proposals(proposals, torch.from_numpy(objectness.reshape(-1, 1)),
                                                  image_sizes, num_anchors_per_level)
    for b, s, tb, ts in zip(boxes, scores, tv_boxes, tv_scores):
        tb, ts = tb.numpy(), ts.numpy()
        assert b.shape == tb.shape == (1000, 4)
        np.testing.assert_allclose(s, ts, rtol=0, atol=2.5e-7)
        same = np.abs(b - tb).max(axis=1) <= 1e-4
        assert same.mean() >= 0.99, f"{(~same).sum()} of {len(same)} proposals differ"
