"""Finding the solution regions in the source, and cutting them out.

A region is the lines strictly between a line ``### BEGIN SOLUTION <id>`` and the next line
``### END SOLUTION`` (each alone on its line, indented like the code around it). In the full
tree the two marker lines are comments and change nothing. In a student copy the region's body
becomes one line at the marker's indentation::

    raise NotImplementedError("exercise <id>: <hint> (in <function>, <file>)")

and the marker lines stay, so that the student sees where to write.
"""
import ast
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Region", "BEGIN", "END", "find_regions", "scan_file", "stub_line", "SOURCE_GLOBS"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]+(?P<id>\S+))?[ \t]*$")
_END_RE = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
STUB_PREFIX = "raise NotImplementedError(\"exercise "

# where solution regions may live (the exercises package itself only talks about them)
SOURCE_GLOBS = ("minimrcnn/**/*.py",)
_SKIP_DIRS = ("minimrcnn/exercises",)


@dataclass(frozen=True)
class Region:
    """One solution region: file (relative to the root, '/'-separated), begin / end (1-based
    line numbers of the two marker lines), indent, the body lines (without newlines) and the
    qualified name of the function it sits in."""
    exercise: str
    path: str
    begin: int
    end: int
    indent: str
    body: tuple
    function: str

    @property
    def location(self):
        return f"{self.path}:{self.begin} ({self.function})"

    @property
    def is_stub(self):
        """True where the body is a student copy's NotImplementedError line."""
        code = [line.strip() for line in self.body if line.strip()]
        return len(code) == 1 and code[0].startswith(STUB_PREFIX)


def stub_line(region, hint):
    """The line that replaces ``region``'s body in a student copy."""
    message = f"exercise {region.exercise}: {hint} (in {region.function}, {region.path})"
    return f"{region.indent}raise NotImplementedError({_quote(message)})"


def _quote(text):
    """A double-quoted Python literal of ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _functions(source):
    """(first line, last line, qualified name) of every function in ``source``."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return spans


def scan_file(path, relpath=None):
    """The regions of one file, in order. Malformed markers (a BEGIN without an id or without
    its END, an END without a BEGIN, nested regions, an empty region) raise ValueError naming
    the file and the line."""
    path = Path(path)
    relpath = relpath or path.as_posix()
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text and END not in text:
        return []
    lines = text.split("\n")          # not splitlines(): a form feed in a docstring is no line end
    regions, open_at = [], None
    for number, line in enumerate(lines, 1):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if open_at is not None:
                raise ValueError(f"{relpath}:{number}: a solution region starts inside the one "
                                 f"opened at line {open_at[0]} (regions do not nest)")
            exercise = begin.group("id")
            if not exercise or not _ID_RE.match(exercise):
                raise ValueError(f"{relpath}:{number}: '{line.strip()}' needs an exercise id "
                                 f"([a-z][a-z0-9_]*) after {BEGIN!r}")
            open_at = (number, exercise, begin.group("indent"))
        elif end:
            if open_at is None:
                raise ValueError(f"{relpath}:{number}: {END!r} without a {BEGIN!r} before it")
            start, exercise, indent = open_at
            body = tuple(lines[start:number - 1])
            if not any(b.strip() for b in body):
                raise ValueError(f"{relpath}:{start}: the region of exercise {exercise!r} is empty")
            regions.append(Region(exercise, relpath, start, number, indent, body, ""))
            open_at = None
        elif BEGIN in line or END in line:
            if line.strip().startswith("#"):
                raise ValueError(f"{relpath}:{number}: malformed marker line {line.strip()!r}: "
                                 f"write '{BEGIN} <id>' or '{END}' alone on the line")
    if open_at is not None:
        raise ValueError(f"{relpath}:{open_at[0]}: the region of exercise {open_at[1]!r} has no "
                         f"{END!r}")
    spans = _functions(text) if relpath.endswith(".py") else []
    named = []
    for r in regions:
        inside = [s for s in spans if s[0] < r.begin and r.end <= s[1]]
        function = max(inside, key=lambda s: s[0])[2] if inside else "module level"
        named.append(Region(r.exercise, r.path, r.begin, r.end, r.indent, r.body, function))
    return named


def find_regions(root):
    """Every solution region under ``root`` (the project), by file then line."""
    root = Path(root)
    regions = []
    for pattern in SOURCE_GLOBS:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            if any(rel.startswith(d + "/") for d in _SKIP_DIRS) or "__pycache__" in rel:
                continue
            regions.extend(scan_file(path, rel))
    return regions
