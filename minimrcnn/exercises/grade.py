"""grade: run each exercise's tests in a student's copy, print a score table, write grade.json.

An exercise scores ``points * passed / total`` over its ``ex_<id>`` tests. ``total`` is the
number of tests the full project had when the copy was made (recorded in
student_exercises.json), so a test that the student's code keeps from even being collected
(a syntax error, an import that fails) counts as failed, not as absent. The tests run in a
fresh ``python -m pytest`` with the copy first on the path, from the copy's folder; the
grader refuses to grade if ``import minimrcnn`` there would load another tree.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .catalog import EXERCISES, get_exercise
from .student import MANIFEST, is_student_copy

__all__ = ["grade", "run_pytest", "format_table"]


def _env(root):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_import_location(root, env):
    out = subprocess.run([sys.executable, "-c", "import minimrcnn, os; print(os.path.realpath(minimrcnn.__file__))"],
                         cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"import minimrcnn fails in {root}: {last}"
    where = Path(out.stdout.strip().splitlines()[-1])
    if Path(root).resolve() not in where.parents:
        raise RuntimeError(f"in {root}, 'import minimrcnn' loads {where}, not the copy's own "
                           f"package: grade a folder that holds minimrcnn/ (a copy made by "
                           f"make-student)")
    return None


def run_pytest(root, exercises, collect_only=False, timeout=1800):
    """Run (or only collect) the tests of ``exercises`` in ``root``: the plugin's report, a dict
    {"tests": {nodeid: {exercises, outcome, message, where}}, "collection_errors": [...]}."""
    root = Path(root).resolve()
    env = _env(root)
    import_error = _check_import_location(root, env)
    files = sorted({f for e in exercises for f in e.test_files if (root / f).is_file()})
    missing = sorted({f for e in exercises for f in e.test_files} - set(files))
    errors = [{"where": f, "message": f"the test file {f} is missing"} for f in missing]
    if import_error:
        errors.append({"where": "minimrcnn", "message": import_error})
    if not files:
        return {"tests": {}, "collection_errors": errors, "exitstatus": None}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env["MINIMRCNN_GRADE_REPORT"] = str(report)
        if collect_only:
            env["MINIMRCNN_GRADE_COLLECT_ONLY"] = "1"
        markers = " or ".join(e.marker for e in exercises)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "minimrcnn.exercises.pytest_plugin", "-m", markers, "--rootdir", str(root)]
        cmd += (["--collect-only"] if collect_only else ["--tb=short"]) + files
        try:
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            errors.append({"where": "pytest", "message": f"the tests ran past {timeout} s (an endless "
                                                         f"loop?); every test not finished counts as failed"})
            proc = None
        if report.is_file():
            result = json.loads(report.read_text())
        else:
            tail = "" if proc is None else (proc.stdout + proc.stderr).strip()[-2000:]
            result = {"tests": {}, "collection_errors": [], "exitstatus": None}
            if tail:
                errors.append({"where": "pytest", "message": tail})
    result["collection_errors"] = errors + result.get("collection_errors", [])
    return result


def _manifest(root):
    if is_student_copy(root):
        data = json.loads((Path(root) / MANIFEST).read_text())
        return {e["id"]: e for e in data["exercises"]}
    return None


def grade(root=".", only=None, out=None, timeout=1800, expected_tests=None):
    """Grade the copy at ``root``: returns the grade dict (also written to ``out``, by default
    ``root/grade.json``). In a student copy the exercises are those it was made with; in the
    full project (no student_exercises.json) every exercise of the catalog, which should
    score full marks. only: restrict to these ids. expected_tests: {id: count} overriding the
    recorded totals (the full project records none; its collected count is used)."""
    root = Path(root).resolve()
    if not (root / "minimrcnn").is_dir():
        raise ValueError(f"{root} holds no minimrcnn/ folder: give the folder of a student copy")
    manifest = _manifest(root)
    ids = list(manifest) if manifest is not None else [e.id for e in EXERCISES]
    if only:
        for exercise_id in only:
            get_exercise(exercise_id)
            if exercise_id not in ids:
                raise ValueError(f"exercise {exercise_id!r} was not handed out in {root} "
                                 f"(it has: {', '.join(ids)})")
        ids = [i for i in ids if i in set(only)]
    exercises = [get_exercise(i) for i in ids]
    result = run_pytest(root, exercises, timeout=timeout)
    rows = []
    for e in exercises:
        tests = {k: v for k, v in result["tests"].items() if e.id in v["exercises"]}
        passed = sum(v["outcome"] == "passed" for v in tests.values())
        recorded = (expected_tests or {}).get(e.id)
        if recorded is None and manifest is not None:
            recorded = manifest[e.id].get("tests")
        total = max(len(tests), int(recorded or 0))
        failures = [{"test": k, "message": v["message"], "where": v["where"]}
                    for k, v in tests.items() if v["outcome"] != "passed"]
        if total > len(tests):
            failures.append({"test": f"{total - len(tests)} test(s) not run",
                             "message": "; ".join(err["message"].splitlines()[-1] for err in
                                                  result["collection_errors"][:3]) or
                             "they were not collected", "where": ""})
        regions = manifest[e.id]["regions"] if manifest is not None else []
        rows.append({"id": e.id, "title": e.title, "passed": passed, "total": total,
                     "points": round(e.points * passed / total, 2) if total else 0.0,
                     "max_points": e.points, "regions": regions, "failures": failures})
    grade_dict = {"root": str(root), "exercises": rows,
                  "score": round(sum(r["points"] for r in rows), 2),
                  "max_score": sum(r["max_points"] for r in rows),
                  "collection_errors": result["collection_errors"]}
    out = Path(out) if out is not None else root / "grade.json"
    out.write_text(json.dumps(grade_dict, indent=2) + "\n", encoding="utf-8")
    return grade_dict


def format_table(grade_dict, details=3):
    """The score table, then for each exercise not at full marks its first failures: which
    test (its parameters are its input), the message (expected vs got), where to look."""
    rows = grade_dict["exercises"]
    width = max([len("exercise")] + [len(r["id"]) for r in rows])
    lines = [f"{'exercise':<{width}}  passed / total   points",
             f"{'-' * width}  --------------   ------"]
    for r in rows:
        lines.append(f"{r['id']:<{width}}  {r['passed']:>6} / {r['total']:<5}   "
                     f"{r['points']:g} / {r['max_points']}")
    lines.append(f"{'total':<{width}}  {'':14}   {grade_dict['score']:g} / {grade_dict['max_score']}")
    for r in rows:
        if not r["failures"]:
            continue
        lines.append("")
        lines.append(f"{r['id']} ({r['title']}): {len(r['failures'])} failing")
        if r["regions"]:
            lines.append(f"  where to look: {', '.join(r['regions'])}")
        for f in r["failures"][:details]:
            lines.append(f"  - {f['test']}")
            for text in f["message"].splitlines()[:8]:
                lines.append(f"      {text}")
            if f["where"]:
                lines.append(f"      (raised at {f['where']})")
        if len(r["failures"]) > details:
            lines.append(f"  ... and {len(r['failures']) - details} more (grade.json has them all)")
    return "\n".join(lines)
