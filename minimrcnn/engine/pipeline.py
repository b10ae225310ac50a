"""The whole job in a few calls, for the CLI and the notebooks: data -> training -> evaluation ->
pictures.

    from minimrcnn.engine.pipeline import load_datasets, run_training
    train_set, val_set = load_datasets("shapes", num_images=400)
    model, result = run_training(get_config("classroom_fpn"), train_set, val_set, "out/")

``run_training`` writes into the output directory everything a student looks at afterwards:
``metrics.jsonl`` and the checkpoints (the :class:`~minimrcnn.engine.trainer.Trainer`),
``results/*.json`` and ``metrics.json`` (the evaluator), ``val.json`` (the val annotations the
AP is measured against), ``curves.png`` (losses and validation AP) and ``predictions.png``
(ground truth beside predictions on a few val images).
"""
import json
import os
import shutil

from ..nn import init

__all__ = ["load_datasets", "configure_for", "run_training", "write_pictures", "DEFAULT_NUM_IMAGES"]

DEFAULT_NUM_IMAGES = {"shapes": 1250, "persons": 1250}


def load_datasets(data, images=None, val=None, val_images=None, num_images=None, image_size=128, seed=0,
                  cache_dir=None, progress=True):
    """(train_set, val_set) for ``data``: "shapes" or "persons" (built-in synthetic data,
    generated once into the cache and reused), or the path of a COCO json with ``images`` its
    image folder (``val`` / ``val_images`` the same for validation; val_set is None without).
    ``num_images`` / ``image_size`` / ``seed`` describe the synthetic sets (ignored otherwise);
    ``progress``: a bar while a synthetic set is generated (the first time only)."""
    from ..data import CocoDataset, synthetic_data

    if data in ("shapes", "persons"):
        n = DEFAULT_NUM_IMAGES[data] if num_images is None else num_images
        paths = synthetic_data(data, n, seed=seed, image_size=image_size, cache_dir=cache_dir, progress=progress)
        return (CocoDataset(paths["train"], paths["image_dir"]),
                CocoDataset(paths["val"], paths["image_dir"]))
    if not os.path.isfile(os.fspath(data)):
        raise FileNotFoundError(f"--data {data!r}: not 'shapes', 'persons' or an existing COCO json file")
    if images is None:
        raise ValueError(f"--data {data!r} is a COCO json: --images DIR must say where its images are")
    train_set = CocoDataset(data, images)
    val_set = None
    if val is not None:
        val_set = CocoDataset(val, val_images if val_images is not None else images)
    return train_set, val_set


def configure_for(cfg, dataset, overrides=()):
    """``cfg`` with ``num_classes`` (and the keypoint head, for a dataset with keypoints) set
    from ``dataset``, then ``overrides`` (a dict of config keys the user gave) on top."""
    auto = {"num_classes": dataset.num_classes}
    if getattr(dataset, "keypoint_names", None):
        auto.update(keypoint_on=True, num_keypoints=len(dataset.keypoint_names))
    return cfg.replace(**{**auto, **dict(overrides)})


def run_training(cfg, train_set, val_set, out_dir, resume=False, eval_every=0, eval_images=None,
                 checkpoint_every=500, device="cpu", progress=True, pictures=True, verbose=True):
    """Build the model of ``cfg`` (seeded by ``cfg.seed``), train it, evaluate it on
    ``val_set`` and write the pictures. Returns (model, result): result holds the trainer's
    summary under "train" and the evaluator's metrics under "metrics" (None without a val
    set). An interrupted run (Ctrl-C) returns after saving, with result["train"]["interrupted"].
    verbose: print COCOeval's summary and the per-class AP table at the end."""
    from ..models import build_model
    from .evaluator import evaluate
    from .trainer import Trainer, val_record

    init.manual_seed(cfg.seed)
    model = build_model(cfg)
    trainer = Trainer(model, train_set, cfg, out_dir, val_set=val_set, eval_every=eval_every,
                      eval_images=eval_images, checkpoint_every=checkpoint_every, device=device,
                      progress=progress)
    summary = trainer.train(resume=resume)
    result = {"train": summary, "metrics": None}
    if summary["interrupted"]:
        return model, result
    if val_set is not None:
        shutil.copyfile(val_set.ann_file, os.path.join(out_dir, "val.json"))
        metrics = result["metrics"] = evaluate(model, val_set, out_dir=out_dir, progress=progress,
                                               verbose=verbose)
        # the final AP closes the validation curve of metrics.jsonl
        with open(trainer.metrics_path, "a") as log:
            log.write(json.dumps(val_record(summary["iterations"], metrics)) + "\n")
    if pictures:
        write_pictures(model, val_set if val_set is not None else train_set, out_dir)
    return model, result


def write_pictures(model, dataset, out_dir, num_images=4, score_thresh=0.5):
    """``curves.png`` from ``out_dir/metrics.jsonl`` and ``predictions.png``: the first
    ``num_images`` images of ``dataset``, ground truth beside the model's detections."""
    from .. import viz
    from .trainer import METRICS, read_metrics

    metrics_path = os.path.join(out_dir, METRICS)
    if os.path.isfile(metrics_path):
        train_records, val_records = read_metrics(metrics_path)
        viz.save_figure(viz.plot_curves(train_records, val_records), os.path.join(out_dir, "curves.png"))
    samples = [dataset[i] for i in range(min(num_images, len(dataset)))]
    predictions = model.predict([image for image, _ in samples])
    fig = viz.show_gallery([image for image, _ in samples], [target for _, target in samples], predictions,
                           class_names=dataset.class_names, skeleton=getattr(dataset, "skeleton", None),
                           score_thresh=score_thresh)
    viz.save_figure(fig, os.path.join(out_dir, "predictions.png"))
