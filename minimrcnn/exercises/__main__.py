"""python -m minimrcnn.exercises list | make-student OUT_DIR [--only ID ...] | grade [DIR] [--only ID ...]

A mistake (an unknown id, an OUT_DIR that is not empty, make-student run on a student copy) is
one line on stderr and exit status 2.
"""
import argparse
import sys
from pathlib import Path

from .catalog import EXERCISES
from .grade import format_table, grade
from .regions import find_regions
from .student import make_student

PROJECT = Path(__file__).resolve().parent.parent.parent    # the tree this package belongs to


def _list(args):
    regions = find_regions(args.root)
    width = max(len(e.id) for e in EXERCISES)
    print(f"{'id':<{width}}  points  stage                      title")
    for e in EXERCISES:
        files = sorted({r.path for r in regions if r.exercise == e.id})
        print(f"{e.id:<{width}}  {e.points:>6}  {e.stage:<26} {e.title}")
        print(f"{'':<{width}}          solution in: {', '.join(files) or '(no region found!)'}")
        print(f"{'':<{width}}          graded by:   pytest -m {e.marker} {' '.join(e.test_files)}"
              + (f"   (needs: {', '.join(e.requires)})" if e.requires else "")
              + (f"   (kernels left out: {', '.join(e.kernels)})" if e.kernels else ""))
    print(f"{len(EXERCISES)} exercises, {sum(e.points for e in EXERCISES)} points")
    return 0


def _make_student(args):
    manifest = make_student(args.root, args.out_dir, only=args.only)
    names = ", ".join(e["id"] for e in manifest["exercises"])
    print(f"wrote a student copy to {args.out_dir} with {len(manifest['exercises'])} exercises "
          f"taken out: {names}")
    if manifest["removed_kernels"]:
        print(f"compiled kernels left out (their ops run the student's NumPy code): "
              f"{', '.join(manifest['removed_kernels'])}")
    print(f"hand it out; grade it with: python -m minimrcnn.exercises grade {args.out_dir}")
    return 0


def _grade(args):
    result = grade(args.dir, only=args.only, out=args.out, timeout=args.timeout)
    print(format_table(result))
    print(f"\nwrote {args.out or Path(args.dir).resolve() / 'grade.json'}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minimrcnn.exercises",
                                     description="Exercises for instructors: hand out a student "
                                                 "copy with solutions taken out; grade it offline.")
    parser.add_argument("--root", default=str(PROJECT),
                        help="the full project to read solutions from (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every exercise: id, title, files, the tests that grade it, points")
    p.set_defaults(run=_list)
    p = sub.add_parser("make-student", help="a copy of the project with the chosen solutions taken out")
    p.add_argument("out_dir", metavar="OUT_DIR", help="a new (or empty) folder for the copy")
    p.add_argument("--only", nargs="+", metavar="ID", help="take out only these exercises (default: all)")
    p.set_defaults(run=_make_student)
    p = sub.add_parser("grade", help="run each exercise's tests in a copy; score table and grade.json")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the student's copy (default: .)")
    p.add_argument("--only", nargs="+", metavar="ID", help="grade only these exercises")
    p.add_argument("--out", default=None, help="where to write grade.json (default: DIR/grade.json)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for all the tests (default: %(default)s)")
    p.set_defaults(run=_grade)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"python -m minimrcnn.exercises {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
