"""The assembled model: every preset builds, predicts and trains; a classroom model overfits one
image; gradients reach every trainable parameter; the input transform's sizes; torchvision key
names (old and new) load; checkpoints round-trip through atomic .npz files.

Kept small: 96x128 images resized to 64 (x 85) pixels, few proposals and sampled RoIs.
"""
import math
import os
import re

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import nn
from minimrcnn import weights as W
from minimrcnn.config import PRESETS, get_config
from minimrcnn.models import MaskRCNN, build_model
from minimrcnn.modeling.transform import GeneralizedRCNNTransform, resize_boxes, resized_image_size

# small everything: the presets' architectures, at a size a loaded CPU runs in seconds
SMALL = dict(min_size=64, max_size=96, rpn_pre_nms_top_n_train=64, rpn_post_nms_top_n_train=16,
             rpn_pre_nms_top_n_test=64, rpn_post_nms_top_n_test=8, rpn_batch_size_per_image=32,
             box_batch_size_per_image=8, box_detections_per_img=4, box_score_thresh=0.0)
# the keypoint head of the presets is 8 convs of 512 at 14x14 per RoI (7 GFLOP each): thinner here
SMALL_KEYPOINT = dict(keypoint_head_layers=(16, 16))

H, W_ = 96, 128


def _image(seed=0):
    return np.random.default_rng(seed).random((3, H, W_), dtype=np.float32)


def _target(cfg, seed=0):
    """Two boxes with rectangular masks (and 17 keypoints each when the keypoint head is on)."""
    rng = np.random.default_rng(seed)
    boxes = np.array([[10, 12, 60, 70], [70, 20, 120, 90]], np.float32)
    masks = np.zeros((2, H, W_), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1 + 2:y2 - 2, x1 + 2:x2 - 2] = 1
    target = dict(boxes=boxes, labels=np.array([1, cfg.num_classes - 1], np.int64), masks=masks)
    if cfg.keypoint_on:
        k = cfg.num_keypoints
        xs = rng.uniform(boxes[:, :1], boxes[:, 2:3], (2, k))
        ys = rng.uniform(boxes[:, 1:2], boxes[:, 3:4], (2, k))
        target["keypoints"] = np.stack([xs, ys, np.full((2, k), 2.0)], axis=2).astype(np.float32)
    return target


def _tame(model):
    """Zero the RPN's and the box predictor's output layers. A randomly initialised deep ResNet
    (R-101, X-101: no ImageNet weights) gives features of ~1e5 and box deltas of thousands, so
    every proposal would collapse when clipped; zeroed, the proposals are the anchors and every
    class scores 1/K, so detections exist and every branch runs, whatever the backbone."""
    for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.cls_score,
                  model.roi_heads.box_predictor.bbox_pred):
        layer.weight.data[...] = 0
    return model


def _small_cfg(name, **extra):
    overrides = dict(SMALL)
    if PRESETS[name].get("keypoint_on"):
        overrides.update(SMALL_KEYPOINT)
    overrides.update(extra)
    return get_config(name, **overrides)


# ---- presets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_predicts_and_trains(name):
    nn.init.manual_seed(0)
    cfg = _small_cfg(name)
    model = _tame(build_model(cfg))
    assert isinstance(model, MaskRCNN)
    assert [n for n, _ in model.named_children()] == ["transform", "backbone", "rpn", "roi_heads"]

    (det,) = model.predict([_image()])
    n = det["boxes"].shape[0]
    assert 0 < n <= cfg.box_detections_per_img, f"{name}: {n} detections"
    assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == np.float32
    assert det["labels"].shape == (n,) and det["labels"].dtype == np.int64
    assert ((det["labels"] >= 1) & (det["labels"] < cfg.num_classes)).all()
    assert det["scores"].shape == (n,) and np.all(np.diff(det["scores"]) <= 0)
    # boxes are in the input image's pixels (96x128), not the resized 64x85
    assert det["boxes"].min() >= 0 and det["boxes"][:, [0, 2]].max() <= W_ and det["boxes"][:, [1, 3]].max() <= H
    if cfg.mask_on:
        assert det["masks"].shape == (n, 1, H, W_) and det["masks"].dtype == np.float32
        assert 0 <= det["masks"].min() and det["masks"].max() <= 1
    else:
        assert "masks" not in det
    if cfg.keypoint_on:
        assert det["keypoints"].shape == (n, cfg.num_keypoints, 3)
    else:
        assert "keypoints" not in det

    model.train()
    losses = model([_image()], [_target(cfg)])
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    expected |= {"loss_mask"} if cfg.mask_on else set()
    expected |= {"loss_keypoint"} if cfg.keypoint_on else set()
    assert set(losses) == expected
    for key, value in losses.items():
        assert isinstance(value, mr.Tensor) and value.size == 1, key
        assert math.isfinite(float(value.item())), f"{name}: {key} = {value.item()}"
    assert model.training


def test_predict_restores_training_mode_and_accepts_a_batch_array():
    nn.init.manual_seed(0)
    model = build_model(_small_cfg("classroom_fpn"))
    model.train()
    images = np.stack([_image(0), _image(1)])
    dets = model.predict(images)                      # (N, 3, H, W) array -> N dicts
    assert model.training and len(dets) == 2
    model.eval()
    single = model.predict(_image(1))                 # one (3, H, W) array -> [dict]
    assert not model.training and len(single) == 1
    np.testing.assert_allclose(single[0]["boxes"], dets[1]["boxes"], atol=1e-4)


def test_no_detection_gives_empty_arrays_of_the_right_shapes():
    model = build_model(_small_cfg("classroom_fpn", box_score_thresh=1.0))     # nothing scores > 1
    (det,) = model.predict([_image()])
    assert det["boxes"].shape == (0, 4) and det["labels"].shape == (0,) and det["scores"].shape == (0,)
    assert det["masks"].shape == (0, 1, H, W_)


def test_tv_presets_use_frozen_bn_eps_0_as_torchvision_coco_weights():
    for name, eps in (("tv_r50_fpn", 0.0), ("paper_r50_fpn", 1e-5)):
        model = build_model(_small_cfg(name))
        found = [m.eps for m in model.modules() if isinstance(m, nn.FrozenBatchNorm2d)]
        assert found and all(e == eps for e in found), (name, set(found))


# ---- training --------------------------------------------------------------------------------
def _two_objects():
    """A 96x128 image with a red rectangle (class 1) and a blue ellipse (class 2) on grey noise."""
    rng = np.random.default_rng(3)
    image = 0.4 + 0.1 * rng.random((3, H, W_), dtype=np.float32)
    masks = np.zeros((2, H, W_), np.uint8)
    masks[0, 15:60, 8:50] = 1
    yy, xx = np.mgrid[:H, :W_]
    masks[1] = ((yy - 55) / 30.0) ** 2 + ((xx - 92) / 24.0) ** 2 <= 1
    image[:, masks[0] == 1] = np.array([0.9, 0.1, 0.1], np.float32)[:, None]
    image[:, masks[1] == 1] = np.array([0.1, 0.2, 0.9], np.float32)[:, None]
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return image, dict(boxes=np.asarray(boxes, np.float32), labels=np.array([1, 2], np.int64), masks=masks)


def test_classroom_model_overfits_one_image():
    """60 SGD steps on one image (the paper's schedule in miniature: linear warmup, a 10x drop
    at step 45): the losses fall and the model then finds both objects.

    Training is chaotic: two runs with the same seeds differ in the last bit of the loss from
    the third step on (float rounding), and the proposals, so the sampled RoIs, follow those
    bits. The factors asserted here are about 2/3 of the smallest seen over 8 sampler seeds (total 3.0x,
    classifier 3.2x, mask 6.4x, objectness 9.9x, IoU of each class's best box >= 0.51), and
    lr 0.005 stays clear of the divergence seen at 0.01.

    "Finds" is asked of the class's three highest-scoring detections, not of the first alone:
    on an AVX-512 machine (OpenBLAS's SkylakeX kernels, 1 thread) the first two boxes of
    class 1 came out nearly tied, scores 0.390 and 0.375, IoU 0.39 and 0.93 -- the object was
    found, ranked second -- while 2 threads there ranked the 0.82-IoU box first. Over sampler
    seeds 0-7 on that machine the best IoU among the top three was >= 0.59 for both classes on
    seven seeds; seed 3 found no box of class 2 at all (this test uses seed 0: 0.93 and 0.96)."""
    nn.init.manual_seed(0)
    cfg = get_config("classroom_fpn", min_size=96, max_size=128, num_classes=3,
                     rpn_post_nms_top_n_train=64, box_batch_size_per_image=32)
    model = build_model(cfg)
    model.rpn.fg_bg_sampler.generator = np.random.default_rng(0)
    model.roi_heads.fg_bg_sampler.generator = np.random.default_rng(0)
    image, target = _two_objects()
    optimizer = mr.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    scheduler = mr.optim.WarmupMultiStepLR(optimizer, milestones=[45], warmup_iters=5)
    model.train()
    history = []
    for _ in range(60):
        losses = model([image], [target])
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        history.append({k: float(v.item()) for k, v in losses.items()})

    def fall(key=None):
        values = [sum(h.values()) if key is None else h[key] for h in history]
        assert all(math.isfinite(v) for v in values), (key, values)
        return np.mean(values[:3]), np.mean(values[-5:])

    # (loss_box_reg rises: more proposals become positives as the RPN learns, and the box loss
    # is summed over positives and divided by the number of sampled RoIs)
    for key, factor in ((None, 2), ("loss_classifier", 2), ("loss_mask", 4), ("loss_objectness", 6)):
        first, last = fall(key)
        assert last < first / factor, f"{key or 'total loss'}: {first:.3f} -> {last:.3f}, expected a {factor}x fall"

    det = model.predict([image])[0]
    for label, gt_box in zip(target["labels"], target["boxes"]):
        mine = det["labels"] == label
        assert mine.any(), f"no detection of class {label}: {det['labels']}"
        top = det["boxes"][mine][:3]                       # detections are sorted by score
        ious = mr.ops.box_iou(gt_box[None], top)[0]
        assert ious.max() > 0.4, (label, top, ious, gt_box)   # ~2/3 of the 0.59 above


def test_gradients_reach_every_trainable_parameter():
    nn.init.manual_seed(1)
    # every anchor sampled (else the few P5 / P6 anchors of a small image may all be left out)
    cfg = _small_cfg("classroom_fpn", num_classes=3, rpn_batch_size_per_image=100_000)
    model = build_model(cfg)
    image, target = _two_objects()
    model.train()
    losses = model([image], [target])
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(model.parameters()))          # classroom: all 5 stages train
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [n for n, p in trainable if not np.any(p.grad)]
    assert not zero, f"all-zero gradient for {zero}"
    assert all(np.all(np.isfinite(p.grad)) for _, p in trainable)


def test_frozen_parameters_of_tv_preset_get_no_gradient():
    cfg = _small_cfg("tv_r50_fpn", num_classes=3)
    model = build_model(cfg)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    # torchvision with COCO weights: conv1 and layer1 frozen (trainable_layers=3)
    assert frozen and all(n.startswith(("backbone.body.conv1", "backbone.body.layer1")) for n in frozen)
    assert any(n.startswith("backbone.body.layer1") for n in frozen)


def test_training_needs_targets_and_rejects_bad_boxes():
    model = build_model(_small_cfg("classroom_fpn"))
    model.train()
    with pytest.raises(ValueError, match="targets"):
        model([_image()])
    target = _target(model.cfg)
    target["boxes"] = target["boxes"][:, :3]
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\].*\(M, 4\)"):
        model([_image()], [target])
    target = _target(model.cfg)
    target["boxes"][1] = [50, 50, 40, 60]
    with pytest.raises(ValueError, match="positive height and width"):
        model([_image()], [target])
    with pytest.raises(TypeError, match="list"):
        model(_image(), [target])


# ---- transform --------------------------------------------------------------------------------
@pytest.mark.parametrize("size, min_size, max_size, expected", [
    ((480, 640), 800, 1333, (800, 1066)),     # shorter side to 800
    ((427, 640), 800, 1333, (800, 1199)),
    ((2000, 500), 800, 1333, (1333, 333)),    # longer side capped at 1333
    ((161, 200), 800, 1333, (799, 993)),      # floor(161 * (800 / 161)) = 799 in floats, as torch
    ((96, 128), 64, 96, (64, 85)),
    ((103, 150), 64, 96, (63, 93)),
    ((1, 1000), 800, 1333, (1, 1333)),
])
def test_resized_size_follows_torchvisions_rule(size, min_size, max_size, expected):
    assert resized_image_size(*size, min_size, max_size)[0] == expected
    t = GeneralizedRCNNTransform(min_size, max_size, (0.5,) * 3, (0.25,) * 3).eval()
    images, _ = t([np.zeros((3,) + size, np.float32)])
    assert images.image_sizes == [expected]
    assert tuple(images.tensors.shape[-2:]) == tuple(int(math.ceil(s / 32) * 32) for s in expected)


def test_transform_normalizes_pads_and_scales_targets():
    t = GeneralizedRCNNTransform(64, 96, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)).train()
    img_a = np.full((3, 96, 128), 0.7, np.float32)
    img_b = np.full((3, 50, 60), 0.7, np.float32)
    boxes = np.array([[12, 24, 60, 72]], np.float32)
    masks = np.zeros((1, 96, 128), np.uint8)
    masks[0, 24:72, 12:60] = 1
    keypoints = np.array([[[30, 48, 2]]], np.float32)
    target = dict(boxes=boxes, labels=np.array([1]), masks=masks, keypoints=keypoints)
    images, targets = t([img_a, img_b], [target, dict(boxes=np.zeros((0, 4), np.float32))])
    assert images.image_sizes == [(64, 85), (64, 76)]
    assert images.tensors.shape == (2, 3, 64, 96)
    x = images.tensors.data
    np.testing.assert_allclose(x[0, :, :64, :85], ((0.7 - np.array([0.5, 0.4, 0.3])) /
                                                 np.array([0.2, 0.25, 0.5]))[:, None, None]
                               * np.ones((1, 64, 85)), rtol=1e-5)
    assert not x[0, :, :, 85:].any() and not x[1, :, :, 76:].any()           # zero padding
    r_h, r_w = np.float32(64) / np.float32(96), np.float32(85) / np.float32(128)
    np.testing.assert_array_equal(targets[0]["boxes"], boxes * np.array([r_w, r_h, r_w, r_h], np.float32))
    np.testing.assert_array_equal(targets[0]["keypoints"][..., :2],
                                  keypoints[..., :2] * np.array([r_w, r_h], np.float32))
    assert targets[0]["keypoints"][0, 0, 2] == 2
    assert targets[0]["masks"].shape == (1, 64, 85) and targets[0]["masks"].dtype == np.uint8
    assert target["boxes"] is boxes and target["masks"].shape == (1, 96, 128)     # caller's dict untouched


def test_transform_postprocess_maps_back_to_the_input_image():
    t = GeneralizedRCNNTransform(64, 96, (0.5,) * 3, (0.25,) * 3).eval()
    boxes = np.array([[8, 16, 40, 48]], np.float32)
    masks = np.ones((1, 1, 28, 28), np.float32)
    result = [dict(boxes=boxes, masks=masks, keypoints=np.array([[[8, 16, 1]]], np.float32))]
    out = t.postprocess(result, [(64, 85)], [(96, 128)])[0]
    np.testing.assert_allclose(out["boxes"], resize_boxes(boxes, (64, 85), (96, 128)))
    np.testing.assert_allclose(out["boxes"], [[8 * 128 / 85, 16 * 1.5, 40 * 128 / 85, 48 * 1.5]], rtol=1e-6)
    assert out["masks"].shape == (1, 1, 96, 128)
    np.testing.assert_allclose(out["keypoints"][0, 0], [8 * 128 / 85, 24, 1], rtol=1e-6)


def test_transform_multi_scale_training_picks_one_of_the_sizes():
    t = GeneralizedRCNNTransform((32, 48, 64), 100, (0.5,) * 3, (0.25,) * 3).train()
    t.generator = np.random.default_rng(0)
    image = np.zeros((3, 50, 60), np.float32)
    seen = {t([image])[0].image_sizes[0] for _ in range(20)}
    assert seen == {(32, 38), (48, 57), (64, 76)}
    assert t.eval()([image])[0].image_sizes == [(64, 76)]                 # eval: the last size


def test_transform_rejects_bad_images():
    t = GeneralizedRCNNTransform(64, 96, (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ValueError, match=r"images\[0\].*\(3, H, W\)"):
        t([np.zeros((96, 128), np.float32)])
    with pytest.raises(ValueError, match=r"images\[0\] must have 3 channels"):
        t([np.zeros((96, 128, 3), np.float32)])                           # HWC by mistake
    with pytest.raises(TypeError, match=r"images\[0\].*floating"):
        t([np.zeros((3, 96, 128), np.uint8)])
    with pytest.raises(ValueError, match="min_size"):
        GeneralizedRCNNTransform(0, 96, (0.5,) * 3, (0.25,) * 3)


# ---- torchvision key names and checkpoints ----------------------------------------------------
def _old_torchvision_names(state_dict):
    """Our (= torchvision >= 0.13) names -> the names of torchvision's released .pth files."""
    import re
    old = {}
    for key, value in state_dict.items():
        key = re.sub(r"rpn\.head\.conv\.0\.0\.", "rpn.head.conv.", key)
        key = re.sub(r"fpn\.(inner_blocks|layer_blocks)\.(\d+)\.0\.", r"fpn.\1.\2.", key)
        key = re.sub(r"mask_head\.(\d+)\.0\.", lambda m: f"mask_head.mask_fcn{int(m.group(1)) + 1}.", key)
        old[key] = value
    return old


@pytest.fixture(scope="module")
def two_models():
    cfg = _small_cfg("classroom_fpn")
    nn.init.manual_seed(0)
    a = build_model(cfg)
    nn.init.manual_seed(1)
    b = build_model(cfg)
    return a, b


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_key_table_renames_old_torchvision_names():
    old = {"rpn.head.conv.weight": 1, "backbone.fpn.inner_blocks.2.bias": 2,
           "backbone.fpn.layer_blocks.0.weight": 3, "roi_heads.mask_head.mask_fcn4.weight": 4,
           "backbone.body.bn1.num_batches_tracked": 5, "roi_heads.mask_predictor.conv5_mask.weight": 6}
    new = W.upgrade_torchvision_keys(old)
    assert list(new) == ["rpn.head.conv.0.0.weight", "backbone.fpn.inner_blocks.2.0.bias",
                         "backbone.fpn.layer_blocks.0.0.weight", "roi_heads.mask_head.3.0.weight",
                         "roi_heads.mask_predictor.conv5_mask.weight"]
    assert W.upgrade_torchvision_keys(new) == new                        # new names pass through
    with pytest.raises(ValueError, match="rpn.head.conv.0.0.weight"):
        W.upgrade_torchvision_keys({"rpn.head.conv.weight": 1, "rpn.head.conv.0.0.weight": 2})


@pytest.mark.parametrize("naming", ["new", "old"])
def test_load_torchvision_state_dict_with_old_and_new_key_names(two_models, naming):
    a, b = two_models
    sd = a.state_dict()
    assert "roi_heads.mask_head.0.0.weight" in sd and "rpn.head.conv.0.0.weight" in sd
    assert "backbone.fpn.inner_blocks.0.0.weight" in sd
    if naming == "old":
        sd = _old_torchvision_names(sd)
        assert "roi_heads.mask_head.mask_fcn1.weight" in sd and "backbone.fpn.layer_blocks.3.bias" in sd
    sd["backbone.body.layer1.0.bn1.num_batches_tracked"] = np.array(7, np.int64)   # a BatchNorm2d's counter
    b.load_torchvision_state_dict(sd)
    _assert_same_state(a, b)


def test_load_torchvision_state_dict_lists_missing_unexpected_and_mismatched_keys(two_models):
    a, b = two_models
    sd = a.state_dict()
    del sd["roi_heads.box_predictor.cls_score.weight"]
    del sd["rpn.head.bbox_pred.bias"]
    sd["roi_heads.extra.weight"] = np.zeros(3, np.float32)
    sd["backbone.fpn.layer_blocks.0.0.bias"] = np.zeros(5, np.float32)
    with pytest.raises(RuntimeError) as info:
        b.load_torchvision_state_dict(sd)
    msg = str(info.value)
    for key in ("roi_heads.box_predictor.cls_score.weight", "rpn.head.bbox_pred.bias", "roi_heads.extra.weight",
                "missing keys (2)", "unexpected keys (1)", "backbone.fpn.layer_blocks.0.0.bias"):
        assert key in msg, f"{key!r} not in: {msg}"


def test_checkpoint_round_trip_is_atomic_and_unpickled(two_models, tmp_path, monkeypatch):
    a, b = two_models
    path = tmp_path / "model.npz"
    W.save_weights(a, path, meta={"preset": "classroom_fpn"})
    with np.load(path, allow_pickle=False) as data:                     # no pickled objects inside
        assert "backbone.body.conv1.weight" in data.files
    meta = W.load_weights(b, path)
    assert meta["preset"] == "classroom_fpn" and meta["format"] == "minimrcnn"
    _assert_same_state(a, b)
    assert os.listdir(tmp_path) == ["model.npz"]                         # no temporary left behind

    # a write that fails half-way leaves the old file as it was, and no temporary file
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        W.save_weights(b, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_checkpoint_files_that_are_not_ours_get_clear_errors(two_models, tmp_path):
    import json
    a, _ = two_models
    np.save(tmp_path / "weights.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"weights.npy: not an .npz checkpoint .*shape \(3,\): a .npy file"):
        W.load_weights(a, tmp_path / "weights.npy")
    (tmp_path / "notes.npz").write_text("hello")
    with pytest.raises(ValueError, match="notes.npz: not a minimrcnn .npz checkpoint"):
        W.load_state_dict_file(tmp_path / "notes.npz")
    for bad, dtype in ((np.array(["1.5", "2"]), "<U3"), (np.array([1 + 2j]), "complex128")):
        np.savez(tmp_path / "bad.npz", w=bad, __meta__=np.array("{}"))
        with pytest.raises(TypeError, match=rf"bad.npz: state dict entry 'w' has dtype {dtype}: weights must "
                                            rf"be real numbers"):
            W.load_state_dict_file(tmp_path / "bad.npz")
        with pytest.raises(TypeError, match=rf"entry 'w' has dtype {dtype}"):
            W.save_state_dict({"w": bad}, tmp_path / "out.npz")
    key = "backbone.body.conv1.weight"
    complex_weight = a.state_dict()[key].astype(np.complex64)
    with pytest.raises(RuntimeError, match=rf"dtype of {key}: checkpoint complex64 cannot be loaded into float32"):
        a.load_state_dict({**a.state_dict(), key: complex_weight})
    for meta, message in ((np.array(json.dumps([1, 2])), "must be a JSON object, got list"),
                          (np.array("{not json"), "is not valid JSON"),
                          (np.arange(3), "must be a JSON string, got an array of dtype int64")):
        np.savez(tmp_path / "meta.npz", w=np.zeros(2, np.float32), __meta__=meta)
        with pytest.raises(ValueError, match=rf"meta.npz: __meta__ {message}"):
            W.load_state_dict_file(tmp_path / "meta.npz")


def test_a_killed_save_leaves_no_temporary_behind_the_next_save(tmp_path):
    """A save killed half-way (os._exit: no except, no finally) leaves its temporary; the next save
    to the same file removes it, and one of a live process only once it is an hour old."""
    import subprocess
    import sys
    import textwrap
    target = tmp_path / "model.npz"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from minimrcnn import weights
        def killed(f, **arrays):
            f.write(b"half a file"); f.flush(); os._exit(9)
        np.savez = killed
        weights.save_state_dict({{"w": np.zeros(3, np.float32)}}, {str(target)!r})
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9
    orphans = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(orphans) == 1 and not target.exists()
    alive = tmp_path / f".model.npz.{os.getppid()}.abc123.tmp"      # a save in progress elsewhere
    alive.write_bytes(b"")
    W.save_state_dict({"w": np.ones(3, np.float32)}, target)
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", alive.name])
    os.utime(alive, (0, 0))                                          # an hour old and more: stale
    W.save_state_dict({"w": np.ones(3, np.float32)}, target)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_saved_files_follow_the_umask_and_the_rename_is_flushed(tmp_path, monkeypatch):
    import stat
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode)
                                                              else "fsync file"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b)))
    old = os.umask(0o027)
    try:
        W.save_state_dict({"w": np.zeros(3, np.float32)}, tmp_path / "a.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.npz").st_mode) == 0o640       # mkstemp alone: 0600
    assert calls == ["fsync file", "replace", "fsync dir"]


def test_bad_images_and_labels_are_refused_with_the_value():
    model = build_model(get_config("classroom_fpn"))
    model.eval()
    with pytest.raises(ValueError, match=r"images\[0\] contains NaN or infinite values"):
        model.predict([np.full((3, 64, 64), np.nan, np.float32)])
    model.train()
    image = np.zeros((3, 64, 64), np.float32)
    for label in (0, 9):   # 0 is the background; classroom_fpn has 4 classes (0..3)
        target = dict(boxes=np.array([[1, 1, 30, 20]], np.float32), labels=np.array([label]),
                      masks=np.zeros((1, 64, 64), np.uint8))
        with pytest.raises(ValueError, match=rf"labels'\] must be in \[1, 3\].*got {label} at index 0"):
            model([image], [target])


# ---- the model's door: bad input gets one clear error before any work -------------------------
@pytest.fixture(scope="module")
def small_model():
    return build_model(_small_cfg("classroom_fpn"))


@pytest.mark.parametrize("values, message", [
    ((0, 255), r"masks'\] holds 0/255 values.*masks > 0"),
    ((0, 2), r"masks'\] must be binary \{0, 1\}.*\[2\]"),
    ((0.0, np.nan), r"masks'\] contains NaN"),
    ((0.0, 0.5), r"masks'\] must be binary \{0, 1\}.*\[0.5\]"),
])
def test_training_masks_must_be_binary(small_model, values, message):
    target = _target(small_model.cfg)
    dtype = np.float32 if isinstance(values[1], float) else np.uint8
    target["masks"] = np.where(target["masks"] > 0, values[1], values[0]).astype(dtype)
    small_model.train()
    with pytest.raises(ValueError, match=message):
        small_model([_image()], [target])


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32, np.int64])
def test_binary_masks_of_any_dtype_train(small_model, dtype):
    target = _target(small_model.cfg)
    target["masks"] = target["masks"].astype(dtype)
    small_model.train()
    losses = small_model([_image()], [target])
    assert all(np.isfinite(v.item()) and v.item() >= 0 for v in losses.values())


@pytest.mark.parametrize("num_masks", [1, 3])
def test_one_mask_per_box(small_model, num_masks):
    target = _target(small_model.cfg)
    target["masks"] = np.resize(target["masks"], (num_masks, H, W_))
    small_model.train()
    with pytest.raises(ValueError, match=rf"masks'\] must have shape \(2, {H}, {W_}\): one mask per box.*"
                                         rf"got \({num_masks}, {H}, {W_}\)"):
        small_model([_image()], [target])


def test_float64_images_are_cast_to_the_models_dtype(small_model):
    image64 = np.random.default_rng(3).random((3, H, W_))                 # float64, as np.random gives
    small_model.eval()
    got, expected = small_model.predict([image64])[0], small_model.predict([image64.astype(np.float32)])[0]
    assert got.keys() == expected.keys()
    for key in got:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    small_model.train()
    losses = small_model([image64], [_target(small_model.cfg)])
    assert all(v.dtype == np.float32 for v in losses.values())


def test_a_training_step_with_crowd_boxes_and_other_keys(small_model):
    """Targets may carry "crowd_boxes" (C may be 0; resized with the boxes) and other keys such as
    "image_id", which pass through."""
    small_model.train()
    for crowd in (np.array([[0, 0, 60, 40], [80, 50, 128, 96]], np.float32), np.zeros((0, 4), np.float32)):
        target = dict(_target(small_model.cfg), crowd_boxes=crowd, image_id=7, file_name="a.png")
        losses = small_model([_image()], [target])
        assert all(np.isfinite(v.item()) for v in losses.values())
        assert set(target) >= {"crowd_boxes", "image_id"} and target["crowd_boxes"] is crowd   # not modified
    t = dict(_target(small_model.cfg), crowd_boxes=np.array([[0, 0, 64, 48]], np.float32), image_id=7)
    _, resized = small_model.transform([_image()], [t])
    assert resized[0]["image_id"] == 7
    np.testing.assert_allclose(resized[0]["crowd_boxes"], [[0, 0, 64 * 85 / 128, 48 * 64 / 96]])  # 96x128 -> 64x85


@pytest.mark.parametrize("crowd, message", [
    (np.zeros((2, 3), np.float32), r"crowd_boxes'\] must have shape \(C, 4\), got \(2, 3\)"),
    (np.array([[0, 0, np.nan, 4]], np.float32), r"crowd_boxes'\]\[0\] = \[0.0, 0.0, nan, 4.0\]: crowd boxes must be finite"),
    (np.array([[9, 0, 4, 4]], np.float32), r"crowd_boxes'\]\[0\].*x1 <= x2"),
])
def test_bad_crowd_boxes_are_refused(small_model, crowd, message):
    small_model.train()
    with pytest.raises(ValueError, match=message):
        small_model([_image()], [dict(_target(small_model.cfg), crowd_boxes=crowd)])


@pytest.mark.parametrize("images, message", [
    (np.zeros((H, W_), np.float32), r"array of shape \(96, 128\) \(a grayscale image"),
    ("image.png", r"not paths \(got 'image.png'\)"),
    (None, r"got NoneType"),
    ([None], r"images\[0\] must be a \(3, H, W\) float array, got NoneType"),
])
def test_predict_refuses_what_is_not_an_image(small_model, images, message):
    with pytest.raises(TypeError, match=message):
        small_model.predict(images)


def test_an_image_that_would_resize_to_nothing_is_refused(small_model):
    with pytest.raises(ValueError, match=r"images\[0\] of size 1x2000 would be resized to 0x96.*aspect ratio"):
        small_model.predict([np.zeros((3, 1, 2000), np.float32)])


def test_build_model_takes_a_config():
    with pytest.raises(TypeError, match=r"got the string 'classroom_fpn'.*get_config\('classroom_fpn'\)"):
        build_model("classroom_fpn")
    with pytest.raises(TypeError, match="got a dict"):
        build_model(get_config("classroom_fpn").to_dict())


@pytest.mark.parametrize("key, value", [("aspect_ratios", ()), ("mask_head_layers", ()),
                                        ("trainable_layers", 2.5), ("anchor_sizes", ((16,), (), (64,))),
                                        ("keypoint_head_layers", (64, 0)), ("depth", 50.0)])
def test_config_refuses_empty_and_fractional_values(key, value):
    from minimrcnn.config import ConfigError
    with pytest.raises(ConfigError, match=rf"config key '{key}'.*got {re.escape(repr(value))}"):
        get_config("tv_r50_fpn", **{key: value})
