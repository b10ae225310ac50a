"""The whole model against torchvision: same weights, same images, same detections.

torchvision's maskrcnn_resnet50_fpn and keypointrcnn_resnet50_fpn are built with random weights
(``weights=None, weights_backbone=None``: BatchNorm2d layers, used in eval mode, i.e. as frozen
batch norms), given random but ImageNet-like normalisation statistics and eps = 0 (what
torchvision sets when it loads its COCO weights, and what our tv presets use), and a box
classifier whose bias favours the foreground so that detections pass the 0.05 score threshold.
Their state dicts load into our tv_r50_fpn / tv_keypoint_r50_fpn models unchanged.

Two random images (300x400 and 280x350) are resized (shorter side 224 here, to keep the test
quick; both sides use the same min/max) and padded to 224x320. Compared: the normalised,
resized, padded batch; the FPN features; the proposals; the final detections (one-to-one by
label and nearest box): boxes < 0.05 px, scores < 1e-3, mask probabilities < 1e-2, keypoints.
The measured maxima are printed (``pytest -s``).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform as TVTransform  # noqa: E402

from minimrcnn import weights as W  # noqa: E402
from minimrcnn.config import get_config  # noqa: E402
from minimrcnn.models import build_model  # noqa: E402
from minimrcnn.modeling.transform import GeneralizedRCNNTransform  # noqa: E402

SIZES = dict(min_size=224, max_size=320)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _randomize(model, seed):
    """ImageNet-like statistics for every BatchNorm2d (eps 0), foreground-biased box scores."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.weight.numel()
                m.weight.copy_(0.2 + 0.6 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.eps = 0.0
        # spread the objectness so that the top-k cut-offs do not fall between near-ties
        model.rpn.head.cls_logits.weight.mul_(20.0)
        predictor = model.roi_heads.box_predictor
        predictor.cls_score.weight.mul_(10.0)
        predictor.cls_score.bias.copy_(torch.linspace(-1.0, 1.0, predictor.cls_score.bias.numel()))
        predictor.cls_score.bias[0] = -2.0
    return model.eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.random((3, 300, 400), dtype=np.float32), rng.random((3, 280, 350), dtype=np.float32)]


def _capture(model, names):
    """Forward hooks that keep each named child's output (works on both libraries' modules)."""
    store = {}
    for name in names:
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: store.__setitem__(name, output))
    return store


def _run_both(ours, theirs, images):
    ours_store = _capture(ours, ["transform", "backbone", "rpn"])
    theirs_store = _capture(theirs, ["transform", "backbone", "rpn"])
    ours_det = ours.predict(images)
    with torch.no_grad():
        theirs_det = theirs([torch.from_numpy(img) for img in images])
    theirs_det = [{k: v.numpy() for k, v in d.items()} for d in theirs_det]
    return ours_store, theirs_store, ours_det, theirs_det


def _nearest(a, b):
    """For each row of a (n, 4), the L-inf distance to the nearest row of b (m, 4), and its index."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a)), np.zeros(len(a), np.int64)
    d = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
    j = d.argmin(axis=1)
    return d[np.arange(len(a)), j], j


def _compare_front(ours_store, theirs_store, report):
    (ours_images, _), (tv_images, _) = ours_store["transform"], theirs_store["transform"]
    assert ours_images.image_sizes == [tuple(s) for s in tv_images.image_sizes]
    assert ours_images.tensors.shape == tuple(tv_images.tensors.shape)
    report["resized images |diff|"] = float(np.abs(ours_images.tensors.data - tv_images.tensors.numpy()).max())
    assert report["resized images |diff|"] < 1e-3

    ours_f, tv_f = ours_store["backbone"], theirs_store["backbone"]
    assert list(ours_f) == list(tv_f)
    worst = 0.0
    for name, f in tv_f.items():
        f = f.numpy()
        assert ours_f[name].shape == f.shape, name
        worst = max(worst, float(np.abs(ours_f[name].data - f).max() / np.abs(f).max()))
    report["FPN features max |diff| / max |tv|"] = worst
    assert worst < 1e-4

    (ours_props, _), (tv_props, _) = ours_store["rpn"], theirs_store["rpn"]
    worst = 0.0
    for i, (p, q) in enumerate(zip(ours_props, tv_props)):
        q = q.numpy()
        assert p.shape == q.shape, f"image {i}: {p.shape[0]} proposals, torchvision {q.shape[0]}"
        d1, _ = _nearest(q, p)
        d2, _ = _nearest(p, q)
        worst = max(worst, float(d1.max()), float(d2.max()))
    report["proposals (per image, as sets) max |diff| px"] = worst
    assert worst < 0.05


def _compare_detections(ours_det, tv_det, report, keys):
    worst = {k: 0.0 for k in ["boxes"] + keys}
    counts = []
    for i, (d, e) in enumerate(zip(ours_det, tv_det)):
        n = len(e["boxes"])
        counts.append(n)
        assert len(d["boxes"]) == n, f"image {i}: {len(d['boxes'])} detections, torchvision {n}"
        assert n > 0
        dist, j = _nearest(e["boxes"] + 1e4 * e["labels"][:, None], d["boxes"] + 1e4 * d["labels"][:, None])
        assert len(set(j.tolist())) == n, f"image {i}: detections do not match one to one"
        worst["boxes"] = max(worst["boxes"], float(dist.max()))
        np.testing.assert_array_equal(d["labels"][j], e["labels"])
        for k in keys:
            assert d[k].shape == e[k].shape, (k, d[k].shape, e[k].shape)
            worst[k] = max(worst[k], float(np.abs(d[k][j] - e[k]).max()))
    report["detections per image"] = counts
    for k, v in worst.items():
        report[f"detections {k} max |diff|"] = v
    return worst


def _print(title, report):
    print(f"\n{title}")
    for k, v in report.items():
        print(f"  {k}: {v:.3g}" if isinstance(v, float) else f"  {k}: {v}")


def test_transform_matches_torchvision():
    rng = np.random.default_rng(1)
    images = [rng.random((3, 161, 200), dtype=np.float32), rng.random((3, 300, 200), dtype=np.float32)]
    boxes = [np.array([[5, 6, 100, 150]], np.float32), np.array([[1, 2, 30, 40]], np.float32)]
    masks = [(rng.random((1,) + img.shape[1:]) > 0.5).astype(np.uint8) for img in images]
    ours = GeneralizedRCNNTransform(224, 320, MEAN, STD).train()
    theirs = TVTransform(224, 320, list(MEAN), list(STD)).train()
    a, ta = ours(images, [dict(boxes=b, masks=m) for b, m in zip(boxes, masks)])
    b, tb = theirs([torch.from_numpy(i) for i in images],
                   [dict(boxes=torch.from_numpy(b), masks=torch.from_numpy(m)) for b, m in zip(boxes, masks)])
    assert a.image_sizes == [tuple(s) for s in b.image_sizes] == [(224, 278), (320, 213)]
    assert a.tensors.shape == tuple(b.tensors.shape) == (2, 3, 320, 288)
    np.testing.assert_allclose(a.tensors.data, b.tensors.numpy(), atol=1e-4)
    for x, y in zip(ta, tb):
        np.testing.assert_array_equal(x["boxes"], y["boxes"].numpy())
        np.testing.assert_array_equal(x["masks"], y["masks"].numpy())


def test_mask_rcnn_r50_fpn_matches_torchvision(images):
    torch.manual_seed(0)
    theirs = _randomize(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, **SIZES), 0)
    ours = build_model(get_config("tv_r50_fpn", num_classes=3, **SIZES))
    ours.load_torchvision_state_dict(theirs.state_dict())          # incl. num_batches_tracked
    ours_store, theirs_store, ours_det, tv_det = _run_both(ours, theirs, images)
    report = {}
    try:
        _compare_front(ours_store, theirs_store, report)
        worst = _compare_detections(ours_det, tv_det, report, ["scores", "masks"])
    finally:
        _print("maskrcnn_resnet50_fpn parity", report)
    assert worst["boxes"] < 0.05
    assert worst["scores"] < 1e-3
    assert worst["masks"] < 1e-2


def test_keypoint_rcnn_r50_fpn_matches_torchvision(images):
    # the keypoint head is 8 convs of 512 channels per detection: 8 detections per image here
    kw = dict(SIZES, box_detections_per_img=8)
    torch.manual_seed(1)
    theirs = _randomize(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, **kw), 1)
    ours = build_model(get_config("tv_keypoint_r50_fpn", **kw))
    ours.load_torchvision_state_dict(theirs.state_dict())
    ours_store, theirs_store, ours_det, tv_det = _run_both(ours, theirs, images)
    report = {}
    try:
        _compare_front(ours_store, theirs_store, report)
        worst = _compare_detections(ours_det, tv_det, report, ["scores", "keypoints", "keypoints_scores"])
    finally:
        _print("keypointrcnn_resnet50_fpn parity", report)
    assert worst["boxes"] < 0.05
    assert worst["scores"] < 1e-3
    assert worst["keypoints"] < 0.05
    assert worst["keypoints_scores"] < 1e-2


def test_convert_torchvision_checkpoint(tmp_path):
    """A .pth with the old torchvision key names -> our .npz -> the same weights."""
    nn_cfg = get_config("classroom_fpn", num_classes=3)
    source = build_model(nn_cfg)
    old = {}
    for key, value in source.state_dict().items():
        key = (key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
               .replace("mask_head.0.0.", "mask_head.mask_fcn1.").replace("mask_head.1.0.", "mask_head.mask_fcn2."))
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(4):
                key = key.replace(f"fpn.{block}.{i}.0.", f"fpn.{block}.{i}.")
        old[key] = torch.from_numpy(np.ascontiguousarray(value))
    old["backbone.body.bn1.num_batches_tracked"] = torch.tensor(3)
    assert "roi_heads.mask_head.mask_fcn2.weight" in old and "rpn.head.conv.weight" in old
    pth = tmp_path / "tv.pth"
    torch.save({"model": old}, pth)
    out = tmp_path / "converted.npz"
    n = W.convert_torchvision_checkpoint(pth, out)
    assert n == len(source.state_dict())
    target = build_model(nn_cfg)
    meta = W.load_weights(target, out)
    assert meta["source"] == "tv.pth"
    for k, v in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[k], v, err_msg=k)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted.npz", "tv.pth"]
