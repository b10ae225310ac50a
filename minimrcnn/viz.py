r"""Pictures of what the model sees and predicts (matplotlib; NumPy arrays in, Axes / Figure out).

Every ``draw_*`` function draws on the ``ax`` it is given (or on a new figure when ``ax`` is
None) and returns that Axes; the ``show_*``, ``plot_*`` and multi-panel functions return a
Figure. In a notebook the figures appear inline; scripts and the CLI write them with
:func:`save_figure` (atomic PNG at a fixed dpi, then the figure is closed). Nothing here calls
``plt.show()``.

    from minimrcnn import viz
    fig = viz.show_gt_and_predictions(image, target, prediction, ds.class_names, ds.skeleton)
    viz.save_figure(fig, "predictions.png")
    viz.save_figure(viz.plot_curves("OUT/metrics.jsonl"), "curves.png")

Conventions (those of the rest of minimrcnn): images are float RGB in [0, 1], (3, H, W) (an
(H, W, 3) array is accepted too); boxes are (N, 4) xyxy in the image's pixels; masks (N, H, W)
or (N, 1, H, W), binary or probabilities (a pixel is in the mask when its value is > 0.5);
keypoints (N, K, 3) [x, y, v], drawn where v > 0 (COCO visibility: 0 not labelled). Arrays may
be NumPy, CuPy or Tensors; they are copied to NumPy for drawing. Instance i always gets colour
``instance_color(i)``, so the same index has the same colour in every panel.

matplotlib is imported on first use (``import minimrcnn`` stays light); without a display (no
``$DISPLAY`` on Linux, no notebook, no ``$MPLBACKEND``) the non-interactive Agg backend is
selected.
"""
import numbers
import os
import sys

import numpy as np

from .backend import as_numpy
from .files import atomic_write

__all__ = ["DPI", "instance_color",
           "draw_instances", "show_gt_and_predictions", "show_gallery", "draw_anchors",
           "draw_proposals", "draw_sampled_rois", "draw_feature_maps", "draw_mask_probabilities",
           "draw_mask_targets", "plot_curves", "save_figure"]

#: Resolution of every saved figure (dots per inch).
DPI = 100

# matplotlib's "tab10" colours, then "tab20"'s lighter ones: distinct on photos and on black
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")

_POSITIVE, _NEGATIVE, _IGNORED, _GT = "#2ca02c", "#d62728", "#7f7f7f", "#ffd700"


def instance_color(i):
    """The colour (hex string) of instance ``i``: a fixed 20-colour palette, cycled."""
    return _PALETTE[int(i) % len(_PALETTE)]


# ---- matplotlib, lazily ----------------------------------------------------------------------

def _has_display():
    if os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules:
        return True                     # the user (or Jupyter) chose a backend
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True                         # macOS / Windows always have a window system


def _pyplot():
    """matplotlib.pyplot, with the Agg backend selected first when there is no display."""
    if "matplotlib.pyplot" not in sys.modules and not _has_display():
        import matplotlib
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _new_axes(ax, figsize=(5, 5)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _figure_of(fig_or_ax):
    """The Figure itself, or the Figure of an Axes (None for anything else)."""
    return fig_or_ax if hasattr(fig_or_ax, "savefig") else getattr(fig_or_ax, "figure", None)


# ---- input checks ----------------------------------------------------------------------------

def _as_image(image, name="image"):
    """``image`` as a float64 (H, W, 3) array in [0, 1] for ``imshow``.

    Accepts (3, H, W) (the project's layout; a (3, H, 3) array is read as CHW), (H, W, 3),
    (H, W) grey, floats in [0, 1] (tolerance 1e-3, then clipped) or uint8 (divided by 255)."""
    if image is None:
        raise ValueError(f"{name} is required, got None")
    img = as_numpy(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    elif img.ndim == 3 and img.shape[0] == 3:
        img = img.transpose(1, 2, 0)
    elif not (img.ndim == 3 and img.shape[-1] == 3):
        raise ValueError(f"{name} must be an RGB image of shape (3, H, W) or (H, W, 3), got shape "
                         f"{tuple(img.shape)}")
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if img.size and not np.isfinite(img).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} values must be in [0, 1] (RGB), got min {lo:.4g} and max {hi:.4g}; "
                         f"undo the normalisation (x * std + mean) before drawing")
    return np.clip(img, 0.0, 1.0)


def _as_boxes(boxes, name, n=None):
    b = as_numpy(boxes).astype(np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (x1, y1, x2, y2), got {tuple(b.shape)}")
    if n is not None and b.shape[0] != n:
        raise ValueError(f"{name} has {b.shape[0]} rows but {n} were expected")
    if not np.isfinite(b).all():
        i = int(np.flatnonzero(~np.isfinite(b).all(axis=1))[0])
        raise ValueError(f"{name}[{i}] = {b[i].tolist()} is not finite")
    return b


def _as_vector(values, name, n, dtype):
    v = as_numpy(values)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one per instance), got {tuple(v.shape)}")
    return v.astype(dtype)


def _as_masks(masks, name, n, size):
    """(N, H, W) or (N, 1, H, W) -> boolean (N, H, W), value > 0.5."""
    m = as_numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != n or tuple(m.shape[1:]) != tuple(size):
        raise ValueError(f"{name} must have shape ({n}, {size[0]}, {size[1]}) or ({n}, 1, {size[0]}, "
                         f"{size[1]}) (one image-sized mask per instance), got {tuple(as_numpy(masks).shape)}")
    return m > 0.5


def _check_skeleton(skeleton, num_keypoints):
    if skeleton is None:
        if num_keypoints != 17:
            return ()
        # COCO's person skeleton, one home: minimrcnn.data (1-based there, as in COCO files)
        from .data.coco import COCO_PERSON_SKELETON
        return tuple((a - 1, b - 1) for a, b in COCO_PERSON_SKELETON)
    pairs = []
    for e, edge in enumerate(skeleton):
        try:
            a, b = (int(v) for v in edge)
        except (TypeError, ValueError):
            raise ValueError(f"skeleton[{e}] must be a pair of keypoint indices, got {edge!r}") from None
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"skeleton[{e}] = {(a, b)} refers to a keypoint outside 0..{num_keypoints - 1} "
                             f"(skeleton pairs are 0-based)")
        pairs.append((a, b))
    return tuple(pairs)


def _class_name(label, class_names):
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


# ---- instances: boxes, masks, keypoints --------------------------------------------------------

def draw_instances(ax, image, boxes=None, labels=None, scores=None, masks=None, keypoints=None,
                   class_names=None, skeleton=None, score_thresh=0.5, title=None, mask_alpha=0.45):
    """Draw an image and its instances (ground truth or detections) on ``ax``.

    image: (3, H, W) or (H, W, 3) RGB in [0, 1]; boxes (N, 4) xyxy; labels (N,) class indices
    (named by ``class_names[label]``); scores (N,): instances with score < ``score_thresh`` are
    not drawn (without scores all are); masks (N, H, W) or (N, 1, H, W), pixels > 0.5 filled
    with the instance's colour at ``mask_alpha`` and outlined; keypoints (N, K, 3) [x, y, v],
    points with v > 0 and the ``skeleton`` lines (0-based pairs, as ``ds.skeleton``; default
    COCO's person skeleton when K = 17) between two such points.

    Artists: one Rectangle patch per drawn box, one Line2D per drawn skeleton edge, one point
    collection per instance with keypoints. Instance i (its index in the inputs) has colour
    :func:`instance_color` (i). Returns the Axes (a new figure's when ``ax`` is None).
    """
    img = _as_image(image)
    height, width = img.shape[:2]
    given = {k: v for k, v in (("boxes", boxes), ("labels", labels), ("scores", scores), ("masks", masks),
                               ("keypoints", keypoints)) if v is not None}
    counts = {}
    for k, v in given.items():
        shape = as_numpy(v).shape
        if not shape:
            raise ValueError(f"{k} must be an array with one entry per instance, got a scalar {v!r}")
        counts[k] = int(shape[0])
    if len(set(counts.values())) > 1:
        raise ValueError(f"boxes, labels, scores, masks and keypoints must have one entry per instance, "
                         f"got counts {counts}")
    n = next(iter(counts.values()), 0)
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, numbers.Real):
        raise ValueError(f"score_thresh must be a number, got {score_thresh!r}")
    if boxes is not None:
        boxes = _as_boxes(boxes, "boxes", n)
    if labels is not None:
        labels = _as_vector(labels, "labels", n, np.int64)
    if scores is not None:
        scores = _as_vector(scores, "scores", n, np.float64)
    if masks is not None:
        masks = _as_masks(masks, "masks", n, (height, width))
    if keypoints is not None:
        keypoints = as_numpy(keypoints).astype(np.float64)
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must have shape (N, K, 3) [x, y, visibility], got "
                             f"{tuple(keypoints.shape)}")
        skeleton = _check_skeleton(skeleton, keypoints.shape[1])

    ax = _new_axes(ax)
    ax.imshow(img, interpolation="nearest")
    keep = np.arange(n) if scores is None else np.flatnonzero(scores >= score_thresh)

    if masks is not None and keep.size:
        from matplotlib.colors import to_rgb
        overlay = np.zeros((height, width, 4))                     # RGBA, transparent
        for i in keep:
            overlay[masks[i]] = (*to_rgb(instance_color(i)), mask_alpha)
        ax.imshow(overlay, interpolation="nearest")
        for i in keep:
            if masks[i].any():
                ax.contour(masks[i].astype(np.float64), levels=[0.5], colors=[instance_color(i)],
                           linewidths=1.0)

    for i in keep:
        color = instance_color(i)
        if boxes is not None:
            from matplotlib.patches import Rectangle
            x1, y1, x2, y2 = boxes[i]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5))
            caption = []
            if labels is not None:
                caption.append(_class_name(int(labels[i]), class_names))
            if scores is not None:
                caption.append(f"{scores[i]:.2f}")
            if caption:
                ax.text(x1, y1, " ".join(caption), color="white", fontsize=7, va="bottom", ha="left",
                        bbox=dict(facecolor=color, edgecolor="none", alpha=0.8, pad=1))
        if keypoints is not None:
            kp = keypoints[i]
            visible = kp[:, 2] > 0
            for a, b in skeleton:
                if visible[a] and visible[b]:
                    ax.plot([kp[a, 0], kp[b, 0]], [kp[a, 1], kp[b, 1]], color=color, linewidth=1.5)
            if visible.any():
                ax.scatter(kp[visible, 0], kp[visible, 1], s=10, color=color, edgecolors="white",
                           linewidths=0.5, zorder=3)

    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)          # image coordinates: y grows downwards
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def _draw_record(ax, image, record, class_names, skeleton, score_thresh, title):
    """draw_instances with the arrays of a target / prediction dict."""
    if not hasattr(record, "keys"):
        raise ValueError(f"{title}: expected a dict of arrays (boxes, labels, ...), got {type(record).__name__}")
    kwargs = {k: record[k] for k in ("boxes", "labels", "scores", "masks", "keypoints") if k in record}
    return draw_instances(ax, image, class_names=class_names, skeleton=skeleton,
                          score_thresh=score_thresh, **kwargs)


def _record_title(kind, record, score_thresh):
    n = int(as_numpy(record["boxes"]).reshape(-1, 4).shape[0]) if "boxes" in record else 0
    if "scores" not in record:
        return f"{kind} ({n})"
    scores = as_numpy(record["scores"]).reshape(-1)
    shown = int((scores >= score_thresh).sum())
    best = f", best {scores.max():.2f}" if scores.size else ""
    return f"{kind} ({shown} of {n} with score >= {score_thresh:g}{best})"


def show_gt_and_predictions(image, target, prediction, class_names=None, skeleton=None, score_thresh=0.5,
                            panel_size=4.0):
    """A Figure with the ground truth (left) beside the predictions (right) of one image.

    target: a dataset target dict ("boxes", "labels", "masks", "keypoints"); prediction: a
    ``model.predict`` dict ("scores" too; those below ``score_thresh`` are not drawn).
    """
    return show_gallery([image], [target], [prediction], class_names, skeleton, score_thresh, panel_size)


def show_gallery(images, targets=None, predictions=None, class_names=None, skeleton=None, score_thresh=0.5,
                 panel_size=3.0, max_images=None):
    """Several images in rows: ground truth | predictions (either column may be left out by
    passing None). Returns the Figure (``len(images)`` rows; the demo's predictions.png)."""
    images = list(images)
    if max_images is not None:
        images = images[:max_images]
    if not images:
        raise ValueError("images is empty: nothing to show")
    columns = [(kind, list(records)[:len(images)]) for kind, records in
               (("ground truth", targets), ("prediction", predictions)) if records is not None]
    if not columns:
        raise ValueError("show_gallery needs targets or predictions (both are None)")
    for kind, records in columns:
        if len(records) < len(images):
            raise ValueError(f"{len(images)} images but only {len(records)} "
                             f"{'targets' if kind == 'ground truth' else 'predictions'}")
    plt = _pyplot()
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False,
                             figsize=(panel_size * len(columns), panel_size * len(images)))
    for r, image in enumerate(images):
        for c, (kind, records) in enumerate(columns):
            thresh = score_thresh if kind == "prediction" else -np.inf
            _draw_record(axes[r, c], image, records[r], class_names, skeleton, thresh, kind)
            axes[r, c].set_title(_record_title(kind, records[r], score_thresh), fontsize=8)
    fig.tight_layout()
    return fig


# ---- anchors, proposals, sampled RoIs ----------------------------------------------------------

def _draw_image_or_frame(ax, image, image_size):
    """Show ``image`` (or only the frame of an ``image_size`` (H, W) canvas); returns (H, W)."""
    if image is not None:
        img = _as_image(image)
        ax.imshow(img, interpolation="nearest")
        return img.shape[:2]
    if image_size is None:
        raise ValueError("pass image (3, H, W) or image_size (H, W)")
    from matplotlib.patches import Rectangle
    h, w = (int(v) for v in image_size)
    ax.add_patch(Rectangle((0, 0), w, h, fill=False, edgecolor="black", linestyle="--", linewidth=1))
    return h, w


def _add_boxes(ax, boxes, colors, linewidth=1.0, linestyle="-", alpha=1.0):
    from matplotlib.patches import Rectangle
    patches = []
    for (x1, y1, x2, y2), color in zip(boxes, colors):
        rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=linewidth,
                         linestyle=linestyle, alpha=alpha)
        ax.add_patch(rect)
        patches.append(rect)
    return patches


def _set_image_limits(ax, size, boxes=None, margin=5.0):
    """Limits that hold the image and (when given) every box; y grows downwards."""
    h, w = size
    lo_x, lo_y, hi_x, hi_y = -0.5, -0.5, w - 0.5, h - 0.5
    if boxes is not None and len(boxes):
        lo_x, lo_y = min(lo_x, boxes[:, 0].min() - margin), min(lo_y, boxes[:, 1].min() - margin)
        hi_x, hi_y = max(hi_x, boxes[:, 2].max() + margin), max(hi_y, boxes[:, 3].max() + margin)
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(hi_y, lo_y)
    ax.set_aspect("equal")


def draw_anchors(ax, image, anchors, labels=None, colors=None, linewidth=1.5, image_size=None,
                 title=None):
    """The anchors of one location (all sizes x aspect ratios, possibly of several levels).

    image: (3, H, W) RGB in [0, 1], or None with ``image_size`` (H, W) to draw only the image's
    frame; anchors: (A, 4) xyxy (e.g. ``ops.anchors_at(...)``); labels: one string per anchor
    (e.g. "32 px, h/w 0.5"; None: no legend entry for that anchor), shown in a legend;
    colors: one colour or one per anchor (default :func:`instance_color`). The limits grow to
    show anchors that stick out of the image, and the anchors' common centre (mean of their
    centres) is marked with a cross.
    One Rectangle patch per anchor. Returns the Axes.
    """
    anchors = _as_boxes(anchors, "anchors")
    if labels is not None and len(labels) != len(anchors):
        raise ValueError(f"labels has {len(labels)} entries but there are {len(anchors)} anchors")
    if colors is None:
        colors = [instance_color(i) for i in range(len(anchors))]
    elif isinstance(colors, str):
        colors = [colors] * len(anchors)
    elif len(colors) != len(anchors):
        raise ValueError(f"colors has {len(colors)} entries but there are {len(anchors)} anchors")
    ax = _new_axes(ax)
    size = _draw_image_or_frame(ax, image, image_size)
    patches = _add_boxes(ax, anchors, colors, linewidth=linewidth)
    if len(anchors):
        cx = (anchors[:, 0] + anchors[:, 2]).mean() / 2
        cy = (anchors[:, 1] + anchors[:, 3]).mean() / 2
        ax.plot([cx], [cy], marker="+", color="white", markersize=10, markeredgewidth=2)
    if labels is not None and any(label is not None for label in labels):
        handles = [p for p, label in zip(patches, labels) if label is not None]
        for patch, label in zip(patches, labels):
            if label is not None:
                patch.set_label(str(label))
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _set_image_limits(ax, size, anchors)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def draw_proposals(ax, image, proposals, scores=None, top=100, cmap="viridis", linewidth=0.8, title=None,
                   colorbar=True):
    """The ``top`` highest-scoring proposals (RPN boxes, before or after NMS).

    proposals: (R, 4) xyxy; scores: (R,) objectness probabilities (None: the first ``top``
    rows, drawn in one colour). Each box's colour is its score through ``cmap`` (scores in
    [0, 1] map absolutely, others by their range), with a colour bar. One Rectangle per drawn
    proposal, the best drawn last (on top). Returns the Axes.
    """
    proposals = _as_boxes(proposals, "proposals")
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 0:
        raise ValueError(f"top must be a non-negative int, got {top!r}")
    ax = _new_axes(ax)
    size = _draw_image_or_frame(ax, image, None)
    order = np.arange(len(proposals))
    if scores is not None:
        scores = _as_vector(scores, "scores", len(proposals), np.float64)
        order = np.argsort(-scores, kind="stable")
    order = order[:top]
    if scores is None:
        _add_boxes(ax, proposals[order], [_PALETTE[0]] * len(order), linewidth=linewidth)
    else:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize
        shown = scores[order]
        in_unit = shown.size == 0 or (shown.min() >= 0 and shown.max() <= 1)
        norm = Normalize(0.0, 1.0) if in_unit else Normalize(float(shown.min()), float(shown.max()))
        colormap = colormaps[cmap]
        _add_boxes(ax, proposals[order[::-1]], [colormap(norm(s)) for s in shown[::-1]], linewidth=linewidth)
        if colorbar:
            from matplotlib.cm import ScalarMappable
            cb = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=ax, fraction=0.046, pad=0.02)
            cb.set_label("objectness", fontsize=8)
            cb.ax.tick_params(labelsize=7)
    _set_image_limits(ax, size)
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"top {len(order)} of {len(proposals)} proposals", fontsize=9)
    return ax


def draw_sampled_rois(ax, image, rois, labels, gt_boxes=None, class_names=None, linewidth=1.0, title=None):
    """The RoIs sampled for the box head's loss, by their sampling label.

    rois: (R, 4) xyxy; labels: (R,) the RoI's class (> 0: positive, drawn solid green), 0
    (negative, dashed red) or -1 (ignored, dotted grey); gt_boxes: optional (G, 4) ground
    truth, drawn thick in gold. One Rectangle per RoI and per gt box, and a legend with the
    counts. Returns the Axes.
    """
    rois = _as_boxes(rois, "rois")
    labels = _as_vector(labels, "labels", len(rois), np.int64)
    ax = _new_axes(ax)
    size = _draw_image_or_frame(ax, image, None)
    groups = [("negative", labels == 0, _NEGATIVE, "--"), ("ignored", labels < 0, _IGNORED, ":"),
              ("positive", labels > 0, _POSITIVE, "-")]          # positives last: on top
    from matplotlib.lines import Line2D
    handles = []
    for name, sel, color, style in groups:
        if sel.any():
            _add_boxes(ax, rois[sel], [color] * int(sel.sum()), linewidth=linewidth, linestyle=style)
            handles.append(Line2D([], [], color=color, linestyle=style, label=f"{name} ({int(sel.sum())})"))
    if gt_boxes is not None:
        gt_boxes = _as_boxes(gt_boxes, "gt_boxes")
        _add_boxes(ax, gt_boxes, [_GT] * len(gt_boxes), linewidth=2.5)
        handles.append(Line2D([], [], color=_GT, linewidth=2.5, label=f"ground truth ({len(gt_boxes)})"))
    if class_names is not None:
        pos = labels[labels > 0]
        counts = {int(c): int((pos == c).sum()) for c in np.unique(pos)}
        for c, k in counts.items():
            handles.append(Line2D([], [], color="none", label=f"  {_class_name(c, class_names)}: {k}"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _set_image_limits(ax, size)
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"{len(rois)} sampled RoIs", fontsize=9)
    return ax


# ---- feature maps and masks ------------------------------------------------------------------

def draw_feature_maps(features, reduce="norm", image_index=0, strides=None, cmap="magma", panel_size=3.0,
                      title=None):
    """One panel per feature map (e.g. per FPN level): each location's channel summary.

    features: a dict name -> (N, C, H, W) (or (C, H, W)) array or Tensor, or a list of them;
    reduce: "norm" ($\\lVert f_{:, y, x} \\rVert_2$ over the C channels) or "mean" (their
    mean); image_index: the image of the batch; strides: optional dict name -> stride for the
    titles. Every panel has its own colour scale. Returns the Figure.
    """
    if reduce not in ("norm", "mean"):
        raise ValueError(f"reduce must be 'norm' or 'mean', got {reduce!r}")
    items = list(features.items()) if hasattr(features, "items") else [(str(i), f) for i, f in enumerate(features)]
    if not items:
        raise ValueError("features is empty: nothing to draw")
    maps = []
    for name, f in items:
        a = as_numpy(f)
        if a.ndim == 4:
            if not 0 <= image_index < a.shape[0]:
                raise ValueError(f"image_index {image_index} is outside the batch of {a.shape[0]} "
                                 f"(feature map {name!r})")
            a = a[image_index]
        if a.ndim != 3:
            raise ValueError(f"feature map {name!r} must be (N, C, H, W) or (C, H, W), got shape {tuple(a.shape)}")
        a = a.astype(np.float64)
        maps.append((name, np.sqrt((a * a).sum(axis=0)) if reduce == "norm" else a.mean(axis=0), a.shape[0]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps), squeeze=False, figsize=(panel_size * len(maps), panel_size + 0.6))
    for ax, (name, m, channels) in zip(axes[0], maps):
        im = ax.imshow(m, cmap=cmap, interpolation="nearest")
        stride = f", stride {strides[name]}" if strides is not None and name in strides else ""
        ax.set_title(f"{name}: {m.shape[0]}x{m.shape[1]}{stride}", fontsize=9)
        ax.set_axis_off()
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
    what = "L2 norm" if reduce == "norm" else "mean"
    fig.suptitle(title if title is not None else f"feature maps: {what} over the {maps[0][2]} channels",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _as_mask_stack(masks, name):
    m = as_numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"{name} must be (N, m, m) or (N, 1, m, m), got shape {tuple(as_numpy(masks).shape)}")
    return m.astype(np.float64)


def _mask_grid(rows, titles, ncols, panel_size, suptitle):
    """rows: list of (row name, (N, m, m) stack); one panel per mask, values 0..1 (viridis)."""
    plt = _pyplot()
    n = rows[0][1].shape[0]
    per_row = max(1, min(ncols, n))
    lines = -(-n // per_row) if n else 1                  # grid lines per row kind
    fig, axes = plt.subplots(lines * len(rows), per_row, squeeze=False,
                             figsize=(panel_size * per_row, (panel_size + 0.3) * lines * len(rows)))
    for ax in axes.ravel():
        ax.set_axis_off()
    for r, (row_name, stack) in enumerate(rows):
        for i in range(n):
            ax = axes[r * lines + i // per_row, i % per_row]
            ax.imshow(stack[i], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            label = titles[i] if titles is not None else f"#{i}"
            ax.set_title(f"{row_name}: {label}" if len(rows) > 1 else label, fontsize=7)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def draw_mask_probabilities(masks, titles=None, max_masks=16, ncols=8, panel_size=1.4, title=None):
    """The m x m mask probabilities of detections before they are pasted into the image
    (the mask head's output for the predicted class, RoI coordinates), one panel each.

    masks: (N, m, m) or (N, 1, m, m) in [0, 1]; titles: one string per mask (e.g. "circle 0.93");
    at most ``max_masks`` are drawn. Returns the Figure.
    """
    stack = _as_mask_stack(masks, "masks")[:max_masks]
    if titles is not None and len(titles) < stack.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries for {stack.shape[0]} masks")
    m = stack.shape[-1]
    return _mask_grid([("prediction", stack)], titles, ncols, panel_size,
                      title if title is not None else f"mask probabilities, {m}x{m} per RoI (before pasting)")


def draw_mask_targets(mask_targets, mask_probs=None, titles=None, max_rois=8, panel_size=1.4, title=None):
    """The mask targets of positive RoIs (the gt mask cut out by RoIAlign at m x m, what
    ``loss_mask`` compares with) above the predicted probabilities of the same RoIs.

    mask_targets: (P, m, m) in [0, 1]; mask_probs: optional (P, m, m) (or (P, 1, m, m)).
    Returns the Figure.
    """
    targets = _as_mask_stack(mask_targets, "mask_targets")[:max_rois]
    rows = [("target", targets)]
    if mask_probs is not None:
        probs = _as_mask_stack(mask_probs, "mask_probs")[:max_rois]
        if probs.shape != targets.shape:
            raise ValueError(f"mask_probs has shape {probs.shape[1:]} x {probs.shape[0]} but mask_targets "
                             f"{targets.shape[1:]} x {targets.shape[0]}: one prediction per target")
        rows.append(("predicted", probs))
    if titles is not None and len(titles) < targets.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries for {targets.shape[0]} RoIs")
    m = targets.shape[-1]
    return _mask_grid(rows, titles, max_rois, panel_size,
                      title if title is not None else f"mask targets ({m}x{m}) and predictions")


# ---- training curves -------------------------------------------------------------------------

def _moving_average(values, window):
    """Centred moving average: the mean of the finite values among the ``window`` points
    around each point (fewer at the ends; NaN where there are none), so the smooth curve does
    not lag behind the raw one."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(len(values))
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx + (window - window // 2), len(values))     # window points: [lo, hi)
    count = ccount[hi] - ccount[lo]
    return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def plot_curves(metrics_jsonl_path_or_records, val_records=None, ax=None, smooth=20, show_lr=True):
    """Training losses per iteration and validation AP vs iteration.

    metrics_jsonl_path_or_records: a metrics.jsonl path or a list of records (see
    :func:`read_metrics`; training and validation lines may be mixed); val_records: more
    validation records (``{"iter": i, "val": {...}}``, or ``{"iter": i, "bbox": {"AP": ..}}``).
    Panel 1: each "loss*" key (and the total "loss", or the sum of the parts when the log has
    no total) against "iter", the raw values faint and their centred ``smooth``-point moving
    average on top; the learning rate "lr" on a twin axis when ``show_lr``. Panel 2 (only when
    there are validation records): "AP" of each task (bbox, segm, keypoints) against "iter".
    ax: None (a new figure), one Axes (losses only; an error if there are validation records)
    or a pair of Axes. Returns the Figure.
    """
    if isinstance(smooth, bool) or not isinstance(smooth, numbers.Integral) or smooth < 1:
        raise ValueError(f"smooth must be a positive int (points in the moving average), got {smooth!r}")
    from .engine.trainer import read_metrics   # the trainer writes the format; one reader
    train, val = read_metrics(metrics_jsonl_path_or_records)
    if val_records is not None:
        for i, r in enumerate(val_records):
            if not isinstance(r, dict) or "iter" not in r:
                raise ValueError(f"val_records[{i}] must be a dict with 'iter', got {str(r)[:80]}")
            tasks = {k: v for k, v in r.items() if k != "iter"}
            val.append(r if "val" in r else {"iter": r["iter"], "val": tasks})
        val.sort(key=lambda r: r["iter"])
    if not train and not val:
        raise ValueError("plot_curves: no records to plot (the log is empty)")

    plt = _pyplot()
    if ax is None:
        fig, axes = plt.subplots(1, 2 if val else 1, squeeze=False, figsize=(11 if val else 6.5, 4))
        loss_ax, val_ax = axes[0, 0], (axes[0, 1] if val else None)
    elif hasattr(ax, "plot"):
        if val:
            raise ValueError("plot_curves: the log has validation records; pass ax=(loss_ax, val_ax) or ax=None")
        loss_ax, val_ax = ax, None
    else:
        loss_ax, val_ax = ax
    fig = loss_ax.figure

    iters = np.array([r["iter"] for r in train], dtype=np.int64)
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss") and k != "loss"})
    series = {k: np.array([float(r.get(k, np.nan)) for r in train]) for k in loss_keys}
    if any("loss" in r for r in train):
        total = np.array([float(r.get("loss", np.nan)) for r in train])
    else:
        total = np.sum([series[k] for k in loss_keys], axis=0) if loss_keys else None
    curves = [(k, series[k], instance_color(i)) for i, k in enumerate(loss_keys)]
    if total is not None:
        curves.append(("loss (total)", total, "black"))
    for name, values, color in curves:
        loss_ax.plot(iters, values, color=color, alpha=0.2, linewidth=0.8)
        loss_ax.plot(iters, _moving_average(values, smooth), color=color, linewidth=1.6, label=name)
    loss_ax.set_xlabel("iteration")
    loss_ax.set_ylabel(f"loss (moving average of {smooth})")
    loss_ax.set_title("training losses", fontsize=10)
    loss_ax.grid(alpha=0.3)
    handles, names = loss_ax.get_legend_handles_labels()
    lrs = np.array([float(r.get("lr", np.nan)) for r in train])
    if show_lr and np.isfinite(lrs).any():
        lr_ax = loss_ax.twinx()
        (lr_line,) = lr_ax.plot(iters, lrs, color="tab:gray", linestyle="--", linewidth=1.0, label="lr")
        lr_ax.set_ylabel("learning rate", color="tab:gray")
        lr_ax.tick_params(axis="y", labelcolor="tab:gray", labelsize=7)
        handles, names = handles + [lr_line], names + ["lr"]
    if handles:
        loss_ax.legend(handles, names, fontsize=7, loc="upper right")

    if val_ax is not None:
        val_iters = np.array([r["iter"] for r in val])
        tasks = [t for t in ("bbox", "segm", "keypoints") if any(t in r["val"] for r in val)]
        tasks += sorted({t for r in val for t, v in r["val"].items()
                         if t not in tasks and isinstance(v, dict) and "AP" in v and t != "per_class"})
        for i, task in enumerate(tasks):
            ap = np.array([float(r["val"].get(task, {}).get("AP", np.nan)) for r in val])
            ap[ap < 0] = np.nan                   # COCOeval's -1: no ground truth for this task
            val_ax.plot(val_iters, ap, marker="o", color=instance_color(i), label=f"{task} AP")
        val_ax.set_xlabel("iteration")
        val_ax.set_ylabel("AP (COCO, IoU .50:.95)")
        val_ax.set_ylim(0, 1)
        val_ax.set_title("validation", fontsize=10)
        val_ax.grid(alpha=0.3)
        if tasks:
            val_ax.legend(fontsize=7, loc="lower right")
    if ax is None:
        fig.tight_layout()
    return fig


# ---- saving ----------------------------------------------------------------------------------

def save_figure(fig, path, dpi=DPI):
    """Write ``fig`` (a Figure, or an Axes of it) to ``path`` and close it.

    The format comes from the extension (.png, .pdf, .svg, .jpg); the file is written to a
    temporary name in the same directory and renamed into place (``os.replace``), so a reader
    never sees half a picture. Parent directories are created. Returns ``path``.
    """
    fig = _figure_of(fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure or Axes, got {type(fig).__name__}")
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"path {path!r}: the extension must be one of {sorted(supported)}")
    plt = _pyplot()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
