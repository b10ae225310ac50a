"""Command line: ``python -m minimrcnn <command> --help``.

Commands grow with the project; each one is a small function below registered in ``main``.

User mistakes end in one line on stderr and exit status 2, never a traceback::

    python -m minimrcnn convert missing.pth out.npz
    python -m minimrcnn convert: error: missing.pth: no such file

A command reports a mistake by raising :class:`UsageError` (or lets a ``FileNotFoundError``,
``ConfigError`` or ``ValueError`` from checking its input through); ``main`` prints it. Pass
``--traceback`` before the command to see the full traceback instead.
"""
import argparse
import os
import sys
import time


class UsageError(Exception):
    """A mistake in how a command was called (a missing file, a bad value): ``main`` prints
    ``python -m minimrcnn <command>: error: <message>`` and exits with status 2."""


# the errors that input checks raise (ConfigError is a ValueError): one line, exit 2
USER_ERRORS = (UsageError, FileNotFoundError, ValueError)


def cmd_gradcheck(args):
    """Gradient-check every registered op case (float64 central differences) and print a table."""
    import numpy as np

    from .autograd.registry import all_cases, run_case

    backends = [("cpu", np)]
    if args.device in ("cuda", "all"):
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
            backends.append(("cuda", cupy))
        except Exception as e:  # ImportError or no device
            if args.device == "cuda":
                raise UsageError(f"--device cuda needs CuPy and a GPU ({e})") from None
    if args.device == "cuda":
        backends = backends[1:]

    cases = [c for c in all_cases() if not args.op or any(p in c.op for p in args.op)]
    if not cases:
        raise UsageError(f"no case matches --op {' '.join(args.op)}")
    op_width = max(len("op"), *(len(c.op) for c in cases))            # columns as wide as the longest name
    case_width = max(len("case"), *(len(c.case) for c in cases))
    header = f"{'op':<{op_width}} {'case':<{case_width}} {'dev':<4} {'mode':<11} {'max abs':>9} {'max rel':>9} {'result':<6} {'time':>7}"
    print(header)
    print("-" * len(header))
    failed, t0 = [], time.perf_counter()
    for dev, xp in backends:
        for c in cases:
            try:
                res, sec = run_case(c, xp)
                ok, mode, abs_err, rel_err = res.passed, res.mode, res.max_abs_err, res.max_rel_err
            except Exception as e:  # an op that crashes fails its check, with the reason shown
                ok, mode, abs_err, rel_err, sec = False, "error", float("nan"), float("nan"), 0.0
                print(f"  {c.id}: {type(e).__name__}: {e}")
            if not ok:
                failed.append(f"{c.id} ({dev})")
            print(f"{c.op:<{op_width}} {c.case:<{case_width}} {dev:<4} {mode:<11} {abs_err:>9.2e} {rel_err:>9.2e} "
                  f"{'pass' if ok else 'FAIL':<6} {sec:>6.2f}s")
    total = len(cases) * len(backends)
    print("-" * len(header))
    print(f"{total - len(failed)} passed, {len(failed)} failed  ({len({c.op for c in cases})} ops, "
          f"{time.perf_counter() - t0:.1f}s)")
    for f in failed:
        print(f"  FAILED {f}")
    return 1 if failed else 0


def cmd_convert(args):
    """Convert a torchvision Mask R-CNN / Keypoint R-CNN .pth checkpoint into minimrcnn's .npz
    (old and new torchvision key names accepted; needs torch for this step only)."""
    import importlib.util

    if not os.path.isfile(args.pth):
        raise UsageError(f"{args.pth}: no such file")
    if importlib.util.find_spec("torch") is None:
        raise UsageError("reading a .pth checkpoint needs torch (pip install torch); "
                         "minimrcnn's .npz checkpoints load without it")
    from .weights import convert_torchvision_checkpoint
    n = convert_torchvision_checkpoint(args.pth, args.out)
    print(f"wrote {n} arrays to {args.out}")
    return 0


# ---- data, training, evaluation, pictures ------------------------------------------------------
def _parse_overrides(items):
    """``--set key=value ...`` -> {key: value}; values are Python literals (``0.01``,
    ``(64, 64)``, ``True``) or else plain strings (``pooler=roi_pool``)."""
    import ast

    overrides = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False}.get(text.lower(), text)
        overrides[key.strip()] = value
    return overrides


def _overrides(args):
    """The config overrides of --set and --iters, checked against the preset before any data is
    made (a typo fails at once, not after the data generation)."""
    from .config import get_config

    overrides = _parse_overrides(args.set)
    if args.iters is not None:
        if args.iters <= 0:
            raise UsageError(f"--iters must be a positive integer, got {args.iters}")
        overrides["max_iter"] = args.iters
    get_config(args.config, **overrides)
    return overrides


def _config(args, dataset, overrides):
    from .config import get_config
    from .engine.pipeline import configure_for
    return configure_for(get_config(args.config), dataset, overrides)


def _datasets(args):
    from .engine.pipeline import load_datasets
    return load_datasets(args.data, images=args.images, val=getattr(args, "val", None),
                         val_images=getattr(args, "val_images", None), num_images=args.num_images)


def _check_device(device):
    if device == "cuda":
        from .backend import get_cupy
        try:
            get_cupy()
        except RuntimeError as e:
            raise UsageError(str(e)) from None


def _run(cfg, train_set, val_set, args):
    """Train and evaluate (engine.pipeline.run_training) with progress messages; returns
    (model, result), or (None, None) when the run diverged, result["metrics"] None when it was
    interrupted."""
    from .engine.pipeline import run_training
    from .engine.trainer import TrainingDiverged

    _check_device(args.device)
    print(f"training {cfg.name} on {len(train_set)} images ({train_set.num_classes - 1} classes) for "
          f"{cfg.max_iter} iterations of {cfg.ims_per_batch} images; writing {args.out}/", flush=True)
    try:
        model, result = run_training(cfg, train_set, val_set, args.out, resume=args.resume,
                                     eval_every=args.eval_every, eval_images=args.eval_images,
                                     checkpoint_every=args.checkpoint_every, device=args.device)
    except TrainingDiverged as e:
        print(f"python -m minimrcnn {args.command}: {e}", file=sys.stderr)
        return None, None
    summary = result["train"]
    if summary["interrupted"]:
        print(f"interrupted at iteration {summary['iterations']}: checkpoint saved in {args.out}/; "
              f"continue with `python -m minimrcnn train ... --resume`", file=sys.stderr)
        result["metrics"] = None
    return model, result


def _train_and_report(cfg, train_set, val_set, args):
    model, result = _run(cfg, train_set, val_set, args)
    if result is None:
        return 1
    summary = result["train"]
    if summary["interrupted"]:
        return 130
    print(f"trained {summary['iterations_this_run']} iterations in {summary['seconds']:.0f} s "
          f"({summary['images_per_second']:.1f} images/s)")
    if result["metrics"] is not None:
        print(_ap_line(result["metrics"]))
    return 0


def _ap_line(metrics):
    """``bbox AP=0.xxx segm AP=0.xxx`` (COCOeval's stats[0] of each task evaluated)."""
    return " ".join(f"{task} AP={metrics[task]['AP']:.3f}" for task in ("bbox", "segm", "keypoints")
                    if task in metrics)


def cmd_train(args):
    """Train a model from scratch (or --resume a run) on the built-in synthetic data (shapes,
    persons) or on a COCO json of your own, then evaluate it on the validation set. OUT holds
    metrics.jsonl (one line per iteration), checkpoint.npz, model_final.npz, results/*.json,
    metrics.json, val.json, curves.png and predictions.png. Ctrl-C saves a checkpoint."""
    overrides = _overrides(args)
    train_set, val_set = _datasets(args)
    if args.eval_every and val_set is None:
        raise UsageError(f"--eval-every {args.eval_every} needs validation data: --val VAL.json")
    return _train_and_report(_config(args, train_set, overrides), train_set, val_set, args)


def cmd_demo(args):
    """The one-command demo: generate the built-in shapes data (cached in
    $XDG_CACHE_HOME/minimrcnn, reused next time), train the classroom Mask R-CNN on the CPU from
    scratch, evaluate it on the val split and write OUT (default ./minimrcnn-demo/): val.json,
    results/, metrics.json, metrics.jsonl, predictions.png, curves.png. The last line printed is
    `bbox AP=... segm AP=...` (COCO AP at IoU .50:.95 on the val images)."""
    from .engine.pipeline import load_datasets

    started = time.perf_counter()
    args.config, args.resume, args.checkpoint_every = "classroom_fpn", False, 0
    overrides = _overrides(args)
    train_set, val_set = load_datasets("shapes", num_images=args.num_images)
    cfg = _config(args, train_set, overrides)
    model, result = _run(cfg, train_set, val_set, args)
    if result is None or result["metrics"] is None:
        return 1 if result is None else 130
    print(f"demo finished in {time.perf_counter() - started:.0f} s "
          f"({result['train']['images_per_second']:.1f} training images/s); pictures in {args.out}/")
    print(_ap_line({task: result["metrics"][task] for task in ("bbox", "segm")}))
    return 0


def cmd_eval(args):
    """Evaluate saved weights (model_final.npz or checkpoint.npz from `train`) with COCO AP on a
    dataset: the val split of shapes / persons, or a COCO json with --images. Writes OUT/results/
    (COCO results files), OUT/metrics.json, and prints COCOeval's summary and a per-class table."""
    from .engine.evaluator import evaluate
    from .engine.trainer import load_model

    model, _ = load_model(args.weights, device=args.device)
    train_set, val_set = _datasets(args)
    dataset = val_set if args.data in ("shapes", "persons") else train_set
    metrics = evaluate(model, dataset, out_dir=args.out)
    print(" ".join(f"{task} AP={metrics[task]['AP']:.3f}" for task in ("bbox", "segm", "keypoints")
                   if task in metrics))
    return 0


def _read_image(path):
    """An image file -> float32 (3, H, W) RGB in [0, 1]."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise UsageError(f"--image {path}: no such file")
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0)
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"--image {path}: not an image Pillow can read ({e})") from None


def _load_for_pictures(args):
    from .engine.trainer import load_model

    model, meta = load_model(args.weights, device=args.device)
    names = meta.get("class_names") or [f"class {i}" for i in range(model.cfg.num_classes)]
    return model, names, meta.get("skeleton"), _read_image(args.image)


def cmd_predict(args):
    """Run saved weights on one image and save a picture of the detections (boxes, masks, class
    names, scores; keypoints with the skeleton)."""
    from . import viz

    model, names, skeleton, image = _load_for_pictures(args)
    prediction = model.predict([image])[0]
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[1] / image.shape[2]))
    viz.draw_instances(ax, image, boxes=prediction["boxes"], labels=prediction["labels"],
                       scores=prediction["scores"], masks=prediction.get("masks"),
                       keypoints=prediction.get("keypoints"), class_names=names, skeleton=skeleton,
                       score_thresh=args.score_thresh)
    viz.save_figure(fig, args.out)
    kept = int((prediction["scores"] >= args.score_thresh).sum())
    print(f"{kept} detections with score >= {args.score_thresh} drawn in {args.out}")
    return 0


def cmd_inspect(args):
    """One picture per stage of the model on one image: the input after the transform, the FPN
    levels, anchors, RPN proposals before and after NMS, the RoIs, the mask probabilities and the
    final detections, as numbered PNGs in OUT."""
    from .engine.inspect import inspect_model

    model, names, skeleton, image = _load_for_pictures(args)
    paths = inspect_model(model, image, args.out, class_names=names, score_thresh=args.score_thresh,
                          skeleton=skeleton)
    for path in paths:
        print(path)
    return 0


def cmd_import_masks(args):
    from .data import import_masks
    result = import_masks(args.images, args.masks, args.out, classes=args.classes)
    print(f"wrote {args.out}" + (f": {result}" if result is not None else ""))
    return 0


def cmd_ablate(args):
    """Rerun the paper's ablation tables on the built-in synthetic data.

    Each row of a table is trained for --iters iterations with every seed (same data order and
    initial weights per seed across rows), scored with COCO AP, and saved to OUT/TABLE.json as it
    finishes; OUT/TABLE.md (ours beside the paper, deltas, a verdict per row) and OUT/TABLE.png
    follow. Rerunning the same command skips finished runs and resumes an interrupted one.
    Tables: 2a 2b agnostic 2c 2d 2e 3 5 6 (or "all"); "list" shows them.
    """
    from .engine.ablation import TABLES, run_table

    if args.tables == ["list"]:
        for t in TABLES.values():
            print(f"{t.id:<9} {t.paper_ref:<20} {t.title}  [{t.data}, {t.preset}]: "
                  + " | ".join(r.name for r in t.rows))
        return 0
    tables = list(TABLES) if args.tables == ["all"] else args.tables
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise UsageError(f"unknown table(s) {' '.join(unknown)}; tables: {' '.join(TABLES)} (or all, list)")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.iters is not None and args.iters < 1:
        raise UsageError(f"--iters must be >= 1, got {args.iters}")
    if args.rows and len(tables) != 1:
        raise UsageError("--rows names rows of one table: give one TABLE with it")
    for table in tables:
        run_table(table, seeds=args.seeds, iters=args.iters, out_dir=args.out, work_dir=args.work,
                  rows=args.rows, num_images=args.num_images, progress=not args.quiet)
        print(f"wrote {os.path.join(args.out, table)}.json, .md, .png")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minimrcnn",
                                     description="minimrcnn: Mask R-CNN from scratch, for teaching")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gradcheck", help="gradient-check every differentiable op (float64)",
                       description=cmd_gradcheck.__doc__)
    p.add_argument("--op", nargs="*", help="only ops whose name contains one of these strings")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="backends to check: cpu, cuda (needs CuPy and a GPU), or all available (default)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("convert", help="torchvision .pth checkpoint -> minimrcnn .npz",
                       description=cmd_convert.__doc__)
    p.add_argument("pth", help="a torchvision state dict saved with torch.save")
    p.add_argument("out", help="the .npz file to write (atomically)")
    p.set_defaults(func=cmd_convert)

    def data_args(p, split_help):
        p.add_argument("--data", required=True,
                       help="shapes | persons (built-in synthetic data) | a COCO json (then --images)")
        p.add_argument("--images", help="the image folder of a COCO json given as --data")
        p.add_argument("--num-images", type=int, default=None,
                       help="size of a synthetic data set, train + val (default 1250; the last 20%% are val)")
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda runs on CuPy")
        p.add_argument("--out", required=True, help=split_help)

    def train_args(p):
        p.add_argument("--iters", type=int, help="training iterations (default: the preset's max_iter)")
        p.add_argument("--eval-every", type=int, default=0,
                       help="validation AP every N iterations, logged to metrics.jsonl "
                            "(0: only at the end; default %(default)s)")
        p.add_argument("--eval-images", type=int, default=None,
                       help="val images used by each --eval-every validation (None: all; "
                            "default %(default)s)")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. --set base_lr=0.01 pooler=roi_pool")

    p = sub.add_parser("train", help="train a model and evaluate it", description=cmd_train.__doc__)
    p.add_argument("--config", default="classroom_fpn", help="a preset of minimrcnn.config (default classroom_fpn)")
    data_args(p, "output directory")
    p.add_argument("--val", help="a COCO json to validate on (with --data ANN.json)")
    p.add_argument("--val-images", help="the image folder of --val (default: --images)")
    train_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--checkpoint-every", type=int, default=200, help="iterations between checkpoints")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="the one-command demo: train on shapes, report COCO AP",
                       description=cmd_demo.__doc__)
    p.add_argument("--out", default="minimrcnn-demo", help="output directory (default ./minimrcnn-demo)")
    p.add_argument("--num-images", type=int, default=None, help="synthetic images, train + val (default 1250; the last 20%% are val)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda runs on CuPy")
    train_args(p)
    # a validation curve for curves.png: 50 val images every 250 iterations (~2 s each)
    p.set_defaults(func=cmd_demo, eval_every=250, eval_images=50)

    p = sub.add_parser("eval", help="COCO AP of saved weights on a dataset", description=cmd_eval.__doc__)
    p.add_argument("--weights", required=True, help="model_final.npz or checkpoint.npz written by train")
    data_args(p, "output directory for results/ and metrics.json")
    p.set_defaults(func=cmd_eval)

    for name, func, out_help in (("predict", cmd_predict, "the PNG to write"),
                                 ("inspect", cmd_inspect, "a directory for one PNG per stage")):
        p = sub.add_parser(name, help=func.__doc__.split(":")[0].split(".")[0], description=func.__doc__)
        p.add_argument("--weights", required=True, help="model_final.npz or checkpoint.npz written by train")
        p.add_argument("--image", required=True, help="an image file (PNG, JPEG, ...)")
        p.add_argument("--out", required=True, help=out_help)
        p.add_argument("--score-thresh", type=float, default=0.5, help="draw detections scoring at least this")
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        p.set_defaults(func=func)

    p = sub.add_parser("ablate", help="rerun the paper's ablation tables (2a 2b agnostic 2c 2d 2e 3 5 6)",
                       description=cmd_ablate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+", metavar="TABLE", help="table ids, all, or list")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row, 0..N-1 (default %(default)s)")
    from .engine.ablation import DEFAULT_ITERS
    p.add_argument("--iters", type=int, default=None, help=f"iterations per run (default {DEFAULT_ITERS})")
    p.add_argument("--out", default=os.path.join("tutorials", "results"),
                   help="where TABLE.json/.md/.png go (default %(default)s)")
    p.add_argument("--work", default=None,
                   help="where runs train (default $XDG_CACHE_HOME/minimrcnn/ablate)")
    p.add_argument("--rows", nargs="*", help="only these rows of the table (names as in `ablate list`)")
    p.add_argument("--num-images", type=int, default=None, help="synthetic images, train + val (default 1250)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ablate)

    from .data import import_masks
    p = sub.add_parser("import-masks", help="a folder of images + instance-id PNGs -> a COCO json",
                       description=import_masks.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="folder of images")
    p.add_argument("masks", help="folder of instance-id PNG masks (0 background, 1..N instances)")
    p.add_argument("--out", required=True, help="the COCO json to write")
    p.add_argument("--classes", nargs="*", help="class names (see the description)")
    p.set_defaults(func=cmd_import_masks)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:             # `... | head`: the reader left; stop quietly, as ls does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except USER_ERRORS as e:
        if args.traceback:
            raise
        message = " ".join(str(e).split()) or type(e).__name__    # one line
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
