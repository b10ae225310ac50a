"""The trainer: logs, checkpoints, exact resume, Ctrl-C, divergence, and the weights it leaves.

A tiny classroom model on a few 64-pixel synthetic shapes images keeps each run to seconds.
"""
import json
import os
import signal

import numpy as np
import pytest

from minimrcnn.config import get_config
from minimrcnn.data import CocoDataset, make_shapes
from minimrcnn.engine.trainer import (Trainer, TrainingDiverged, load_checkpoint, load_model,
                                      read_metrics)
from minimrcnn.models import build_model
from minimrcnn.nn import init

TINY = dict(num_classes=4, min_size=64, max_size=64, classroom_widths=(8, 8, 16, 16), fpn_channels=16,
            box_head_dim=32, mask_head_layers=(16,), ims_per_batch=2, base_lr=0.01, warmup_iters=2,
            max_iter=6, lr_steps=(0.5,), rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
            rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_batch_size_per_image=32,
            rpn_batch_size_per_image=32)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    paths = make_shapes(tmp_path_factory.mktemp("shapes"), 10, seed=0, image_size=64, num_val=2)
    return CocoDataset(paths["train"], paths["image_dir"]), CocoDataset(paths["val"], paths["image_dir"])


def make_trainer(train_set, out, val_set=None, **kw):
    cfg = get_config("classroom_fpn", **{**TINY, **kw.pop("cfg", {})})
    init.manual_seed(cfg.seed)
    model = build_model(cfg)
    return Trainer(model, train_set, cfg, out, val_set=val_set, progress=False, **kw)


def losses(out):
    train, _ = read_metrics(os.path.join(out, "metrics.jsonl"))
    return [(r["iter"], r["loss"], r["loss_mask"]) for r in train]


def test_training_logs_every_iteration_and_writes_weights(shapes, tmp_path):
    train_set, val_set = shapes
    summary = make_trainer(train_set, tmp_path, val_set=val_set, eval_every=3).train()
    assert summary["iterations"] == 6 and not summary["interrupted"]
    train, val = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iter"] for r in train] == [1, 2, 3, 4, 5, 6]
    for r in train:
        parts = [r[k] for k in r if k.startswith("loss_")]
        assert set(k for k in r if k.startswith("loss_")) == {
            "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
        assert r["loss"] == pytest.approx(sum(parts))
    # warmup then the drop at half of max_iter: lr rises, then falls 10x
    lrs = [r["lr"] for r in train]
    assert lrs[0] < lrs[1] < lrs[2] and lrs[3] == pytest.approx(lrs[2] * 0.1)
    assert [r["iter"] for r in val] == [3] and "AP" in val[0]["val"]["segm"]
    # the final weights rebuild the model from their own metadata and predict the same
    model, meta = load_model(tmp_path / "model_final.npz")
    assert meta["iteration"] == 6 and meta["class_names"][1:] == ["square", "circle", "triangle"]
    image, _ = val_set[0]
    again, _ = load_model(tmp_path / "checkpoint.npz")
    a, b = model.predict([image])[0], again.predict([image])[0]
    np.testing.assert_array_equal(a["boxes"], b["boxes"])


def test_resume_reproduces_the_uninterrupted_losses_exactly(shapes, tmp_path):
    train_set, _ = shapes
    straight = tmp_path / "straight"
    make_trainer(train_set, straight, checkpoint_every=3).train()

    # a run that dies during iteration 5: its log has iteration 4, beyond the checkpoint (3)
    crashed = tmp_path / "crashed"
    _run_until(make_trainer(train_set, crashed, checkpoint_every=3), 4)
    assert [i for i, _, _ in losses(crashed)] == [1, 2, 3, 4]
    make_trainer(train_set, crashed, checkpoint_every=3).train(resume=True)
    assert losses(crashed) == losses(straight)


def _run_until(trainer, iteration):
    """Run ``trainer`` and stop it as a crash would, right after ``iteration`` is logged."""
    original = trainer.optimizer.step
    calls = {"n": 0}

    def step():
        original()
        calls["n"] += 1
        if calls["n"] == iteration + 1:
            raise SystemExit("simulated crash")
    trainer.optimizer.step = step
    with pytest.raises(SystemExit):
        trainer.train()


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_same_run(shapes, tmp_path):
    train_set, _ = shapes
    straight = tmp_path / "straight"
    make_trainer(train_set, straight, checkpoint_every=0).train()

    out = tmp_path / "interrupted"
    t = make_trainer(train_set, out, checkpoint_every=0)
    original = t.optimizer.step
    calls = {"n": 0}

    def step():
        original()
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C during iteration 2
    t.optimizer.step = step
    summary = t.train()
    assert summary["interrupted"] and summary["iterations"] == 2
    assert not (out / "model_final.npz").exists()
    assert json.loads(str(np.load(out / "checkpoint.npz")["__meta__"]))["iteration"] == 2
    make_trainer(train_set, out, checkpoint_every=0).train(resume=True)
    assert losses(out) == losses(straight)


def test_a_nan_loss_stops_with_its_name_and_keeps_the_last_checkpoint(shapes, tmp_path):
    train_set, _ = shapes
    t = make_trainer(train_set, tmp_path, checkpoint_every=2)
    forward = t.model.forward
    calls = {"n": 0}

    def poisoned(images, targets=None):
        out = forward(images, targets)
        calls["n"] += 1
        if calls["n"] == 4:
            out["loss_mask"] = out["loss_mask"] * float("nan")
        return out
    t.model.forward = poisoned
    with pytest.raises(TrainingDiverged, match=r"loss_mask = nan at iteration 4.*last good checkpoint"):
        t.train()
    meta = json.loads(str(np.load(tmp_path / "checkpoint.npz")["__meta__"]))
    assert meta["iteration"] == 2


def test_non_finite_logits_inside_the_model_stop_the_run_as_diverged(shapes, tmp_path):
    """The RPN refuses non-finite objectness with a FloatingPointError before any loss exists;
    the trainer reports it as a divergence at that iteration, like a NaN loss."""
    train_set, _ = shapes
    t = make_trainer(train_set, tmp_path, checkpoint_every=2)
    forward = t.model.forward
    calls = {"n": 0}

    def blows_up(images, targets=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FloatingPointError("RPN objectness has 12 non-finite logits of 12 (did training diverge?)")
        return forward(images, targets)
    t.model.forward = blows_up
    with pytest.raises(TrainingDiverged, match=r"RPN objectness has 12 non-finite logits of 12 at iteration 3: "
                                               r"training diverged; the last good checkpoint"):
        t.train()


def test_resume_refuses_another_config_and_a_missing_checkpoint(shapes, tmp_path):
    train_set, _ = shapes
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(train_set, tmp_path).train(resume=True)
    make_trainer(train_set, tmp_path, cfg=dict(max_iter=2)).train()
    with pytest.raises(ValueError, match="base_lr"):
        make_trainer(train_set, tmp_path, cfg=dict(base_lr=0.5)).train(resume=True)


def test_trainer_checks_its_arguments(shapes, tmp_path):
    train_set, _ = shapes
    with pytest.raises(ValueError, match="eval_every=5 needs a val_set"):
        make_trainer(train_set, tmp_path, eval_every=5)
    with pytest.raises(ValueError, match="checkpoint_every"):
        make_trainer(train_set, tmp_path, checkpoint_every=-1)


def test_resume_with_more_iterations_moves_the_lr_steps(shapes, tmp_path):
    train_set, _ = shapes
    make_trainer(train_set, tmp_path / "short", cfg=dict(max_iter=4)).train()     # lr step at 2
    make_trainer(train_set, tmp_path / "long", cfg=dict(max_iter=12)).train()     # lr step at 6
    make_trainer(train_set, tmp_path / "short", cfg=dict(max_iter=12)).train(resume=True)
    lr = {name: {r["iter"]: r["lr"] for r in read_metrics(tmp_path / name / "metrics.jsonl")[0]}
          for name in ("short", "long")}
    assert sorted(lr["short"]) == list(range(1, 13))
    assert lr["short"][4] == pytest.approx(TINY["base_lr"] * 0.1)     # the short run had stepped
    for i in range(5, 13):          # after the resume: the schedule of the 12-iteration run
        assert lr["short"][i] == pytest.approx(lr["long"][i]), i
    assert lr["long"][7] == pytest.approx(lr["long"][6] * 0.1)
