"""The RoI heads against torchvision: same weights (copied by name), same inputs, same samples.

Compared: MultiScaleRoIAlign, every head's output, fastrcnn / mask / keypoint losses and their
gradients, postprocess_detections, paste_masks_in_image, heatmaps_to_keypoints, and a whole
RoIHeads (box + mask + keypoint) in eval and in training, where torchvision's random sampler is
replaced by one that returns our sample so that both sides see the same RoIs.
"""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection import roi_heads as tv_rh  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVFastRCNNPredictor  # noqa: E402
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TVTwoMLPHead  # noqa: E402
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads as TVKeypointHeads  # noqa: E402
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor as TVKeypointPredictor  # noqa: E402
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads as TVMaskHeads  # noqa: E402
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor as TVMaskPredictor  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign  # noqa: E402

import minimrcnn as mr  # noqa: E402
from minimrcnn.modeling.box_head import FastRCNNPredictor, TwoMLPHead, fastrcnn_loss  # noqa: E402
from minimrcnn.modeling.keypoint_head import (KeypointRCNNHeads, KeypointRCNNPredictor,  # noqa: E402
                                              heatmaps_to_keypoints, keypointrcnn_loss)
from minimrcnn.modeling.mask_head import (MaskRCNNHeads, MaskRCNNPredictor, maskrcnn_loss,  # noqa: E402
                                          paste_masks_in_image)
from minimrcnn.modeling.poolers import MultiScaleRoIPooler  # noqa: E402
from minimrcnn.modeling.roi_heads import RoIHeads  # noqa: E402

C = 4                                   # feature channels
NUM_CLASSES = 3
NUM_KEYPOINTS = 3
IMAGE_SIZES = [(96, 128), (80, 110)]    # (h, w) before padding; features of the padded 96 x 128


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _features(rng, n=2, levels=4):
    return [rng.standard_normal((n, C, 96 // 2 ** (i + 2), 128 // 2 ** (i + 2))).astype(np.float32)
            for i in range(levels)]


def _boxes(rng, n, lo=4, hi=90):
    xy = rng.uniform(0, 60, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(lo, hi, (n, 2))], axis=1).astype(np.float32)


def _randomize(module, rng, std=0.1):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(_t(rng.normal(0, std, tuple(p.shape)).astype(np.float32)))


def _load(ours, tv):
    """Copy torchvision's weights into ours by name (the key sets must be identical)."""
    sd = {k: v.detach().numpy() for k, v in tv.state_dict().items()}
    assert list(sd) == list(ours.state_dict()), (list(sd), list(ours.state_dict()))
    ours.load_state_dict(sd)


# ---- pooler -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("names", [["0", "1", "2", "3"], ["2"]], ids=["fpn", "single"])
def test_multiscale_roi_align(names):
    rng = np.random.default_rng(0)
    feats = _features(rng)
    boxes = [_boxes(rng, 30, 2, 120), _boxes(rng, 20, 2, 60)]
    tv = MultiScaleRoIAlign(names, 7, 2)
    expected = tv(OrderedDict((str(i), _t(f)) for i, f in enumerate(feats)), [_t(b) for b in boxes],
                  IMAGE_SIZES).numpy()
    ours = MultiScaleRoIPooler(names, 7, 2)(OrderedDict((str(i), mr.Tensor(f)) for i, f in enumerate(feats)),
                                            boxes, IMAGE_SIZES)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours.data, expected, rtol=0, atol=1e-5)


# ---- heads ------------------------------------------------------------------------------------------

def test_head_outputs():
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    x7 = rng.standard_normal((6, C, 7, 7)).astype(np.float32)
    x14 = rng.standard_normal((6, C, 14, 14)).astype(np.float32)
    pairs = [(TVTwoMLPHead(C * 49, 8), TwoMLPHead(C * 49, 8), x7),
             (TVMaskHeads(C, [5, 5], 1), MaskRCNNHeads(C, (5, 5), 1), x14),
             (TVMaskPredictor(C, 6, NUM_CLASSES), MaskRCNNPredictor(C, 6, NUM_CLASSES), x14),
             (TVKeypointHeads(C, [5, 5]), KeypointRCNNHeads(C, (5, 5)), x14),
             (TVKeypointPredictor(C, NUM_KEYPOINTS), KeypointRCNNPredictor(C, NUM_KEYPOINTS), x14)]
    for tv, ours, x in pairs:
        _load(ours, tv)
        with torch.no_grad():
            expected = tv(_t(x)).numpy()
        np.testing.assert_allclose(ours(mr.Tensor(x)).data, expected, rtol=1e-5, atol=1e-5,
                                   err_msg=type(ours).__name__)
    tv, ours = TVFastRCNNPredictor(8, NUM_CLASSES), FastRCNNPredictor(8, NUM_CLASSES)
    _load(ours, tv)
    v = rng.standard_normal((6, 8)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in tv(_t(v))]
    for got, e in zip(ours(mr.Tensor(v)), expected):
        np.testing.assert_allclose(got.data, e, rtol=1e-5, atol=1e-6)


# ---- losses and their gradients ---------------------------------------------------------------------

def _grad_pair(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return mr.Tensor(x.copy(), requires_grad=True), _t(x.copy()).requires_grad_(True)


def test_fastrcnn_loss():
    rng = np.random.default_rng(2)
    (ol, tl), (ob, tb) = _grad_pair(rng, (10, NUM_CLASSES)), _grad_pair(rng, (10, 4 * NUM_CLASSES))
    labels = [np.array([1, 0, 2, 0, 0, 1]), np.array([0, 2, 0, 0])]
    targets = [rng.standard_normal((6, 4)).astype(np.float32) * 0.2, rng.standard_normal((4, 4)).astype(np.float32)]
    ours = fastrcnn_loss(ol, ob, labels, targets)
    theirs = tv_rh.fastrcnn_loss(tl, tb, [_t(l) for l in labels], [_t(t) for t in targets])
    sum(ours).backward()
    sum(theirs).backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)
    np.testing.assert_allclose(ol.grad, tl.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ob.grad, tb.grad.numpy(), rtol=1e-5, atol=1e-7)


def _gt(rng, n_gt=3):
    boxes = _boxes(rng, n_gt, 20, 60)
    masks = np.zeros((n_gt, 96, 128), np.uint8)
    for j, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[j, y1:y2, x1:(x1 + x2) // 2 + 1] = 1          # left part of each box
    xy = rng.uniform(boxes[:, None, :2] - 3, boxes[:, None, 2:] + 3, (n_gt, NUM_KEYPOINTS, 2))
    vis = rng.integers(0, 3, (n_gt, NUM_KEYPOINTS, 1))
    keypoints = np.concatenate([xy, vis], axis=2).astype(np.float32)
    labels = rng.integers(1, NUM_CLASSES, n_gt).astype(np.int64)
    return boxes, masks, keypoints, labels


def test_mask_and_keypoint_losses():
    rng = np.random.default_rng(3)
    gts = [_gt(rng), _gt(rng, 2)]
    proposals = [_boxes(rng, 5, 10, 60), _boxes(rng, 4, 10, 60)]
    matched = [rng.integers(0, 3, 5), rng.integers(0, 2, 4)]
    om, tm = _grad_pair(rng, (9, NUM_CLASSES, 28, 28))
    ours = maskrcnn_loss(om, proposals, [g[1] for g in gts], [g[3] for g in gts], matched)
    theirs = tv_rh.maskrcnn_loss(tm, [_t(p) for p in proposals], [_t(g[1]) for g in gts],
                                 [_t(g[3]) for g in gts], [_t(m) for m in matched])
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-5)
    np.testing.assert_allclose(om.grad, tm.grad.numpy(), rtol=1e-4, atol=1e-9)

    ok, tk = _grad_pair(rng, (9, NUM_KEYPOINTS, 56, 56))
    ours = keypointrcnn_loss(ok, proposals, [g[2] for g in gts], matched)
    theirs = tv_rh.keypointrcnn_loss(tk, [_t(p) for p in proposals], [_t(g[2]) for g in gts],
                                     [_t(m) for m in matched])
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-5)
    np.testing.assert_allclose(ok.grad, tk.grad.numpy(), rtol=1e-4, atol=1e-9)


# ---- inference pieces --------------------------------------------------------------------------------

def test_paste_masks_in_image():
    rng = np.random.default_rng(4)
    masks = rng.random((12, 1, 28, 28)).astype(np.float32)
    boxes = _boxes(rng, 12, 0.5, 90)
    boxes[0] = [0, 0, 128, 96]                        # the whole image
    boxes[1] = [120.3, 90.2, 128, 96]                 # a corner, expanded past the border
    boxes[2] = [5.5, 6.5, 5.9, 6.6]                   # tiny
    expected = tv_rh.paste_masks_in_image(_t(masks), _t(boxes), (96, 128)).numpy()
    ours = paste_masks_in_image(masks, boxes, (96, 128))
    assert ours.shape == expected.shape == (12, 1, 96, 128)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_heatmaps_to_keypoints():
    rng = np.random.default_rng(5)
    maps = rng.standard_normal((6, NUM_KEYPOINTS, 56, 56)).astype(np.float32)
    rois = _boxes(rng, 6, 0.5, 120)
    rois[0] = [10, 20, 66, 76]                        # exactly 56 x 56
    xy_tv, scores_tv = tv_rh.heatmaps_to_keypoints(_t(maps), _t(rois))
    xy, scores = heatmaps_to_keypoints(maps, rois)
    np.testing.assert_allclose(xy, xy_tv.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, scores_tv.numpy(), rtol=0, atol=1e-5)


def _tv_roi_heads(**kw):
    return tv_rh.RoIHeads(MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2), TVTwoMLPHead(C * 49, 8),
                          TVFastRCNNPredictor(8, NUM_CLASSES), 0.5, 0.5, 32, 0.25, None, 0.05, 0.5,
                          kw.pop("detections_per_img", 100), **kw)


def _our_roi_heads(**kw):
    return RoIHeads(MultiScaleRoIPooler(["0", "1", "2", "3"], 7, 2), TwoMLPHead(C * 49, 8),
                    FastRCNNPredictor(8, NUM_CLASSES), 0.5, 0.5, 32, 0.25, None, 0.05, 0.5,
                    kw.pop("detections_per_img", 100), **kw)


def test_postprocess_detections():
    rng = np.random.default_rng(6)
    tv, ours = _tv_roi_heads(detections_per_img=40), _our_roi_heads(detections_per_img=40)
    proposals = [_boxes(rng, 150, 4, 70), _boxes(rng, 60, 4, 70)]
    logits = rng.standard_normal((210, NUM_CLASSES)).astype(np.float32) * 2
    deltas = rng.standard_normal((210, 4 * NUM_CLASSES)).astype(np.float32) * 0.5
    expected = tv.postprocess_detections(_t(logits), _t(deltas), [_t(p) for p in proposals], IMAGE_SIZES)
    got = ours.postprocess_detections(logits, deltas, proposals, IMAGE_SIZES)
    for e_list, g_list, atol in zip(expected, got, (1e-4, 1e-6, 0)):
        for e, g in zip(e_list, g_list):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=atol)
    assert len(got[0][0]) == 40


# ---- the whole RoIHeads --------------------------------------------------------------------------

def _full_pair(rng):
    mask_kw = dict(mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2), mask_head=TVMaskHeads(C, [4, 4], 1),
                   mask_predictor=TVMaskPredictor(4, 4, NUM_CLASSES),
                   keypoint_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2),
                   keypoint_head=TVKeypointHeads(C, [4, 4]), keypoint_predictor=TVKeypointPredictor(4, NUM_KEYPOINTS))
    tv = _tv_roi_heads(**mask_kw)
    _randomize(tv, rng, 0.2)
    ours = _our_roi_heads(mask_roi_pool=MultiScaleRoIPooler(["0", "1", "2", "3"], 14, 2),
                          mask_head=MaskRCNNHeads(C, (4, 4), 1), mask_predictor=MaskRCNNPredictor(4, 4, NUM_CLASSES),
                          keypoint_roi_pool=MultiScaleRoIPooler(["0", "1", "2", "3"], 14, 2),
                          keypoint_head=KeypointRCNNHeads(C, (4, 4)),
                          keypoint_predictor=KeypointRCNNPredictor(4, NUM_KEYPOINTS))
    _load(ours, tv)
    feats = _features(rng)
    return (tv, OrderedDict((str(i), _t(f)) for i, f in enumerate(feats)),
            ours, OrderedDict((str(i), mr.Tensor(f)) for i, f in enumerate(feats)))


def test_roi_heads_inference():
    rng = np.random.default_rng(7)
    tv, tv_feats, ours, feats = _full_pair(rng)
    proposals = [_boxes(rng, 40, 8, 80), _boxes(rng, 25, 8, 60)]
    tv.eval()
    ours.eval()
    with torch.no_grad():
        expected, _ = tv(tv_feats, [_t(p) for p in proposals], IMAGE_SIZES)
    got, losses = ours(feats, proposals, IMAGE_SIZES)
    assert losses == {}
    tolerances = dict(boxes=1e-4, scores=1e-5, labels=0, masks=1e-5, keypoints=1e-3, keypoints_scores=1e-4)
    for e, g in zip(expected, got):
        assert set(g) == set(e) == set(tolerances)
        assert len(g["boxes"]) > 10
        for key, atol in tolerances.items():
            assert g[key].shape == tuple(e[key].shape), key
            np.testing.assert_allclose(g[key], e[key].numpy(), rtol=0, atol=atol, err_msg=key)


def test_roi_heads_training_same_samples(monkeypatch):
    rng = np.random.default_rng(8)
    tv, tv_feats, ours, feats = _full_pair(rng)
    gts = [_gt(rng), _gt(rng, 2)]
    proposals = [_boxes(rng, 40, 8, 80), _boxes(rng, 25, 8, 60)]
    targets = [dict(boxes=g[0], labels=g[3], masks=g[1], keypoints=g[2]) for g in gts]
    tv_targets = [{k: _t(v) for k, v in t.items()} for t in targets]

    # our sampler draws; torchvision's replays the same draw
    drawn = []
    sampler = ours.fg_bg_sampler

    def recording_sampler(labels):
        pos, neg = type(sampler).__call__(sampler, labels)
        drawn.append((pos, neg))
        return pos, neg
    monkeypatch.setattr(ours, "fg_bg_sampler", recording_sampler, raising=False)
    monkeypatch.setattr(tv, "fg_bg_sampler",
                        lambda labels: ([_t(p) for p in drawn[0][0]], [_t(n) for n in drawn[0][1]]))

    ours.train()
    tv.train()
    _, losses = ours(feats, proposals, IMAGE_SIZES, targets)
    _, tv_losses = tv(tv_feats, [_t(p) for p in proposals], IMAGE_SIZES, tv_targets)
    assert set(losses) == set(tv_losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_keypoint"}
    for key in losses:
        np.testing.assert_allclose(losses[key].item(), tv_losses[key].item(), rtol=1e-4, err_msg=key)

    sum(losses.values()).backward()
    sum(tv_losses.values()).backward()
    tv_params = dict(tv.named_parameters())
    for name, p in ours.named_parameters():
        expected = tv_params[name].grad.numpy()
        # atol floor: the deconv bias of the keypoint predictor has an exactly-zero gradient (a
        # constant added to every cell of a softmax), so both sides hold rounding noise there
        atol = max(1e-5 * np.abs(expected).max(), 1e-6)
        np.testing.assert_allclose(p.grad, expected, rtol=1e-3, atol=atol, err_msg=name)
