r"""Training: the paper's SGD schedule around the model's loss, with everything a long run needs.

One iteration (Section 3.1, "Training"):

    images, targets = the next batch            (TrainLoader: seeded order, flips)
    losses = model(images, targets)             loss_objectness, loss_rpn_box_reg (RPN),
                                                loss_classifier, loss_box_reg, loss_mask (heads)
    L = sum(losses)                             the multi-task loss L = L_cls + L_box + L_mask (+ RPN)
    L.backward(); SGD step; lr schedule step    lr: linear warmup, then / 10 at each of lr_steps

Around it, :class:`Trainer` keeps a run safe and repeatable:

- ``OUT/metrics.jsonl``: one JSON object per iteration (``iter``, ``loss`` (the total), each
  loss, ``lr``, ``time`` in seconds) and one per validation (``iter``, ``val``: the evaluator's
  metrics dict);
- ``OUT/checkpoint.npz``: model weights, SGD momentum buffers, the schedule, the random
  generator's state and the iteration, written atomically (never unpickled) every
  ``checkpoint_every`` iterations, on Ctrl-C and at the end; ``OUT/model_final.npz``: the
  weights alone, with the config in its metadata (what ``eval`` / ``predict --weights`` read);
- ``resume=True`` continues from ``OUT/checkpoint.npz`` exactly: the batches depend only on
  (seed, iteration) and the sampling generator is restored, so an interrupted and resumed run
  logs the same losses as one that ran straight through;
- Ctrl-C (SIGINT) finishes the current iteration, saves a checkpoint and stops cleanly (a second
  Ctrl-C stops at once); a NaN or infinite loss stops the run with :class:`TrainingDiverged`,
  naming the loss and the iteration, and leaves the last good checkpoint as it was.
"""
import itertools
import json
import math
import numbers
import os
import signal
import threading
import time

import numpy as np

from .. import optim
from ..files import atomic_write
from ..nn import init
from ..weights import load_state_dict_file, save_state_dict

__all__ = ["Trainer", "TrainingDiverged", "param_groups", "build_optimizer", "save_checkpoint", "load_checkpoint",
           "load_model", "read_metrics"]

CHECKPOINT = "checkpoint.npz"
FINAL_WEIGHTS = "model_final.npz"
METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """A loss (or the RPN's logits) became NaN or infinite; the message names it and the iteration."""


def param_groups(model, weight_decay):
    """SGD parameter groups: weight decay on conv / linear weights (ndim > 1), none on biases
    and normalisation parameters (ndim 1), as Detectron2 does for norms. Frozen parameters
    (``requires_grad`` False, e.g. the stem of a pre-trained backbone) are left out."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model, cfg):
    """SGD (momentum, weight decay from ``cfg``) and the warmup + multi-step schedule."""
    optimizer = optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.base_lr, momentum=cfg.momentum)
    scheduler = optim.WarmupMultiStepLR(optimizer, cfg.lr_milestones(), gamma=0.1,
                                        warmup_factor=cfg.warmup_factor, warmup_iters=cfg.warmup_iters)
    return optimizer, scheduler


# ---- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, scheduler, iteration, cfg, extra=None):
    """Everything needed to continue a run, in one atomic .npz (no pickles): ``model.<name>``
    arrays, ``optimizer.<index>.<buffer>`` arrays, and in ``__meta__`` the iteration, the
    config, the optimizer's group settings, the schedule and the sampling generator's state
    (plus ``extra``: e.g. the class names, so that a picture can name what it draws)."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            arrays[f"optimizer.{index}.{name}"] = value
    meta = {"kind": "checkpoint", "iteration": int(iteration), "config": cfg.to_dict(),
            "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(),
            "generator": init.get_generator().bit_generator.state, **(extra or {})}
    save_state_dict(arrays, path, meta=meta)


def load_checkpoint(path, model, optimizer=None, scheduler=None):
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer`` / ``scheduler``
    when given, restoring the sampling generator with the schedule); returns its metadata."""
    arrays, meta = load_state_dict_file(path)
    apply_checkpoint(arrays, meta, path, model, optimizer, scheduler)
    return meta


def apply_checkpoint(arrays, meta, path, model, optimizer=None, scheduler=None):
    """The loading half of :func:`load_checkpoint`, for arrays and metadata already read."""
    if meta.get("kind") != "checkpoint":
        raise ValueError(f"{path}: not a training checkpoint (metadata kind {meta.get('kind')!r}); "
                         f"weights alone load with minimrcnn.weights.load_weights")
    model.load_state_dict(_model_arrays(arrays))
    if optimizer is not None:
        state = {}
        for key, value in arrays.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
        init.get_generator().bit_generator.state = meta["generator"]


def _model_arrays(arrays):
    """The model's state dict inside a checkpoint's arrays (the ``model.`` entries, unprefixed)."""
    return {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}


def load_model(path, device="cpu"):
    """(model, meta) from ``model_final.npz`` or ``checkpoint.npz``: the model is rebuilt from
    the config stored in the file's metadata, its weights loaded, in eval mode."""
    from ..config import Config
    from ..models import build_model

    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"weights file {os.fspath(path)!r} does not exist")
    arrays, meta = load_state_dict_file(path)
    if "config" not in meta:
        raise ValueError(f"{path}: no config in its metadata; weights written by minimrcnn's trainer "
                         f"(model_final.npz, checkpoint.npz) carry one")
    model = build_model(Config(**_tuple_config(meta["config"])))
    model.load_state_dict(_model_arrays(arrays) if meta.get("kind") == "checkpoint" else arrays)
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, meta


def _tuple_config(values):
    # JSON turns tuples into lists (and nested tuples into nested lists)
    def fix(v):
        return tuple(fix(x) for x in v) if isinstance(v, list) else v
    return {k: fix(v) for k, v in values.items()}


def read_metrics(source):
    """Split a metrics log into (train_records, val_records), each sorted by iteration.

    source: the path of a metrics.jsonl (one JSON object per line: training lines
    ``{"iter": i, "loss": total, "loss_classifier": .., ..., "lr": .., "time": ..}``, validation
    lines ``{"iter": i, "val": {"bbox": {"AP": ..}, "segm": {...}, ...}}``, blank lines ignored),
    or an iterable of such dicts. A line that is not a JSON object with an integer "iter" raises
    an error naming the file and the line.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        records = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
        where = [f"{path}, line {i}" for i in range(1, len(records) + 1)]
    else:
        records = list(source)
        where = [f"record {i}" for i in range(len(records))]
    train, val = [], []
    for at, r in zip(where, records):
        it = r.get("iter") if isinstance(r, dict) else None
        if isinstance(it, bool) or not isinstance(it, numbers.Integral):
            raise ValueError(f"{at}: expected a JSON object with an integer 'iter', got {str(r)[:80]}")
        if "val" in r:
            if not isinstance(r["val"], dict):
                raise ValueError(f"{at}: 'val' must be an object like {{'bbox': {{'AP': ..}}}}, got {r['val']!r}")
            val.append(r)
        else:
            train.append(r)
    key = lambda r: r["iter"]  # noqa: E731
    return sorted(train, key=key), sorted(val, key=key)


def val_record(iteration, metrics):
    """The metrics.jsonl line of a validation: ``{"iter": i, "val": {task: {"AP": ..}}}``."""
    return {"iter": int(iteration), "val": {task: {"AP": metrics[task]["AP"]}
                                            for task in ("bbox", "segm", "keypoints") if task in metrics}}


class _StopOnInterrupt:
    """While active, the first SIGINT (Ctrl-C) only sets ``requested``: the loop saves and
    stops at the end of the iteration. A second one raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Trainer:
    """Train ``model`` on ``train_set`` with the schedule of ``cfg``, writing into ``out_dir``.

    model: a :class:`~minimrcnn.models.MaskRCNN` (build it after ``nn.init.manual_seed(cfg.seed)``
    for reproducible weights); train_set / val_set: datasets as :mod:`minimrcnn.data` makes
    them; cfg: the model's :class:`~minimrcnn.config.Config` (its ``ims_per_batch``,
    ``base_lr``, ``momentum``, ``weight_decay``, ``max_iter``, ``lr_steps``, ``warmup_*``,
    ``flip_prob`` and ``seed`` drive the run; on resume only ``max_iter`` may change, and the
    lr steps then follow it). eval_every: validation AP on ``val_set`` every
    that many iterations (0: only at the end); eval_images: how many val images each of those
    uses (None: all); checkpoint_every: iterations between checkpoints (0: only at the end and on
    Ctrl-C); device: "cpu" or "cuda" (CuPy).

    ``train(resume=False)`` runs to ``cfg.max_iter`` and returns a summary dict (iterations
    done, seconds, images/s, "interrupted"); with ``resume`` it continues from
    ``out_dir/checkpoint.npz``.
    """

    def __init__(self, model, train_set, cfg, out_dir, val_set=None, eval_every=0, eval_images=None,
                 checkpoint_every=500, device="cpu", progress=True, prefetch=2):
        from ..data import TrainLoader

        self._check_args(train_set, val_set, eval_every, checkpoint_every, eval_images)
        self.model, self.cfg, self.out_dir = model, cfg, os.fspath(out_dir)
        self.train_set, self.val_set = train_set, val_set
        self.eval_every, self.eval_images = int(eval_every), eval_images
        self.checkpoint_every = int(checkpoint_every)
        self.device, self.progress = device, progress
        if device != "cpu":
            self.model.to(device)
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        self.loader = TrainLoader(train_set, cfg.ims_per_batch, seed=cfg.seed, flip_prob=cfg.flip_prob,
                                  prefetch=prefetch)
        self.iteration = 0
        # what a picture of this model's detections needs to name them
        self.dataset_meta = {"class_names": list(getattr(train_set, "class_names", None) or []),
                             "keypoint_names": getattr(train_set, "keypoint_names", None),
                             "skeleton": getattr(train_set, "skeleton", None)}
        os.makedirs(self.out_dir, exist_ok=True)

    # ---- paths -----------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT)

    @property
    def metrics_path(self):
        return os.path.join(self.out_dir, METRICS)

    # ---- the run ---------------------------------------------------------------------------
    def train(self, resume=False):
        if resume:
            self._resume()
        else:
            self._write_metrics([])                       # a fresh run starts a fresh log
        cfg = self.cfg
        start, t_start = self.iteration, time.perf_counter()
        self.model.train()
        interrupted = False
        with _StopOnInterrupt() as stop, self._progress_bar(start) as bar, \
                open(self.metrics_path, "a") as log, self.loader.batches(start_iter=start) as batches:
            for images, targets in itertools.islice(batches, cfg.max_iter - start):
                record = self.step(images, targets)
                log.write(json.dumps(record) + "\n")
                log.flush()
                self._show(bar, record)
                if self.val_set is not None and self.eval_every and self.iteration % self.eval_every == 0 \
                        and self.iteration < cfg.max_iter:
                    self._validate(log, bar)
                if self.checkpoint_every and self.iteration % self.checkpoint_every == 0:
                    self._save_checkpoint()
                if stop.requested:
                    interrupted = True
                    break
        self._save_checkpoint()
        if not interrupted:
            save_state_dict(self.model.state_dict(), os.path.join(self.out_dir, FINAL_WEIGHTS),
                            meta={"kind": "weights", "iteration": self.iteration, "config": cfg.to_dict(),
                                  **self.dataset_meta})
        seconds = time.perf_counter() - t_start
        done = self.iteration - start
        return {"iterations": self.iteration, "iterations_this_run": done, "seconds": seconds,
                "images_per_second": done * cfg.ims_per_batch / seconds if seconds > 0 else float("nan"),
                "interrupted": interrupted}

    def step(self, images, targets):
        """One SGD iteration on a batch; returns its metrics.jsonl record."""
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        try:
            loss_dict = self.model(images, targets)
        except FloatingPointError as e:     # a stage met non-finite values before any loss (the RPN's logits)
            raise TrainingDiverged(self._diverged(str(e).split(" (")[0], self.iteration + 1)) from e
        values = {k: float(v.item()) for k, v in loss_dict.items()}
        self._check_finite(values, self.iteration + 1)
        total = _sum(loss_dict.values())                    # L = L_cls + L_box + L_mask + RPN's
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return {"iter": self.iteration, "loss": sum(values.values()), **values, "lr": lr,
                "time": time.perf_counter() - t0}

    @staticmethod
    def _show(bar, record):
        if bar is None:
            return
        losses = " ".join(f"{k[5:]} {v:.3f}" for k, v in record.items() if k.startswith("loss_"))
        bar.update(1)
        bar.set_postfix_str(f"loss {record['loss']:.3f} {losses} lr {record['lr']:.4f}", refresh=False)

    def _save_checkpoint(self):
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.scheduler, self.iteration,
                        self.cfg, extra=self.dataset_meta)

    def _validate(self, log, bar):
        from .evaluator import evaluate
        metrics = evaluate(self.model, self.val_set, out_dir=None, progress=False, verbose=False,
                           max_images=self.eval_images)
        self.model.train()
        record = val_record(self.iteration, metrics)
        log.write(json.dumps(record) + "\n")
        log.flush()
        if bar is not None:
            bar.write(f"iter {self.iteration}: val "
                      + " ".join(f"{t} AP={v['AP']:.3f}" for t, v in record["val"].items()))

    def _resume(self):
        if not os.path.isfile(self.checkpoint_path):
            raise FileNotFoundError(f"resume: no checkpoint at {self.checkpoint_path!r} (start without --resume)")
        arrays, meta = load_state_dict_file(self.checkpoint_path)
        saved = _tuple_config(meta.get("config", {}))
        mine = self.cfg.to_dict()
        changed = sorted(k for k in mine if k != "max_iter" and saved.get(k) != mine[k])
        if changed:
            raise ValueError(f"resume: the checkpoint was trained with other config values for "
                             f"{', '.join(repr(k) for k in changed[:5])} (saved {saved.get(changed[0])!r}, "
                             f"now {mine[changed[0]]!r}); resume with the same config")
        apply_checkpoint(arrays, meta, self.checkpoint_path, self.model, self.optimizer, self.scheduler)
        self.iteration = int(meta["iteration"])
        # a new max_iter (--iters) moves the lr steps with it; the same one changes nothing
        self.scheduler.milestones = self.cfg.lr_milestones()
        self.scheduler.last_epoch -= 1
        self.scheduler.step()
        # drop log lines written after the checkpoint: the resumed run writes them again
        train, val = read_metrics(self.metrics_path) if os.path.isfile(self.metrics_path) else ([], [])
        kept = sorted((r for r in train + val if r["iter"] <= self.iteration), key=lambda r: r["iter"])
        self._write_metrics(kept)

    def _write_metrics(self, records):
        with atomic_write(self.metrics_path) as f:
            f.write("".join(json.dumps(r) + "\n" for r in records).encode())

    def _progress_bar(self, start):
        if not self.progress:
            return _NullContext()
        from tqdm.auto import tqdm
        return tqdm(total=self.cfg.max_iter, initial=start, desc="train", unit="it", dynamic_ncols=True)

    def _check_finite(self, values, iteration):
        for name, value in values.items():
            if not math.isfinite(value):
                raise TrainingDiverged(self._diverged(f"{name} = {value}", iteration))

    def _diverged(self, what, iteration):
        kept = (f"the last good checkpoint ({self.checkpoint_path}) is kept"
                if os.path.isfile(self.checkpoint_path) else "no checkpoint had been written yet")
        return (f"{what} at iteration {iteration}: training diverged; {kept}. Try a smaller base_lr "
                f"(now {self.cfg.base_lr}) or a longer warmup (warmup_iters={self.cfg.warmup_iters})")

    @staticmethod
    def _check_args(train_set, val_set, eval_every, checkpoint_every, eval_images):
        if train_set is None or len(train_set) == 0:
            raise ValueError("train_set is empty: nothing to train on")
        for name, v in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if eval_every and val_set is None:
            raise ValueError(f"eval_every={eval_every} needs a val_set")
        if eval_images is not None and (not isinstance(eval_images, (int, np.integer)) or eval_images <= 0):
            raise ValueError(f"eval_images must be a positive integer or None, got {eval_images!r}")


def _sum(tensors):
    total = None
    for t in tensors:
        total = t if total is None else total + t
    return total


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
