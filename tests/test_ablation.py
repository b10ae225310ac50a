"""The ablation runner (python -m minimrcnn ablate): tiny real runs for the mechanics (files,
resume after an interruption, runs shared between tables, a schedule mismatch refused), and the
verdict rules on hand-made records."""
import json
import os
import subprocess
import sys

import pytest

import minimrcnn
from minimrcnn.engine import ablation
from minimrcnn.engine.ablation import TABLES, TableMismatch, run_table, summarize

TINY = dict(iters=2, num_images=8, progress=False)


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "out", tmp_path / "work"


def test_every_table_builds_every_row_config():
    from minimrcnn.engine.pipeline import configure_for  # noqa: F401  (imported by row_config)

    class Shapes:      # what row_config reads of a dataset
        num_classes, keypoint_names = 4, None

    class Persons:
        num_classes, keypoint_names = 2, ["k"] * 17

    for table in TABLES.values():
        data = Shapes() if table.data == "shapes" else Persons()
        keys = set()
        for row in table.rows:
            cfg = ablation.row_config(table, row, 0, 10, data)
            assert cfg.max_iter == 10 and cfg.seed == 0
            keys.add(ablation.run_key(cfg, table.data, 100))
            assert (row.vs or table.baseline) in [r.name for r in table.rows]
        assert len(keys) == len(table.rows), f"table {table.id}: two rows have the same config"


def test_a_table_is_written_resumed_and_shared(dirs):
    out, work = dirs
    lines = []

    def stop_at_second_run(line):
        lines.append(line)
        if "[2/" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_table("2b", seeds=2, out_dir=out, work_dir=work, log=stop_at_second_run, **TINY)
    saved = json.loads((out / "2b.json").read_text())
    assert [(r["row"], r["seed"]) for r in saved["records"]] == [("softmax", 0)]

    lines.clear()
    table = run_table("2b", seeds=2, out_dir=out, work_dir=work, log=lines.append, **TINY)
    assert "3 of 4 runs to do" in lines[0]
    assert sorted((r["row"], r["seed"]) for r in table["records"]) == [
        ("sigmoid", 0), ("sigmoid", 1), ("softmax", 0), ("softmax", 1)]
    for rec in table["records"]:
        assert rec["iterations"] == 2 and set(rec["segm"]) == {"AP", "AP50", "AP75"}
        assert 0 <= rec["segm"]["AP"] <= 1 and rec["train_seconds"] > 0
        assert rec["code"].startswith(minimrcnn.__version__)          # the code it ran on
    for ext in ("json", "md", "png"):
        assert (out / f"2b.{ext}").stat().st_size > 0
    md = (out / "2b.md").read_text()
    assert "| softmax |" in md and "24.8 (44.1, 25.1)" in md and "## Verdicts" in md

    # nothing left to do: no training
    lines.clear()
    run_table("2b", seeds=2, out_dir=out, work_dir=work, log=lines.append, **TINY)
    assert "0 of 4 runs to do" in lines[0]

    # the agnostic table's class-specific row is 2b's sigmoid row: shared, not retrained
    lines.clear()
    agn = run_table("agnostic", seeds=1, out_dir=out, work_dir=work, log=lines.append, **TINY)
    shared = [r for r in agn["records"] if r["row"] == "class-specific"]
    sigmoid0 = [r for r in table["records"] if r["row"] == "sigmoid" and r["seed"] == 0][0]
    assert shared[0]["shared_from"] == "2b" and shared[0]["segm"] == sigmoid0["segm"]
    assert shared[0]["overrides"] == TABLES["agnostic"].row("class-specific").overrides
    assert any("shared" in line for line in lines)

    with pytest.raises(TableMismatch, match="holds runs of 2 iterations on 8 images, not 3 on 8"):
        run_table("2b", seeds=2, out_dir=out, work_dir=work, iters=3, num_images=8, progress=False)


def _fake_table(diffs, paper=(30.0, 25.0), on_par=()):
    """A results dict with rows 'a' (baseline) and 'b', b - a = diffs per seed (in points)."""
    records = []
    for seed, d in enumerate(diffs):
        base = 0.40 + 0.01 * seed
        records += [{"row": "a", "seed": seed, "segm": {"AP": base, "AP50": 0.6, "AP75": 0.4}},
                    {"row": "b", "seed": seed, "segm": {"AP": base + d / 100, "AP50": 0.6, "AP75": 0.4}}]
    return {"table": "x", "title": "t", "paper_ref": "Table x", "data": "shapes", "iters": 1, "note": "",
            "tasks": ["segm"], "verdict_on": ["segm"], "records": records,
            "rows": [{"name": "b", "overrides": {}, "paper": {"segm": (paper[1], None, None)}, "vs": "a",
                      "on_par": list(on_par)},
                     {"name": "a", "overrides": {}, "paper": {"segm": (paper[0], None, None)}, "vs": "a",
                      "on_par": []}]}


@pytest.mark.parametrize("diffs, on_par, verdict", [
    ([-3.0, -4.0, -5.0], (), "reproduced"),                     # the paper: b is 5 points below a
    ([3.0, 4.0, 5.0], (), "not reproduced: opposite sign"),
    ([-1.0, 1.0, -2.0], (), "not reproduced: -0.7 is within the spread"),
    ([-0.2, 0.3, 0.1], ("segm",), "reproduced (on par)"),
    ([-3.0, -4.0, -5.0], ("segm",), "not reproduced: differs by -4.0"),
    ([-3.0], (), "pending (1 seed)"),
])
def test_verdicts(diffs, on_par, verdict):
    row = [r for r in summarize(_fake_table(diffs, on_par=on_par)) if r["name"] == "b"][0]
    assert row["verdicts"]["segm"].startswith(verdict), row["verdicts"]
    assert row["tasks"]["segm"]["paper_delta"] == -5.0
    assert row["tasks"]["segm"]["delta"] == pytest.approx(sum(diffs) / len(diffs))
    md = ablation.render_markdown(_fake_table(diffs, on_par=on_par))
    assert verdict.split(":")[0] in md


def test_a_task_compared_with_another_row_and_a_task_with_nothing_to_compare():
    """Table 5's pattern: row c is compared with b on boxes and with a on masks (vs_by_task);
    b has no mask AP, so b's own mask AP gets no delta and no verdict (not "pending")."""
    def rec(row, seed, bbox, segm=None):
        out = {"row": row, "seed": seed, "bbox": {"AP": bbox, "AP50": None, "AP75": None}}
        if segm is not None:
            out["segm"] = {"AP": segm, "AP50": None, "AP75": None}
        return out
    records = []
    for seed in range(3):
        records += [rec("a", seed, 0.44 + 0.01 * seed, 0.30 + 0.01 * seed), rec("b", seed, 0.42),
                    rec("c", seed, 0.45 + 0.01 * seed, 0.28 + 0.01 * seed)]
    table = {"table": "x", "title": "t", "paper_ref": "Table x", "data": "persons", "iters": 1, "note": "",
             "tasks": ["bbox", "segm"], "verdict_on": ["bbox", "segm"], "records": records,
             "rows": [{"name": "b", "overrides": {}, "paper": {"bbox": (50.0, None, None)}, "vs": "b", "on_par": []},
                      {"name": "a", "overrides": {}, "paper": {"bbox": (52.0, None, None), "segm": (46.0, None, None)},
                       "vs": "b", "on_par": []},
                      {"name": "c", "overrides": {}, "paper": {"bbox": (51.0, None, None), "segm": (45.0, None, None)},
                       "vs": "b", "vs_by_task": {"segm": "a"}, "on_par": []}]}
    rows = {r["name"]: r for r in summarize(table)}
    c = rows["c"]
    assert c["tasks"]["bbox"]["vs"] == "b" and c["tasks"]["segm"]["vs"] == "a"
    assert c["tasks"]["bbox"]["delta"] == pytest.approx(4.0) and c["tasks"]["bbox"]["paper_delta"] == 1.0
    assert c["tasks"]["segm"]["delta"] == pytest.approx(-2.0) and c["tasks"]["segm"]["paper_delta"] == -1.0
    assert c["verdicts"] == {"bbox": "reproduced", "segm": "reproduced"}
    a = rows["a"]                          # a's mask AP against b, which has none: nothing to compare
    assert a["tasks"]["segm"]["vs"] is None and a["tasks"]["segm"]["delta"] is None
    assert "segm" not in a["verdicts"] and a["verdicts"]["bbox"] == "reproduced"
    md = ablation.render_markdown(table)
    assert "pending" not in md and "| c | (baseline config) | 3 |" in md


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minimrcnn", "ablate", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_lists_tables_and_refuses_mistakes_in_one_line(tmp_path):
    r = run_cli("list")
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list(TABLES)
    for args, text in [(["9z"], "unknown table(s) 9z"), (["2b", "2c", "--rows", "x"], "one TABLE"),
                       (["2b", "--rows", "nope", "--out", str(tmp_path)], "no row(s) ['nope']"),
                       (["2b", "--seeds", "0"], "--seeds must be >= 1")]:
        r = run_cli(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert text in r.stderr, r.stderr
    assert not os.listdir(tmp_path)


def test_a_diverged_seed_is_shown_and_left_out_of_the_means():
    table = _fake_table([-3.0, -4.0, -5.0])
    table["records"].append({"row": "b", "seed": 3, "diverged": "loss_box_reg = nan at iteration 412",
                             "iterations": 411, "train_seconds": 80.0})
    row = [r for r in summarize(table) if r["name"] == "b"][0]
    assert row["n"] == 3 and row["diverged"] == [3]
    assert row["tasks"]["segm"]["delta"] == pytest.approx(-4.0) and row["verdicts"]["segm"] == "reproduced"
    md = ablation.render_markdown(table)
    assert "| 3 (+1 diverged) |" in md and "b, seed 3: loss_box_reg = nan at iteration 412" in md


def test_a_run_that_diverges_is_saved_as_a_result(dirs, monkeypatch):
    from minimrcnn.engine import trainer

    out, work = dirs

    def diverge(self, values, iteration):
        if iteration == 2:
            raise trainer.TrainingDiverged(self._diverged("loss_mask = nan", iteration))
    monkeypatch.setattr(trainer.Trainer, "_check_finite", diverge)
    lines = []
    table = run_table("2e", seeds=1, rows=["MLP"], out_dir=out, work_dir=work, log=lines.append, **TINY)
    (rec,) = table["records"]
    assert rec["diverged"] == "loss_mask = nan at iteration 2" and rec["iterations"] == 1
    assert "segm" not in rec and any("diverged" in line for line in lines)
    assert "diverged" in (out / "2e.md").read_text()


def test_ctrl_c_in_a_run_saves_and_stops_the_command(dirs, monkeypatch):
    """A run cut by Ctrl-C (the trainer saves and returns "interrupted") stops run_table with
    KeyboardInterrupt after the finished runs are saved, so `ablate 2b 2e` does not go on."""
    out, work = dirs
    calls = []

    def train_one(cfg, train_set, val_set, run_dir, progress=True):
        calls.append(run_dir)
        if len(calls) == 2:
            return None
        return {"segm": {"AP": 0.5, "AP50": 0.7, "AP75": 0.5}, "iterations": 2, "train_seconds": 1.0}
    monkeypatch.setattr(ablation, "train_one", train_one)
    with pytest.raises(KeyboardInterrupt):
        run_table("2b", seeds=2, out_dir=out, work_dir=work, log=lambda line: None, **TINY)
    saved = json.loads((out / "2b.json").read_text())
    assert [(r["row"], r["seed"]) for r in saved["records"]] == [("softmax", 0)]
    assert (out / "2b.md").is_file()
