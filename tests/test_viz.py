"""minimrcnn.viz and minimrcnn.engine.inspect: every picture on tiny inputs (Agg backend)."""
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from PIL import Image  # noqa: E402

from minimrcnn import viz  # noqa: E402
from minimrcnn.engine.trainer import read_metrics  # noqa: E402

CLASS_NAMES = ["__background__", "square", "circle", "triangle"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _image(h=40, w=48, value=0.0):
    return np.full((3, h, w), value, dtype=np.float32)


def _render(fig):
    """The figure's pixels, (H, W, 3) uint8."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _full_axes(h, w, scale=4):
    """An Axes covering the whole figure, ``scale`` screen pixels per image pixel."""
    fig = plt.figure(figsize=(w * scale / 100, h * scale / 100), dpi=100)
    return fig.add_axes([0, 0, 1, 1])


def test_import_minimrcnn_viz_does_not_load_matplotlib():
    code = "import sys, minimrcnn, minimrcnn.viz; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- draw_instances ---------------------------------------------------------------------------

def test_draw_instances_boxes_captions_and_threshold():
    boxes = np.array([[2, 3, 20, 25], [10, 10, 30, 30], [0, 0, 5, 5]], np.float32)
    ax = viz.draw_instances(None, _image(), boxes=boxes, labels=np.array([1, 2, 3]),
                            scores=np.array([0.9, 0.6, 0.2]), class_names=CLASS_NAMES, score_thresh=0.5,
                            title="t")
    assert len(ax.patches) == 2                                   # the 0.2 box is below the threshold
    assert [t.get_text() for t in ax.texts] == ["square 0.90", "circle 0.60"]
    assert ax.patches[0].get_xy() == (2, 3) and ax.patches[0].get_width() == 18
    assert to_rgb(ax.patches[1].get_edgecolor()) == to_rgb(viz.instance_color(1))
    assert ax.get_title() == "t"
    # without scores every instance is drawn; (H, W, 3) images are accepted
    ax2 = viz.draw_instances(None, _image().transpose(1, 2, 0), boxes=boxes, labels=[1, 2, 3],
                             class_names=CLASS_NAMES[:3])
    assert len(ax2.patches) == 3 and [t.get_text() for t in ax2.texts] == ["square", "circle", "3"]
    assert ax2.get_ylim()[0] > ax2.get_ylim()[1]                  # y grows downwards


def test_draw_instances_keypoints_and_skeleton():
    kp = np.zeros((2, 5, 3), np.float32)
    kp[:, :, 0] = np.arange(5) + 2
    kp[:, :, 1] = 20
    kp[:, :, 2] = 2
    kp[1, 0, 2] = 0                                     # second instance: keypoint 0 not labelled
    skeleton = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]
    ax = viz.draw_instances(None, _image(), keypoints=kp, skeleton=skeleton)
    assert len(ax.lines) == 5 + 3                       # the two edges of keypoint 0 are not drawn
    assert [len(c.get_offsets()) for c in ax.collections] == [5, 4]
    assert to_rgb(ax.lines[5].get_color()) == to_rgb(viz.instance_color(1))
    with pytest.raises(ValueError, match=r"skeleton\[1\] = \(0, 5\)"):
        viz.draw_instances(None, _image(), keypoints=kp, skeleton=[(0, 1), (0, 5)])
    # K = 17 without a skeleton: COCO's person skeleton (19 edges, 2 of them at the nose)
    kp17 = np.ones((2, 17, 3), np.float32) * 10
    kp17[1, 0, 2] = 0
    ax = viz.draw_instances(None, _image(), keypoints=kp17)
    assert len(ax.lines) == 19 + 17
    # other K without a skeleton: points only
    assert len(viz.draw_instances(None, _image(), keypoints=kp).lines) == 0


def test_draw_instances_mask_fills_the_right_pixels():
    h, w = 30, 40
    image = _image(h, w, 0.0)                                    # black
    masks = np.zeros((2, 1, h, w), np.float32)
    masks[0, 0, 5:15, 5:20] = 0.9                                # probability > 0.5: drawn
    masks[1, 0, 18:28, 25:38] = 0.4                              # <= 0.5: not part of the mask
    ax = _full_axes(h, w, scale=4)
    viz.draw_instances(ax, image, masks=masks, mask_alpha=0.5)
    pixels = _render(ax.figure).astype(np.float64)
    assert pixels.shape[:2] == (4 * h, 4 * w)
    inside = pixels[4 * 10 + 2, 4 * 12 + 2]                      # image pixel (y=10, x=12)
    expected = 0.5 * 255 * np.array(to_rgb(viz.instance_color(0)))
    np.testing.assert_allclose(inside, expected, atol=4)
    for y, x in ((2, 2), (22, 30), (25, 10)):                     # outside, and in the 0.4 region
        np.testing.assert_allclose(pixels[4 * y + 2, 4 * x + 2], 0, atol=1)


def test_draw_instances_rejects_bad_inputs():
    boxes = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="counts"):
        viz.draw_instances(None, _image(), boxes=boxes, labels=[1])
    with pytest.raises(ValueError, match=r"masks must have shape \(2, 40, 48\)"):
        viz.draw_instances(None, _image(), boxes=boxes, masks=np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalisation"):
        viz.draw_instances(None, _image(value=-2.0))
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(H, W, 3\)"):
        viz.draw_instances(None, np.zeros((4, 10, 10)))
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        viz.draw_instances(None, _image(), boxes=np.array([[0, 0, 1, 1], [0, np.nan, 1, 1]]))


# ---- ground truth beside predictions ----------------------------------------------------------

def _target_and_prediction(h=40, w=48):
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 5:15, 5:15] = 1
    masks[1, 20:30, 20:40] = 1
    target = {"boxes": np.array([[5, 5, 15, 15], [20, 20, 40, 30]], np.float32), "labels": np.array([1, 2]),
              "masks": masks}
    prediction = {"boxes": np.array([[6, 5, 15, 16], [20, 21, 39, 30], [0, 0, 9, 9]], np.float32),
                  "labels": np.array([1, 2, 3]), "scores": np.array([0.95, 0.7, 0.1], np.float32),
                  "masks": np.concatenate([masks, np.zeros((1, h, w), np.uint8)])[:, None].astype(np.float32)}
    return target, prediction


def test_show_gt_and_predictions():
    target, prediction = _target_and_prediction()
    fig = viz.show_gt_and_predictions(_image(), target, prediction, CLASS_NAMES, score_thresh=0.5)
    gt_ax, pred_ax = fig.axes
    assert len(gt_ax.patches) == 2 and len(pred_ax.patches) == 2
    assert gt_ax.get_title() == "ground truth (2)"
    assert "2 of 3 with score >= 0.5" in pred_ax.get_title()
    assert [t.get_text() for t in pred_ax.texts] == ["square 0.95", "circle 0.70"]


def test_show_gallery_rows():
    target, prediction = _target_and_prediction()
    fig = viz.show_gallery([_image()] * 3, [target] * 3, [prediction] * 3, CLASS_NAMES)
    assert len(fig.axes) == 6
    fig = viz.show_gallery([_image()] * 3, [target] * 3, None, max_images=2)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="3 images but only 1 predictions"):
        viz.show_gallery([_image()] * 3, None, [prediction])


# ---- anchors, proposals, RoIs -----------------------------------------------------------------

def test_draw_anchors_at_one_location():
    from minimrcnn.ops import AnchorGenerator, anchors_at
    gen = AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
    (anchors,) = gen((32, 32), [(8, 8)])
    cell = anchors_at(anchors, (8, 8), 4, 4, 9)                  # 9 anchors centred at (16, 16)
    labels = [f"a{i}" for i in range(9)]
    ax = viz.draw_anchors(None, _image(32, 32), cell, labels=labels)
    assert len(ax.patches) == 9
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert ax.get_xlim()[0] < -0.5 and ax.get_xlim()[1] > 31.5   # the 32-px anchors stick out
    cross = ax.lines[-1].get_xydata()[0]
    np.testing.assert_allclose(cross, [16, 16])
    # frame only, one legend entry per group (None: no entry)
    ax = viz.draw_anchors(None, None, cell, labels=["level 0"] + [None] * 8, image_size=(32, 32), colors="red")
    assert len(ax.patches) == 10 and len(ax.get_legend().get_texts()) == 1
    with pytest.raises(ValueError, match="image_size"):
        viz.draw_anchors(None, None, cell)


def test_draw_proposals_draws_the_top_scoring():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 30, (50, 2))
    proposals = np.concatenate([xy, xy + rng.uniform(2, 10, (50, 2))], axis=1)
    scores = rng.random(50)
    ax = viz.draw_proposals(None, _image(), proposals, scores, top=10)
    assert len(ax.patches) == 10
    drawn = sorted(p.get_xy() for p in ax.patches)
    best = np.argsort(-scores)[:10]
    assert drawn == sorted((proposals[i, 0], proposals[i, 1]) for i in best)
    assert len(ax.figure.axes) == 2                              # the image and the colour bar
    ax = viz.draw_proposals(None, _image(), proposals, top=5)
    assert len(ax.patches) == 5
    with pytest.raises(ValueError, match=r"scores must have shape \(50,\)"):
        viz.draw_proposals(None, _image(), proposals, scores[:3])


def test_draw_sampled_rois():
    rois = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4], [2, 2, 30, 30], [3, 3, 9, 9]], np.float32)
    labels = np.array([2, 0, 0, -1, 1])
    gt = np.array([[0, 0, 11, 11]], np.float32)
    ax = viz.draw_sampled_rois(None, _image(), rois, labels, gt_boxes=gt, class_names=CLASS_NAMES)
    assert len(ax.patches) == 6
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:4] == ["negative (2)", "ignored (1)", "positive (2)", "ground truth (1)"]
    assert "  square: 1" in texts and "  circle: 1" in texts
    styles = {tuple(p.get_xy()): p.get_linestyle() for p in ax.patches[:5]}
    assert styles[(5.0, 5.0)] == "--" and styles[(0.0, 0.0)] == "-"


# ---- feature maps, masks ----------------------------------------------------------------------

def test_draw_feature_maps_one_panel_per_level():
    rng = np.random.default_rng(0)
    feats = {"0": rng.standard_normal((1, 4, 16, 16)), "1": rng.standard_normal((1, 4, 8, 8)),
             "pool": rng.standard_normal((1, 4, 4, 4))}
    fig = viz.draw_feature_maps(feats, reduce="norm", strides={"0": 4, "1": 8, "pool": 16})
    images = [im for ax in fig.axes for im in ax.images if isinstance(im, AxesImage) and im.get_array().ndim == 2]
    assert len(images) == 3
    np.testing.assert_allclose(images[0].get_array(), np.linalg.norm(feats["0"][0], axis=0))
    assert fig.axes[0].get_title() == "0: 16x16, stride 4"
    fig = viz.draw_feature_maps([f[0] for f in feats.values()], reduce="mean")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), feats["0"][0].mean(axis=0))
    with pytest.raises(ValueError, match="reduce"):
        viz.draw_feature_maps(feats, reduce="max")


def test_draw_mask_probabilities_and_targets():
    rng = np.random.default_rng(0)
    probs = rng.random((5, 1, 14, 14))
    fig = viz.draw_mask_probabilities(probs, titles=[f"m{i}" for i in range(5)], ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and shown[4].get_title() == "m4"
    np.testing.assert_allclose(shown[2].images[0].get_array(), probs[2, 0])
    fig = viz.draw_mask_targets(rng.random((3, 14, 14)), probs[:3])
    assert sum(1 for ax in fig.axes if ax.images) == 6
    with pytest.raises(ValueError, match="one prediction per target"):
        viz.draw_mask_targets(rng.random((3, 14, 14)), probs)


# ---- curves -----------------------------------------------------------------------------------

def _write_metrics(path, n=60):
    with open(path, "w") as f:
        for i in range(n):
            rec = {"iter": i, "loss": 2.0 - i / n, "loss_classifier": 1.0 - i / (2 * n),
                   "loss_mask": 1.0 - i / (2 * n), "lr": 0.01 * min(1.0, (i + 1) / 10), "time": 0.1}
            f.write(json.dumps(rec) + "\n")
            if i in (29, 59):
                f.write(json.dumps({"iter": i, "val": {"bbox": {"AP": i / 100}, "segm": {"AP": i / 200}}}) + "\n")
        f.write("\n")


def test_plot_curves_reads_train_and_val_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_metrics(path)
    fig = viz.plot_curves(str(path), smooth=5)
    loss_ax, val_ax, lr_ax = fig.axes
    # raw + smoothed for loss_classifier, loss_mask and the total
    assert len(loss_ax.lines) == 6
    labels = [line.get_label() for line in loss_ax.lines if not line.get_label().startswith("_")]
    assert labels == ["loss_classifier", "loss_mask", "loss (total)"]
    raw_total, smooth_total = loss_ax.lines[4].get_ydata(), loss_ax.lines[5].get_ydata()
    assert len(raw_total) == 60
    np.testing.assert_allclose(smooth_total[10], raw_total[8:13].mean())
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata()[:3], [0.001, 0.002, 0.003])
    (bbox, segm) = val_ax.lines
    np.testing.assert_allclose(bbox.get_xdata(), [29, 59])
    np.testing.assert_allclose(segm.get_ydata(), [0.145, 0.295])
    # records instead of a file, and extra validation records
    train, val = read_metrics(path)
    assert len(train) == 60 and len(val) == 2
    fig = viz.plot_curves(train, val_records=[{"iter": 10, "bbox": {"AP": 0.05}}], show_lr=False)
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 1


def test_plot_curves_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"iter": 0, "loss": 1.0}\n\n{"iter": 1, "loss": \n')
    with pytest.raises(ValueError, match="bad.jsonl, line 3: not valid JSON"):
        viz.plot_curves(path)
    with pytest.raises(ValueError, match="record 1: expected a JSON object with an integer 'iter'"):
        viz.plot_curves([{"iter": 0, "loss": 1.0}, {"loss": 2.0}])
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax=\\(loss_ax, val_ax\\)"):
        viz.plot_curves([{"iter": 0, "loss": 1.0}, {"iter": 0, "val": {"bbox": {"AP": 0.1}}}], ax=ax)
    with pytest.raises(ValueError, match="empty"):
        viz.plot_curves([])


def test_moving_average_skips_non_finite_values():
    values = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(viz._moving_average(values, 3), [2.0, 2.0, 4.0, 6.0, 6.0])
    np.testing.assert_allclose(viz._moving_average(values, 1)[[0, 1, 3, 4]], [1, 3, 5, 7])
    assert np.isnan(viz._moving_average(values, 1)[2])


# ---- saving -----------------------------------------------------------------------------------

def test_save_figure_writes_a_png_atomically_and_closes(tmp_path):
    fig = viz.show_gt_and_predictions(_image(), *_target_and_prediction())
    path = tmp_path / "sub" / "pred.png"
    assert viz.save_figure(fig, path) == os.fspath(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    assert not plt.fignum_exists(fig.number)
    assert os.listdir(path.parent) == ["pred.png"]               # no temporary file left
    assert os.stat(path).st_mode & 0o044                          # readable by others, unlike mkstemp's 0600


def test_save_figure_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"old")
    fig, ax = plt.subplots()

    def broken_savefig(f, **kwargs):
        f.write(b"half a picture")
        raise RuntimeError("disk full")
    fig.savefig = broken_savefig
    with pytest.raises(RuntimeError, match="disk full"):
        viz.save_figure(ax, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["curves.png"]
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="extension"):
        viz.save_figure(plt.figure(), tmp_path / "x.nope")


# ---- inspect_model ----------------------------------------------------------------------------

def test_inspect_model_writes_every_stage(tmp_path):
    from minimrcnn.config import get_config
    from minimrcnn.engine.inspect import STAGES, inspect_model, run_stages
    from minimrcnn.models import build_model

    # resized 64 -> 256 (the sizes below follow from min_size / max_size)
    model = build_model(get_config("classroom_fpn", num_classes=4, min_size=256, max_size=320))
    image = np.full((3, 64, 64), 0.4, np.float32)
    image[0, 10:30, 10:30] = 0.9
    assert model.training
    paths = inspect_model(model, image, tmp_path / "inspect", class_names=CLASS_NAMES, score_thresh=0.0)
    assert model.training                                         # the mode is restored
    assert [os.path.basename(p) for p in paths] == [s + ".png" for s in STAGES]
    for p in paths:
        with Image.open(p) as im:
            im.verify()

    # the stages are those of the model's own forward: the final detections are predict's
    s = run_stages(model, image.astype(np.float64))             # cast to the model's float32, as predict
    pred = model.predict([image])[0]
    np.testing.assert_allclose(s["final"]["boxes"], pred["boxes"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s["final"]["masks"], pred["masks"], atol=1e-5)
    assert s["final"]["masks"].shape[-2:] == (64, 64) and s["detections"]["masks"].shape[-1] == 28
    rpn = model.rpn.eval()                                        # the test-time top-n values
    grid = [f.shape[-2:] for f in s["features"].values()]
    per_level = [h * w * 3 for h, w in grid]
    assert len(s["pre_nms_boxes"]) == sum(min(rpn.pre_nms_top_n(), n) for n in per_level)
    assert 0 < len(s["proposals"]) <= rpn.post_nms_top_n()
    assert np.all(np.diff(s["proposal_scores"]) <= 0)
    assert len(s["anchors"]) == 3 * len(grid)                     # 1 size x 3 ratios per level
    centres = (s["anchors"][:, :2] + s["anchors"][:, 2:]) / 2
    np.testing.assert_allclose(centres, 128, atol=1)              # all at the centre of the 256x256 input
    assert s["transformed"].shape == (3, 256, 256) and s["transformed"].min() >= 0
    with pytest.raises(ValueError, match=r"image must be a float \(3, H, W\)"):
        inspect_model(model, image[0], tmp_path)


def test_inspect_model_on_the_c4_model(tmp_path):
    """C4 (Figure 4 left): one feature map, res5 as the box head, 14x14 masks."""
    from minimrcnn.config import get_config
    from minimrcnn.engine.inspect import inspect_model, run_stages
    from minimrcnn.models import build_model

    model = build_model(get_config("classroom_c4", num_classes=4))
    image = np.full((3, 48, 64), 0.3, np.float32)
    paths = inspect_model(model, image, tmp_path, score_thresh=0.0)
    assert len(paths) == 7 and all(os.path.getsize(p) > 0 for p in paths)
    s = run_stages(model, image)
    assert list(s["features"]) == ["0"] and len(s["anchors"]) == 15      # 5 sizes x 3 ratios
    assert s["detections"]["masks"].shape[-1] == 14
