r"""One picture per stage of one image through a model (``python -m minimrcnn inspect``).

:func:`run_stages` runs the four stages of :class:`~minimrcnn.models.MaskRCNN` one at a time
(the order of ``MaskRCNN.forward``), in eval mode without gradients, and keeps what each one
produced as NumPy arrays; :func:`inspect_model` draws them with :mod:`minimrcnn.viz`:

    01_input        the image, and the transform's output: resized, zero-padded to a multiple of
                    32 and normalised (shown denormalised, the padding outlined)
    02_fpn_levels   the backbone's feature maps, one panel per level (L2 norm over channels)
    03_anchors      the anchors of the central location of every level (sizes x aspect ratios)
    04_proposals    RPN boxes before NMS (the ``pre_nms_top_n`` best of each level, decoded and
                    clipped) and after NMS (the proposals the RoI heads get)
    05_rois         the box head on the proposals: the RoIs it scores highest, before and after
                    their class-specific box refinement
    06_masks        the mask head's m x m probabilities of the detections, before pasting
    07_final        the detections in the input image (masks pasted), as ``model.predict``

    from minimrcnn.engine.inspect import inspect_model
    paths = inspect_model(model, image, "inspect/", class_names=ds.class_names)
"""
import numbers
import os
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..autograd.tensor import as_array
from ..backend import as_numpy, device_of, get_array_module, to_device
from ..ops import anchors_at, clip_boxes_to_image

__all__ = ["run_stages", "inspect_model", "STAGES"]

STAGES = ("01_input", "02_fpn_levels", "03_anchors", "04_proposals", "05_rois", "06_masks", "07_final")


def _check_inputs(model, image):
    missing = [name for name in ("transform", "backbone", "rpn", "roi_heads") if not hasattr(model, name)]
    if missing:
        raise TypeError(f"model must be a MaskRCNN (with transform, backbone, rpn and roi_heads), got "
                        f"{type(model).__name__} without {', '.join(missing)}")
    shape = tuple(getattr(as_array(image), "shape", ()))
    if len(shape) != 3 or shape[0] != 3 or min(shape) == 0:
        raise ValueError(f"image must be a float (3, H, W) RGB array in [0, 1], got shape {shape}")
    if as_array(image).dtype.kind != "f":
        raise TypeError(f"image must be floating (RGB in [0, 1]), got dtype {as_array(image).dtype}")


def run_stages(model, image):
    """Run ``model`` on one image stage by stage; returns a dict of NumPy arrays.

    image: float (3, H, W) RGB in [0, 1] (cast to the model's dtype, moved to its device). Keys:
      "input" (3, H, W); "transformed" (3, Hp, Wp) the padded batch image, denormalised
      ($x \\sigma + \\mu$) to [0, 1]; "image_size" (h, w) after the resize; "padded_size" (Hp, Wp);
      "features" OrderedDict name -> (C, H_l, W_l); "strides" dict name -> anchor stride;
      "anchors" (sum_l A_l, 4) of the central location of every level, ordered level, then
      aspect ratio, then size, with "anchor_levels" (level index of each row) and
      "anchor_labels" (a legend text on each level's first row, None on the others);
      "pre_nms_boxes" (K, 4), "pre_nms_scores" (K,): per level the ``rpn.pre_nms_top_n()``
      anchors of highest objectness, decoded and clipped (K = sum over levels);
      "proposals" (R, 4), "proposal_scores" (R,): the RPN's output after NMS, by decreasing
      objectness (the RoI heads' input);
      "roi_labels" (R,), "roi_scores" (R,), "roi_boxes" (R, 4): for each proposal the
      foreground class the box head scores highest, that softmax probability and the proposal
      refined by that class's deltas (clipped);
      "detections": the RoI heads' output in resized-image pixels, "masks" (D, 1, m, m) before
      pasting; "final": the same after ``transform.postprocess`` (input-image pixels, masks
      (D, 1, H, W)), what ``model.predict`` returns.
    """
    _check_inputs(model, image)
    # the parameters' dtype and device (float32 on the CPU for a model without parameters)
    param = next((p for p in model.parameters() if p.dtype.kind == "f"), None)
    dtype, device = (np.dtype(np.float32), "cpu") if param is None else (param.dtype, device_of(param))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return _run_stages(model, image, dtype, device)
    finally:
        model.train(was_training)


def _run_stages(model, image, dtype, device):
    out = {"input": as_numpy(as_array(image))}
    image = as_array(image)
    if device_of(image) != device:
        image = to_device(image, device)
    image = image.astype(dtype, copy=False)              # e.g. a float64 image, as predict does
    original_size = (int(image.shape[-2]), int(image.shape[-1]))

    # 1. transform: normalise, resize, pad
    transform = model.transform
    images, _ = transform([image])
    batch = as_numpy(images.tensors)[0]                                        # (3, Hp, Wp)
    mean = np.asarray(transform.image_mean, dtype=batch.dtype)[:, None, None]
    std = np.asarray(transform.image_std, dtype=batch.dtype)[:, None, None]
    out["transformed"] = np.clip(batch * std + mean, 0.0, 1.0)
    out["image_size"] = tuple(images.image_sizes[0])
    out["padded_size"] = tuple(int(s) for s in images.tensors.shape[-2:])

    # 2. backbone
    features = model.backbone(images.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    out["features"] = OrderedDict((name, as_numpy(f)[0]) for name, f in features.items())

    # 3. anchors: every level's grid, and the anchors of its central cell
    rpn = model.rpn
    feature_maps = list(features.values())
    grid_sizes = [tuple(int(s) for s in f.shape[-2:]) for f in feature_maps]
    generator = rpn.anchor_generator
    anchors_per_level = generator(out["padded_size"], grid_sizes, dtype=feature_maps[0].dtype, device=device)
    strides = generator.strides(out["padded_size"], grid_sizes)
    out["strides"] = {name: s[0] if s[0] == s[1] else s for name, s in zip(features, strides)}
    central, labels, levels = [], [], []
    for level, (name, anchors, (h, w)) in enumerate(zip(features, anchors_per_level, grid_sizes)):
        sizes, ratios = generator.sizes[level], generator.aspect_ratios[level]
        cell = as_numpy(anchors_at(anchors, (h, w), h // 2, w // 2, len(sizes) * len(ratios)))
        central.append(cell)
        # one legend entry per level (row i * len(sizes) + j of a cell is ratio i, size j)
        labels += [f"level {name} (stride {out['strides'][name]}): {', '.join(map(str, sizes))} px, "
                   f"h/w {', '.join(f'{r:g}' for r in ratios)}"] + [None] * (len(cell) - 1)
        levels += [level] * len(cell)
    out["anchors"] = np.concatenate(central, axis=0)
    out["anchor_labels"] = labels
    out["anchor_levels"] = np.asarray(levels)

    # 4. RPN: objectness and deltas of every anchor, then the proposals before / after NMS
    from ..modeling.rpn import concat_box_prediction_layers
    objectness, deltas = rpn.head(feature_maps)                    # L x (1, A, h, w), L x (1, A*4, h, w)
    num_anchors_per_level = [int(o.shape[1] * o.shape[2] * o.shape[3]) for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)      # (T, 1), (T, 4)
    xp = get_array_module(objectness.data)
    all_anchors = xp.concatenate(anchors_per_level, axis=0)                    # (T, 4)
    logits = objectness.data.reshape(-1)
    deltas = deltas.data.reshape(-1, 4)
    top_idx, offset = [], 0
    for n in num_anchors_per_level:
        top_idx.append(xp.argsort(-logits[offset:offset + n], kind="stable")[:rpn.pre_nms_top_n()] + offset)
        offset += n
    top_idx = xp.concatenate(top_idx)
    pre_nms = rpn.box_coder.decode(deltas[top_idx], all_anchors[top_idx])      # (K, 4)
    out["pre_nms_boxes"] = as_numpy(clip_boxes_to_image(pre_nms, out["image_size"]))
    out["pre_nms_scores"] = as_numpy(F.sigmoid(Tensor(logits[top_idx])).data)
    proposals, proposal_scores = rpn.filter_proposals(
        deltas[None], logits[None], all_anchors, images.image_sizes, num_anchors_per_level)
    out["proposals"] = as_numpy(proposals[0])
    out["proposal_scores"] = as_numpy(proposal_scores[0])

    # 5. box head on the proposals (the RoI heads' test-time input)
    roi_heads = model.roi_heads
    box_features = roi_heads.box_head(roi_heads.box_roi_pool(features, proposals, images.image_sizes))
    class_logits, box_regression = roi_heads.box_predictor(box_features)      # (R, K), (R, 4K)
    probs = F.softmax(class_logits, dim=-1).data
    num_rois, num_classes = probs.shape
    best = xp.argmax(probs[:, 1:], axis=1) + 1                                 # foreground only
    rows = xp.arange(num_rois)
    refined = roi_heads.box_coder.decode(box_regression.data, proposals[0]).reshape(num_rois, num_classes, 4)
    out["roi_labels"] = as_numpy(best).astype(np.int64)
    out["roi_scores"] = as_numpy(probs[rows, best])
    out["roi_boxes"] = as_numpy(clip_boxes_to_image(refined[rows, best], out["image_size"]))

    # 6. + 7. the RoI heads' detections (masks before pasting), then back to the input image
    detections, _ = roi_heads(features, proposals, images.image_sizes)
    out["detections"] = {k: as_numpy(as_array(v)) for k, v in detections[0].items()}
    final = transform.postprocess([dict(detections[0])], images.image_sizes, [original_size])
    out["final"] = {k: as_numpy(as_array(v)) for k, v in final[0].items()}
    return out


def _name(label, class_names):
    if class_names is not None and 0 <= int(label) < len(class_names):
        return str(class_names[int(label)])
    return str(int(label))


def inspect_model(model, image, out_dir, class_names=None, score_thresh=0.5, skeleton=None, top=100,
                  top_rois=20):
    """Write one PNG per stage of ``image`` through ``model`` into ``out_dir``; returns their paths.

    image: float32 (3, H, W) RGB in [0, 1]; class_names: label -> name (``ds.class_names``);
    score_thresh: detections drawn in 06 / 07; skeleton: keypoint pairs (default COCO's for 17
    keypoints); top: proposals drawn per panel in 04; top_rois: RoIs drawn in 05. The files are
    ``out_dir/{01_input, ..., 07_final}.png`` (see the module docstring). The model's
    train/eval mode is restored afterwards.
    """
    from .. import viz

    for name, v in (("top", top), ("top_rois", top_rois)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, numbers.Real):
        raise ValueError(f"score_thresh must be a number, got {score_thresh!r}")
    s = run_stages(model, image)
    plt = viz._pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    def save(fig, stage):
        paths.append(viz.save_figure(fig, os.path.join(out_dir, stage + ".png")))

    h, w = s["image_size"]
    hp, wp = s["padded_size"]

    # 01: input and transformed image
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    viz.draw_instances(axes[0], s["input"], title=f"input image {s['input'].shape[1]}x{s['input'].shape[2]}")
    viz.draw_instances(axes[1], s["transformed"])
    from matplotlib.patches import Rectangle
    axes[1].add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="white", linestyle="--"))
    axes[1].set_title(f"after the transform: resized to {h}x{w}, zero-padded to {hp}x{wp}\n"
                      f"(normalised, shown denormalised: the padding is the mean colour;\n"
                      f"dashed: the image region)", fontsize=8)
    save(fig, STAGES[0])

    # 02: feature maps
    save(viz.draw_feature_maps(s["features"], reduce="norm", strides=s["strides"],
                               title="backbone features: L2 norm over channels at each location"), STAGES[1])

    # 03: anchors at the central location of every level
    fig, ax = plt.subplots(figsize=(8, 6))
    colors = [viz.instance_color(level) for level in s["anchor_levels"]]
    viz.draw_anchors(ax, s["transformed"], s["anchors"], labels=s["anchor_labels"], colors=colors,
                     title=f"the {len(s['anchors'])} anchors of the central location of each level "
                           f"(one colour per level)" if len(s["features"]) > 1 else
                           f"the {len(s['anchors'])} anchors of the central location (sizes x aspect ratios)")
    save(fig, STAGES[2])

    # 04: proposals before and after NMS
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    n_pre, n_post = len(s["pre_nms_boxes"]), len(s["proposals"])
    viz.draw_proposals(axes[0], s["transformed"], s["pre_nms_boxes"], s["pre_nms_scores"], top=top,
                       title=f"before NMS: top {min(top, n_pre)} of {n_pre}\n"
                             f"(the best {model.rpn.pre_nms_top_n()} anchors per level, decoded)")
    viz.draw_proposals(axes[1], s["transformed"], s["proposals"], s["proposal_scores"], top=top,
                       title=f"after NMS (IoU > {model.rpn.nms_thresh:g} suppressed): top {min(top, n_post)} "
                             f"of {n_post}\n(the proposals the RoI heads get)")
    fig.tight_layout()
    save(fig, STAGES[3])

    # 05: the box head's highest-scoring RoIs, before and after refinement
    order = np.argsort(-s["roi_scores"], kind="stable")[:top_rois]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    viz.draw_instances(axes[0], s["transformed"], boxes=s["proposals"][order],
                       title=f"{len(order)} of the {n_post} RoIs (proposals) the box head scores highest")
    viz.draw_instances(axes[1], s["transformed"], boxes=s["roi_boxes"][order], labels=s["roi_labels"][order],
                       scores=s["roi_scores"][order], class_names=class_names, score_thresh=-np.inf,
                       title="their refined boxes, best foreground class and its probability")
    fig.tight_layout()
    save(fig, STAGES[4])

    # 06: mask probabilities before pasting
    det = s["detections"]
    num_det = len(det.get("scores", ()))
    if "masks" in det:
        keep = np.flatnonzero(det["scores"] >= score_thresh)
        note = f"{len(keep)} of {num_det} detections with score >= {score_thresh:g}"
        if keep.size == 0:
            keep = np.arange(min(num_det, 8))
            note = f"no detection with score >= {score_thresh:g}; the best {len(keep)} of {num_det}"
        m = det["masks"].shape[-1]
        titles = [f"{_name(det['labels'][i], class_names)} {det['scores'][i]:.2f}" for i in keep]
        fig = viz.draw_mask_probabilities(det["masks"][keep], titles=titles,
                                          title=f"mask head: {m}x{m} probabilities in each box, before pasting\n"
                                                f"({note})")
    else:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "this model has no mask head", ha="center", va="center", transform=ax.transAxes)
    save(fig, STAGES[5])

    # 07: the final detections in the input image
    final = s["final"]
    fig, ax = plt.subplots(figsize=(6, 6))
    viz.draw_instances(ax, s["input"], class_names=class_names, skeleton=skeleton, score_thresh=score_thresh,
                       **{k: final[k] for k in ("boxes", "labels", "scores", "masks", "keypoints") if k in final})
    best = f", best score {final['scores'].max():.2f}" if num_det else ""
    ax.set_title(f"detections: {int((final['scores'] >= score_thresh).sum()) if num_det else 0} of {num_det} "
                 f"with score >= {score_thresh:g}{best}", fontsize=9)
    save(fig, STAGES[6])
    return paths
