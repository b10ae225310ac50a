"""Exercises for instructors: student copies with the solutions taken out, graded offline.

Solution regions live in the library's own source (so that the reference implementation is the
one every test runs), between nbgrader's markers with the exercise id added::

    ### BEGIN SOLUTION nms
    ...the lines the student writes...
    ### END SOLUTION

and each exercise is graded by the tests marked ``@pytest.mark.ex_<id>`` (one marker per
exercise, as minitorch does for its tasks). From the command line::

    python -m minimrcnn.exercises list                          # id, title, file, tests, points
    python -m minimrcnn.exercises make-student OUT_DIR [--only ID ...]
    python -m minimrcnn.exercises grade [DIR] [--only ID ...]   # score table + DIR/grade.json

From Python: :func:`make_student`, :func:`grade`, :data:`EXERCISES`, :func:`find_regions`.
"""
from .catalog import EXERCISES, Exercise, exercise_ids, get_exercise
from .grade import format_table, grade
from .regions import Region, find_regions
from .student import MANIFEST, make_student

__all__ = ["EXERCISES", "Exercise", "exercise_ids", "get_exercise", "Region", "find_regions",
           "make_student", "grade", "format_table", "MANIFEST"]
