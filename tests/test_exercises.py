"""Exercises for instructors (minimrcnn.exercises): the checks that grade some exercises, then
the machinery -- solution regions, make-student, grade -- on real copies of this project.

The first part holds exercise tests that no other test file has (gradchecks of the ops a
student writes, conv2d's forward alone); they carry their exercise's marker like the marked
tests elsewhere. The second part makes a student copy with every exercise taken out and checks
that it builds and imports, that nothing of a solution survives in it, that each exercise's
tests fail there with its hint, that the full project scores full marks, that a partly solved
copy gets exactly its partial score, and that make-student refuses a student copy.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from minimrcnn.autograd.registry import all_cases, run_case
from minimrcnn.exercises import EXERCISES, find_regions, get_exercise, grade, make_student
from minimrcnn.exercises.__main__ import main as exercises_main
from minimrcnn.exercises.regions import scan_file
from minimrcnn.exercises.student import MANIFEST, count_exercise_tests, project_files, text_lines
from minimrcnn.functional import conv as conv_module

from .test_conv import CONV_CASES, naive_conv2d

ROOT = Path(__file__).resolve().parent.parent


# =======================================================================================
# exercise checks that live here
# =======================================================================================
def _cases(*ops):
    return [c for c in all_cases() if c.op in ops]


def _gradcheck_message(case, result):
    w = result.worst
    return (f"gradcheck of {case.id}: input {w.get('input')} at index {w.get('index')}: the "
            f"numeric derivative (central differences) is {w.get('numeric')} but your backward "
            f"gives {w.get('analytic')} (max abs error {result.max_abs_err:.3g}); look at the "
            f"backward of the op's Function class")


@pytest.mark.ex_elementwise_backward
@pytest.mark.parametrize("case", _cases("mul", "div", "exp", "log", "sigmoid"), ids=lambda c: c.id)
def test_elementwise_backward_passes_gradcheck(case):
    result, _ = run_case(case, np)
    assert result.passed, _gradcheck_message(case, result)


@pytest.mark.ex_bce_with_logits
@pytest.mark.parametrize("case", _cases("binary_cross_entropy_with_logits"), ids=lambda c: c.id)
def test_bce_with_logits_passes_gradcheck(case):
    result, _ = run_case(case, np)
    assert result.passed, _gradcheck_message(case, result)


@pytest.mark.ex_conv2d_forward
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}")
def test_conv2d_forward_matches_the_six_loops(case):
    """The reference path (the one a student writes) against tests/test_conv.py's naive loops."""
    xs, (O, kh, kw), stride, padding, dilation, groups, _ = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal((O, xs[1] // groups, kh, kw))
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)          # noqa: E731
    got = conv_module._Reference.forward(x, w, pair(stride), pair(padding), pair(dilation), groups)
    expected = naive_conv2d(x, w, None, stride, padding, dilation, groups)
    assert got.shape == expected.shape, f"output shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10,
                               err_msg=f"conv2d of x {xs}, weight {w.shape}, stride {stride}, "
                                       f"padding {padding}, dilation {dilation}, groups {groups}")


# ---- ablation exercises: the direction of the paper's table, measured where it arises --------
def _proxy_masks(rng, n, size=128):
    """n binary masks (size x size) of a disc or a box at a sub-pixel position, with their boxes."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5                      # pixel centres
    items = []
    for _ in range(n):
        if rng.random() < 0.5:
            r = rng.uniform(8, 30)
            cx, cy = rng.uniform(r, size - r, 2)
            items.append((((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.float64),
                          np.array([cx - r, cy - r, cx + r, cy + r])))
        else:
            w, h = rng.uniform(14, 60, 2)
            x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            items.append((((xx >= x1) & (xx <= x1 + w) & (yy >= y1) & (yy <= y1 + h)).astype(np.float64),
                          np.array([x1, y1, x1 + w, y1 + h])))
    return items


def _box_crop(mask, box, M=14, d=4):
    """The exact M x M mask of ``box``: each bin the mean of d x d points inside it (nearest pixel)."""
    x1, y1, x2, y2 = box
    t = (np.arange(M * d) + 0.5) / (M * d)
    ys = np.clip((y1 + t * (y2 - y1)).astype(int), 0, mask.shape[0] - 1)
    xs = np.clip((x1 + t * (x2 - x1)).astype(int), 0, mask.shape[1] - 1)
    return mask[np.ix_(ys, xs)].reshape(M, d, M, d).mean(axis=(1, 3))


def _stride_map(image, stride):
    """What an ideal stride-``stride`` backbone keeps of ``image``: its block means, (1, 1, h, w)."""
    h, w = image.shape[0] // stride, image.shape[1] // stride
    return image.reshape(h, stride, w, stride).mean(axis=(1, 3))[None, None]


def _preset_pooler(name):
    """The RoI layer of the 2c / 6 rows on a (1, 1, h, w) map: the classroom presets' settings."""
    from minimrcnn import ops
    from minimrcnn.config import get_config
    cfg = get_config("classroom_c4")
    if name == "roi_align":
        return lambda f, box, size, scale: ops.roi_align(f, box, size, scale, cfg.pooler_sampling_ratio,
                                                         cfg.pooler_aligned).data
    return lambda f, box, size, scale: getattr(ops, name)(f, box, size, scale).data


def _paired_verdict(errors, best="roi_align"):
    """Per other op: (mean paired difference other - best, its standard error)."""
    out = {}
    for name, e in errors.items():
        if name != best:
            d = np.asarray(e) - np.asarray(errors[best])
            out[name] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
    return out


@pytest.mark.ex_ablation_2c
def test_ablation_2c_roi_align_extracts_the_best_aligned_features():
    """Table 2c's direction where it arises: from a stride-16 map, RoIAlign reproduces each
    object's mask better than RoIPool and RoIWarp (both quantize the box)."""
    items = _proxy_masks(np.random.default_rng(0), 200)
    errors = {name: [] for name in ("roi_align", "roi_pool", "roi_warp")}
    for mask, box in items:
        features, exact = _stride_map(mask, 16), _box_crop(mask, box)
        for name in errors:
            pooled = _preset_pooler(name)(features, np.array([[0, *box]]), 14, 1 / 16)
            errors[name].append(float(np.abs(pooled[0, 0] - exact).mean()))
    for other, (gap, se) in _paired_verdict(errors).items():
        assert gap > 3 * se, (f"Table 2c's direction: your RoIAlign's mean error against the exact "
                              f"masks is {np.mean(errors['roi_align']):.4f}, {other}'s "
                              f"{np.mean(errors[other]):.4f}; RoIAlign should be lower by more than 3 "
                              f"standard errors ({gap:.4f} vs 3 x {se:.4f}): check its sample positions "
                              f"(no rounding of the box or of the bins)")


@pytest.mark.ex_ablation_2c
def test_ablation_2c_table_runs_with_your_roi_align(tmp_path):
    """A smoke run of the table's runner with the student's op (2 rows x 2 seeds, 6 iterations on
    16 images: it checks the plumbing and the backward, not the AP)."""
    from minimrcnn.engine.ablation import run_table, summarize
    table = run_table("2c", seeds=2, iters=6, rows=["RoIPool", "RoIAlign, avg"], num_images=16,
                      out_dir=tmp_path / "out", work_dir=tmp_path / "work", progress=False,
                      log=lambda *a: None)
    assert sorted((r["row"], r["seed"]) for r in table["records"]) == [
        ("RoIAlign, avg", 0), ("RoIAlign, avg", 1), ("RoIPool", 0), ("RoIPool", 1)]
    assert all(np.isfinite(r["segm"]["AP"]) for r in table["records"])
    rows = {r["name"]: r for r in summarize(table)}
    assert rows["RoIPool"]["n"] == 2 and (tmp_path / "out" / "2c.md").is_file()


@pytest.mark.ex_ablation_6
def test_ablation_6_roi_align_localizes_keypoints_better_than_roi_pool():
    """Table 6's direction where it arises: a keypoint seen through a stride-16 map and pooled to
    28 x 28 from its person box lands nearer its target cell with RoIAlign than with RoIPool."""
    from minimrcnn.modeling.keypoint_head import keypoints_to_heatmap
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    m, errors = 28, {"roi_align": [], "roi_pool": []}
    for _ in range(200):
        w, h = rng.uniform(30, 100, 2)
        x1, y1 = rng.uniform(0, 128 - w), rng.uniform(0, 128 - h)
        box = np.array([x1, y1, x1 + w, y1 + h])
        kx, ky = x1 + rng.uniform(0.1, 0.9) * w, y1 + rng.uniform(0.1, 0.9) * h
        features = _stride_map(np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / (2 * 6.0 ** 2)), 16)
        cell, valid = keypoints_to_heatmap(np.array([[[kx, ky, 2.0]]]), box[None], m)
        assert valid[0, 0] == 1, f"keypoint ({kx:.2f}, {ky:.2f}) inside box {box} must be valid"
        ty, tx = divmod(int(cell[0, 0]), m)
        for name in errors:
            pooled = _preset_pooler(name)(features, np.array([[0, *box]]), m, 1 / 16)[0, 0]
            py, px = np.unravel_index(np.argmax(pooled), pooled.shape)
            errors[name].append(float(np.hypot((py - ty) * h / m, (px - tx) * w / m)))   # image pixels
    gap, se = _paired_verdict(errors)["roi_pool"]
    assert gap > 3 * se, (f"Table 6's direction: keypoints land {np.mean(errors['roi_align']):.2f} px "
                          f"from their target cell with your RoIAlign and {np.mean(errors['roi_pool']):.2f} "
                          f"px with RoIPool; RoIAlign should be nearer by more than 3 standard errors "
                          f"({gap:.2f} vs 3 x {se:.2f}): check RoIAlign's sampling and the heatmap cell")


@pytest.mark.ex_roi_align_backward
@pytest.mark.parametrize("case", [c for c in _cases("roi_align") if "max" not in c.case], ids=lambda c: c.id)
def test_roi_align_backward_passes_gradcheck(case):
    result, _ = run_case(case, np)
    assert result.passed, _gradcheck_message(case, result)


# =======================================================================================
# the catalog and the regions
# =======================================================================================
REGIONS = find_regions(ROOT)


def test_every_exercise_has_regions_a_marker_and_tests():
    assert len(EXERCISES) >= 12
    ids = [e.id for e in EXERCISES]
    assert len(set(ids)) == len(ids)
    pieces = {e.id for e in EXERCISES if not e.is_ablation}
    assert {r.exercise for r in REGIONS} == pieces, "a region names an unknown id, or an exercise has no region"
    ablations = [e for e in EXERCISES if e.is_ablation]
    assert len(ablations) >= 2
    from minimrcnn.engine.ablation import TABLES
    for e in ablations:
        assert e.ablation in TABLES and e.requires and set(e.requires) <= pieces and e.notes
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    registered = {m.split(":")[0] for m in config["markers"]}
    for e in EXERCISES:
        assert e.marker in registered, f"{e.marker} is not registered in pyproject.toml"
        assert e.hint and e.points > 0 and e.test_files
        for f in e.test_files:
            assert (ROOT / f).is_file(), f
        for k in e.kernels:
            assert (ROOT / "ext" / f"{k}.pyx").is_file(), k
        for r in e.requires:
            get_exercise(r)


def test_every_exercise_has_tests(exercise_counts):
    empty = [i for i, n in exercise_counts.items() if n == 0]
    assert not empty, f"exercises without a single ex_ test: {empty}"


def test_markers_are_comments_that_change_nothing():
    """Each file with regions parses to the same program without its marker lines."""
    for path in sorted({r.path for r in REGIONS}):
        text = (ROOT / path).read_text()
        bare = "\n".join(l for l in text.split("\n") if not re.match(r"\s*### (BEGIN|END) SOLUTION", l))
        assert ast.dump(ast.parse(text)) == ast.dump(ast.parse(bare)), path


@pytest.mark.parametrize("text, words", [
    ("x = 1\n### BEGIN SOLUTION nms\ny = 2\n", "has no '### END SOLUTION'"),
    ("### END SOLUTION\n", "without a '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n", "needs an exercise id"),
    ("### BEGIN SOLUTION a\n### BEGIN SOLUTION b\n### END SOLUTION\n", "do not nest"),
    ("### BEGIN SOLUTION a\n\n### END SOLUTION\n", "is empty"),
    ("### BEGIN SOLUTION nms extra words\ny = 2\n### END SOLUTION\n", "malformed marker line"),
])
def test_malformed_markers_name_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "m.py"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(words)) as info:
        scan_file(path, "m.py")
    assert str(info.value).startswith("m.py:")


def test_list_shows_every_exercise(capsys):
    assert exercises_main(["list"]) == 0
    out = capsys.readouterr().out
    for e in EXERCISES:
        assert e.id in out and f"pytest -m {e.marker}" in out
    assert f"{len(EXERCISES)} exercises" in out


# =======================================================================================
# a student copy with every exercise taken out
# =======================================================================================
@pytest.fixture(scope="module")
def exercise_counts():
    return count_exercise_tests(ROOT, list(EXERCISES))


@pytest.fixture(scope="module")
def student(tmp_path_factory, exercise_counts):
    out = tmp_path_factory.mktemp("copies") / "student"
    make_student(ROOT, out, count_tests=exercise_counts)
    return out


@pytest.fixture(scope="module")
def student_grade(student, tmp_path_factory):
    return grade(student, out=tmp_path_factory.mktemp("grades") / "grade.json")


def test_the_copy_is_the_project_less_the_solutions(student):
    manifest = json.loads((student / MANIFEST).read_text())
    assert [e["id"] for e in manifest["exercises"]] == [e.id for e in EXERCISES]
    kernels = sorted({k for e in EXERCISES for k in e.kernels})
    assert manifest["removed_kernels"] == kernels
    copied = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    expected = set(project_files(ROOT)) - {f"ext/{k}{s}" for k in kernels for s in (".pyx", ".cu")}
    assert copied == expected | {MANIFEST}
    assert not (student / ".git").exists()
    assert not any(p.endswith((".so", ".pyd", ".pyc")) or p.startswith(("build/", "ext/")) and p.endswith(".c")
                   for p in copied)
    for r in find_regions(student):                          # every region is a stub now
        assert r.is_stub, r.location
        assert f"exercise {r.exercise}: {get_exercise(r.exercise).hint}" in r.body[0]
    assert len(find_regions(student)) == len(REGIONS)


def test_no_removed_line_survives_in_the_copy(student):
    """Every line of every region occurs in the copy at most as often as the full project has
    it outside the regions (in code or notebook sources, not in notebook outputs): a solution
    line the copy shows beyond that is a leak (a comment, a docstring, a printed getsource)."""
    hidden = {}
    for r in REGIONS:
        hidden.setdefault(r.path, set()).update(range(r.begin, r.end - 1))
    allowed = Counter()
    for rel in project_files(ROOT):
        path = ROOT / rel
        if rel.endswith(".ipynb"):
            nb = json.loads(path.read_text())
            allowed.update(l.strip() for c in nb["cells"] for l in "".join(c["source"]).splitlines())
            continue
        try:
            lines = path.read_text().split("\n")
        except UnicodeDecodeError:
            continue
        allowed.update(l.strip() for i, l in enumerate(lines) if i not in hidden.get(rel, ()))
    removed = {l.strip() for r in REGIONS for l in r.body if len(l.strip()) >= 6}
    shown = Counter()
    for path in student.rglob("*"):
        if path.is_file():
            shown.update(l for l in text_lines(path) if l in removed)
    leaks = {l: n for l, n in shown.items() if n > allowed[l]}
    assert not leaks, f"removed solution lines still in the copy: {sorted(leaks)[:5]}"
    # the tutorials that print the library's source lost those outputs, and only those
    for nb_path in sorted((ROOT / "tutorials").glob("*.ipynb")):
        full = json.loads(nb_path.read_text())["cells"]
        copy = json.loads((student / "tutorials" / nb_path.name).read_text())["cells"]
        assert [c["source"] for c in full] == [c["source"] for c in copy]
        cleared = [i for i, (a, b) in enumerate(zip(full, copy)) if a.get("outputs") != b.get("outputs")]
        assert all(copy[i]["outputs"] == [] for i in cleared)
        if nb_path.name.startswith("02_"):
            assert cleared, "02_convolution prints _Reference.im2col: its output must go"


def test_the_copy_builds_and_imports(student):
    """setup.py builds a kept kernel in the copy; the copy imports from there; the kernels of
    the exercises are not built, so their ops run the student's NumPy code."""
    env = dict(os.environ, MINIMRCNN_EXT="roi_pool", PYTHONPATH=str(student))
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=student,
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    code = ("import os, warnings, minimrcnn, minimrcnn.exercises\n"
            "from minimrcnn import _ext\n"
            "warnings.simplefilter('ignore')\n"
            "print(os.path.realpath(minimrcnn.__file__))\n"
            "print(_ext.cpu_module('roi_pool') is not None, [_ext.cpu_module(k) is None for k in "
            "('conv', 'pooling', 'nms')])\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=student, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    where, kernels = run.stdout.strip().splitlines()[-2:]
    assert Path(where).is_relative_to(student.resolve())
    assert kernels == "True [True, True, True]"


def test_each_removed_exercise_fails_with_its_hint(student_grade):
    assert student_grade["score"] == 0
    for row in student_grade["exercises"]:
        e = get_exercise(row["id"])
        assert row["passed"] == 0 and row["total"] > 0 and len(row["failures"]) == row["total"], row["id"]
        # a failure names this exercise or one it needs (an ablation trains the whole model: any)
        names = [x.id for x in EXERCISES] if e.is_ablation else (e.id,) + e.requires
        for f in row["failures"]:
            assert any(f"exercise {i}: " in f["message"] for i in names), (e.id, f["test"], f["message"][:300])
        if not e.requires:                           # then every failure is its own
            assert all(f"exercise {e.id}: " in f["message"] for f in row["failures"]), e.id
        assert row["regions"] and all(":" in loc for loc in row["regions"])


def test_exercises_that_need_others_fail_with_their_own_hint(tmp_path, exercise_counts):
    """Taken out without what they need (which stays solved), their tests fail on their own hint."""
    dependents = [e.id for e in EXERCISES if e.requires and not e.is_ablation]
    assert not {r for i in dependents for r in get_exercise(i).requires} & set(dependents)
    make_student(ROOT, tmp_path / "copy", only=dependents, count_tests=exercise_counts)
    result = grade(tmp_path / "copy")
    assert [r["id"] for r in result["exercises"]] == dependents and result["score"] == 0
    for row in result["exercises"]:
        assert row["passed"] == 0 and len(row["failures"]) == row["total"] == exercise_counts[row["id"]]
        assert all(f"exercise {row['id']}: " in f["message"] for f in row["failures"]), row["id"]


def test_an_ablation_exercise_brings_its_pieces_and_fails_on_them(tmp_path, exercise_counts):
    manifest = make_student(ROOT, tmp_path / "copy", only=["ablation_2c"], count_tests=exercise_counts)
    assert [e["id"] for e in manifest["exercises"]] == ["roi_align_forward", "roi_align_backward", "ablation_2c"]
    assert manifest["removed_kernels"] == ["roi_align"] and "ablate 2c" in manifest["exercises"][-1]["notes"]
    result = grade(tmp_path / "copy", only=["ablation_2c"])
    (row,) = result["exercises"]
    assert row["passed"] == 0 and row["total"] == exercise_counts["ablation_2c"] == 2
    assert all("exercise roi_align_" in f["message"] for f in row["failures"])


def test_make_student_refuses_a_student_copy(student, tmp_path, capsys):
    with pytest.raises(ValueError, match="is a student copy"):
        make_student(student, tmp_path / "again")
    assert not (tmp_path / "again").exists()
    assert exercises_main(["--root", str(student), "make-student", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a student copy" in err and "full project" in err
    # the other mistakes are one line too
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for argv, words in ((["make-student", str(tmp_path / "full")], "is not an empty folder"),
                        (["make-student", str(tmp_path / "n"), "--only", "nope"], "unknown exercise id 'nope'")):
        assert exercises_main(argv) == 2
        assert words in capsys.readouterr().err


def test_the_full_project_scores_full_marks(tmp_path, exercise_counts):
    result = grade(ROOT, out=tmp_path / "grade.json")
    bad = [(r["id"], r["failures"][:1]) for r in result["exercises"] if r["passed"] != r["total"]]
    assert not bad
    assert result["score"] == result["max_score"] == sum(e.points for e in EXERCISES)
    assert {r["id"]: r["total"] for r in result["exercises"]} == exercise_counts
    assert json.loads((tmp_path / "grade.json").read_text())["score"] == result["score"]


def _solve(copy, exercise_id, function=None):
    """Put the full project's solution of ``exercise_id`` back into ``copy`` (only the regions in
    ``function``, if given), as a student who solved it would."""
    for r in REGIONS:
        if r.exercise != exercise_id or (function and r.function != function):
            continue
        path = copy / r.path
        lines = path.read_text().split("\n")
        begin = next(i for i, l in enumerate(lines) if l.strip() == f"### BEGIN SOLUTION {exercise_id}"
                     and lines[i + 1].strip().startswith("raise NotImplementedError")
                     and r.function in lines[i + 1])
        lines[begin + 1:begin + 2] = list(r.body)
        path.write_text("\n".join(lines))


def test_a_partly_solved_copy_gets_its_partial_score(tmp_path, exercise_counts, capsys):
    copy = tmp_path / "alice"
    only = ["box_coder", "anchors", "nms"]              # catalog order
    assert exercises_main(["make-student", str(copy), "--only", *only]) == 0
    assert "3 exercises taken out" in capsys.readouterr().out
    _solve(copy, "anchors")                                    # all of it
    _solve(copy, "box_coder", "BoxCoder.decode")               # decode only; encode still raises
    assert exercises_main(["grade", str(copy)]) == 0
    out = capsys.readouterr().out
    result = json.loads((copy / "grade.json").read_text())
    rows = {r["id"]: r for r in result["exercises"]}
    assert list(rows) == only
    assert (rows["anchors"]["passed"], rows["anchors"]["total"]) == (2, exercise_counts["anchors"]) == (2, 2)
    # of box_coder's 4 tests only test_decode_per_class_and_clamp avoids encode
    assert (rows["box_coder"]["passed"], rows["box_coder"]["total"]) == (1, 4)
    assert rows["box_coder"]["points"] == 0.75
    assert rows["nms"]["passed"] == 0 and rows["nms"]["total"] == exercise_counts["nms"]
    assert result["score"] == 2 + 0.75 and result["max_score"] == 2 + 3 + 3
    # the table, then what failed, with the hint and where to look
    assert re.search(r"anchors\s+2 / 2\s+2 / 2", out) and re.search(r"box_coder\s+1 / 4\s+0\.75 / 3", out)
    assert "total" in out and "2.75 / 8" in out
    assert "where to look: minimrcnn/ops/boxes.py:" in out and "exercise box_coder: " in out
    assert "test_decode_per_class_and_clamp" not in out        # it passed


def test_tutorials_end_with_their_exercises():
    notebooks = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    stages = {path.stem for path in notebooks}
    assert {e.stage for e in EXERCISES} <= stages, "an exercise names a notebook that does not exist"
    for path in notebooks:
        last = json.loads(path.read_text())["cells"][-1]
        text = "".join(last["source"])
        assert last["cell_type"] == "markdown" and text.startswith("## Exercises"), path.name
        mine = [e.id for e in EXERCISES if e.stage == path.stem]
        assert all(f"`{i}`" in text for i in mine), path.name
        assert "make-student" in text or (not mine and "no exercise" in text.lower()), path.name


@pytest.mark.install
def test_the_copy_installs_into_a_fresh_venv(student, tmp_path):
    """pip install -e of the copy into a throwaway venv that sees this environment's packages
    (a .pth file; offline: no index, no build isolation, the build tools come from here); then
    the copy's own package imports there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # this environment's packages (numpy, Cython, setuptools: the build tools) seen from the new
    # one: --system-site-packages alone shows the base interpreter's, not this venv's
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    here = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    Path(site, "outer_env.pth").write_text("\n".join(sorted(here)) + "\n")
    copy = tmp_path / "copy"
    shutil.copytree(student, copy)
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                          "--no-index", "-e", str(copy)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    run = subprocess.run([python, "-c", "import minimrcnn, os; print(os.path.realpath(minimrcnn.__file__))"],
                         cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    assert run.returncode == 0 and Path(run.stdout.strip()).is_relative_to(copy.resolve()), run.stderr
