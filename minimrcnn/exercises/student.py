"""make-student: a complete copy of the project with the chosen solutions taken out.

The copy holds the project's files (those git tracks, plus new files git does not ignore; a
tree without git: every file but build outputs), never a ``.git`` folder, build outputs,
compiled modules or Cython's generated ``.c`` files. In it

* every region of a chosen exercise is replaced by its ``NotImplementedError`` line;
* the compiled kernels that would do a chosen exercise's work (``ext/<name>.pyx``, ``.cu``) are
  left out: setup.py then does not build them, ``minimrcnn._ext.cpu_module(name)`` is None, and
  the op runs its NumPy code, which is the student's;
* a notebook cell whose outputs show a removed line (a printed ``inspect.getsource``) loses
  its outputs (the cell stays; rerun it once the exercise is solved);
* ``student_exercises.json`` records what was handed out (the grader reads it).

Nothing of a removed solution may survive: every removed line that does not also appear in the
code left in the copy is searched for in every file of it, notebook outputs included, and the
copy is refused (and deleted) if one is found.
"""
import json
import shutil
import subprocess
from pathlib import Path

from .catalog import EXERCISES, get_exercise
from .regions import find_regions, stub_line

__all__ = ["MANIFEST", "make_student", "project_files", "secret_lines", "leaked_lines",
           "is_student_copy", "text_lines"]

MANIFEST = "student_exercises.json"

# never copied: version control, build outputs, caches, environments
_SKIP_PARTS = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".venv", ".ci-venv",
               ".ipynb_checkpoints", ".whl", ".gl"}
_SKIP_SUFFIXES = (".so", ".pyd", ".pyc", ".o", ".egg-info")
_MIN_SECRET = 6          # shorter removed lines ("pass", "])") say nothing on their own


def _skipped(rel):
    parts = Path(rel).parts
    if any(p in _SKIP_PARTS or p.endswith(".egg-info") for p in parts):
        return True
    if rel.endswith(_SKIP_SUFFIXES) or rel == "grade.json":
        return True
    return len(parts) == 2 and rel.startswith("ext/") and rel.endswith((".c", ".cpp"))   # Cython's output


def project_files(root):
    """Relative paths ('/'-separated) of the files a copy of ``root`` holds, sorted."""
    root = Path(root)
    files = None
    if (root / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                                  "--exclude-standard"], capture_output=True, check=True).stdout
            files = [f for f in out.decode("utf-8").split("\0") if f]
        except (OSError, subprocess.CalledProcessError):
            files = None
    if files is None:
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(f for f in set(files) if (root / f).is_file() and not (root / f).is_symlink()
                  and not _skipped(f))


def is_student_copy(root):
    return (Path(root) / MANIFEST).is_file()


def text_lines(path):
    """The stripped lines a file shows a reader: for a notebook, its cells' sources and text
    outputs (JSON decoded); for other text files, the file; none for binary files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    if path.suffix == ".ipynb":
        try:
            return [line.strip() for chunk in _notebook_texts(json.loads(text)) for line in chunk.splitlines()]
        except ValueError:
            pass
    return [line.strip() for line in text.splitlines()]


def _as_text(value):
    return "".join(value) if isinstance(value, list) else str(value)


def _output_texts(output):
    texts = []
    if "text" in output:
        texts.append(_as_text(output["text"]))
    for key, value in output.get("data", {}).items():
        if key.startswith("text/") or key.endswith("json"):
            texts.append(_as_text(value) if not isinstance(value, dict) else json.dumps(value))
    for key in ("evalue", "traceback"):
        if key in output:
            texts.append(_as_text(output[key]) if key == "evalue" else "\n".join(output[key]))
    return texts


def _notebook_texts(nb):
    for cell in nb.get("cells", []):
        yield _as_text(cell.get("source", ""))
        for output in cell.get("outputs", []) or []:
            yield from _output_texts(output)


def secret_lines(root, regions, removed_files=()):
    """The removed lines that the rest of the project does not show anyway: stripped lines of
    the regions that appear nowhere in the project's code outside those regions (notebook
    outputs do not count as code: they may print a solution) and are at least 6 characters."""
    root = Path(root)
    removed = {line.strip() for r in regions for line in r.body if len(line.strip()) >= _MIN_SECRET}
    by_file = {}
    for r in regions:
        by_file.setdefault(r.path, []).append(r)
    public = set()
    for rel in project_files(root):
        if rel in removed_files or rel == MANIFEST:
            continue
        path = root / rel
        if rel.endswith(".ipynb"):
            try:
                nb = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
            public.update(line.strip() for cell in nb.get("cells", [])
                          for line in _as_text(cell.get("source", "")).splitlines())
            continue
        try:
            lines = path.read_text(encoding="utf-8").split("\n")      # as scan_file numbers them
        except (UnicodeDecodeError, OSError):
            continue
        hidden = set()
        for r in by_file.get(rel, ()):
            hidden.update(range(r.begin, r.end - 1))            # body lines, 0-based
        public.update(line.strip() for i, line in enumerate(lines) if i not in hidden)
    return removed - public


def leaked_lines(copy_root, secrets):
    """[(file, line)] of every secret line found in the copy (empty: nothing survived)."""
    copy_root = Path(copy_root)
    found = []
    for path in sorted(p for p in copy_root.rglob("*") if p.is_file()):
        for line in text_lines(path):
            if line in secrets:
                found.append((path.relative_to(copy_root).as_posix(), line))
    return found


def _select(only):
    """The chosen exercises in catalog order; an ablation exercise brings the pieces it needs
    (the student implements them, then reruns the table)."""
    if not only:
        return list(EXERCISES)
    ids = set()
    for exercise_id in only:
        e = get_exercise(exercise_id)
        ids.add(e.id)
        if e.is_ablation:
            ids.update(e.requires)
    return [e for e in EXERCISES if e.id in ids]


def _check_source(root, regions):
    if is_student_copy(root):
        handed = json.loads((Path(root) / MANIFEST).read_text())["exercises"]
        raise ValueError(f"{root} is a student copy (it has {MANIFEST}: exercises "
                         f"{', '.join(e['id'] for e in handed)} were taken out); make student "
                         f"copies from the full project, which still has every solution")
    stubs = [r for r in regions if r.is_stub]
    if stubs:
        raise ValueError(f"{root} has solution regions without their solution ({stubs[0].location}, "
                         f"exercise {stubs[0].exercise}): it looks like a student copy; make "
                         f"student copies from the full project")
    known = {e.id for e in EXERCISES}
    unknown = sorted({r.exercise for r in regions} - known)
    if unknown:
        r = next(r for r in regions if r.exercise == unknown[0])
        raise ValueError(f"{r.location}: exercise id {unknown[0]!r} is not in the catalog "
                         f"(minimrcnn/exercises/catalog.py)")


def _strip_notebook(path, secrets):
    """Clear the outputs of the cells that show a secret line; True if the file changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs") or []
        shown = {line.strip() for o in outputs for t in _output_texts(o) for line in t.splitlines()}
        if shown & secrets:
            cell["outputs"] = []
            cell["execution_count"] = None
            changed = True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def make_student(root, out_dir, only=None, count_tests=None):
    """Write a student copy of the project at ``root`` into ``out_dir`` (new or empty).

    only: exercise ids to take out (default: all). count_tests: {exercise id: number of
    tests} recorded for the grader (an exercise whose tests cannot even be collected in the
    student's copy then still counts as that many failures); None counts them with pytest.
    Returns the manifest (a dict, also written to ``out_dir/student_exercises.json``).
    """
    root, out_dir = Path(root).resolve(), Path(out_dir).resolve()
    regions = find_regions(root)
    _check_source(root, regions)
    chosen = _select(only)
    chosen_ids = {e.id for e in chosen}
    for e in chosen:
        if not e.is_ablation and not any(r.exercise == e.id for r in regions):
            raise ValueError(f"exercise {e.id!r} has no solution region in {root}")
    if out_dir == root:
        raise ValueError(f"OUT_DIR {out_dir} is the project itself")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"OUT_DIR {out_dir} exists and is not an empty folder; give a new one")

    taken = [r for r in regions if r.exercise in chosen_ids]
    kernels = sorted({k for e in chosen for k in e.kernels})
    all_files = project_files(root)
    # every source of a left-out kernel: ext/<name>.pyx (CPU) and ext/<name>.cu (GPU)
    removed_files = {f for f in all_files for k in kernels if f.startswith(f"ext/{k}.")}
    files = [f for f in all_files if f not in removed_files and not _inside(root / f, out_dir)]
    secrets = secret_lines(root, taken, removed_files)
    hints = {e.id: e.hint for e in chosen}
    by_file = {}
    for r in taken:
        by_file.setdefault(r.path, []).append(r)

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for rel in files:
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in by_file:
                target.write_text(_cut(root / rel, by_file[rel], hints), encoding="utf-8")
                shutil.copymode(root / rel, target)
            else:
                shutil.copy2(root / rel, target)
            if rel.endswith(".ipynb"):
                _strip_notebook(target, secrets)
        counts = count_tests if count_tests is not None else count_exercise_tests(root, chosen)
        manifest = {
            "made_by": "python -m minimrcnn.exercises make-student",
            "exercises": [{"id": e.id, "title": e.title, "points": e.points, "marker": e.marker,
                           "test_files": list(e.test_files), "tests": int(counts.get(e.id, 0)),
                           "regions": [r.location for r in taken if r.exercise == e.id
                                       or e.is_ablation and r.exercise in e.requires],
                           "requires": list(e.requires), "hint": e.hint, "notes": e.notes}
                          for e in chosen],
            "removed_kernels": kernels,
        }
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        leaks = leaked_lines(out_dir, secrets)
        if leaks:
            raise RuntimeError(f"a removed solution line survives in the copy: {leaks[0][0]}: "
                               f"{leaks[0][1]!r} ({len(leaks)} such lines)")
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return manifest


def _inside(path, folder):
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _cut(path, regions, hints):
    """The text of ``path`` with each region's body replaced by its stub line."""
    lines = path.read_text(encoding="utf-8").split("\n")          # as scan_file numbers them
    out, skip_until = [], 0
    starts = {r.begin: r for r in regions}
    for number, line in enumerate(lines, 1):
        if number < skip_until:
            continue
        out.append(line)
        r = starts.get(number)
        if r is not None:
            out.append(stub_line(r, hints[r.exercise]))
            out.append(lines[r.end - 1])                       # the END marker
            skip_until = r.end + 1
    return "\n".join(out)


def count_exercise_tests(root, exercises):
    """{exercise id: number of tests marked ex_<id>} in the project at ``root`` (pytest --collect-only)."""
    from .grade import run_pytest
    results = run_pytest(root, exercises, collect_only=True)
    counts = {e.id: 0 for e in exercises}
    for record in results["tests"].values():
        for exercise_id in record["exercises"]:
            if exercise_id in counts:
                counts[exercise_id] += 1
    return counts
