"""A pytest plugin for the grader: records, for every test it runs, the exercises it grades
(its ``ex_<id>`` markers), the outcome and the failure's message, into the JSON file named by
the environment variable MINIMRCNN_GRADE_REPORT. Loaded with ``-p minimrcnn.exercises.pytest_plugin``."""
import json
import os

_tests = {}
_errors = []


def _exercises(item):
    return sorted({m.name[3:] for m in item.iter_markers() if m.name.startswith("ex_")})


def _message(report, limit=20):
    """The failure's exception line(s) and where it was raised, trimmed for a table."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        lines = str(crash.message).strip().splitlines()
        text = "\n".join(lines[:limit]) + ("\n..." if len(lines) > limit else "")
        return text, f"{crash.path}:{crash.lineno}"
    text = str(report.longrepr).strip().splitlines()
    return "\n".join(text[-limit:]), ""


def pytest_collection_finish(session):
    if os.environ.get("MINIMRCNN_GRADE_COLLECT_ONLY") == "1":
        for item in session.items:
            _tests[item.nodeid] = {"exercises": _exercises(item), "outcome": "collected",
                                   "message": "", "where": ""}


def pytest_runtest_setup(item):
    _tests[item.nodeid] = {"exercises": _exercises(item), "outcome": "passed", "message": "",
                           "where": ""}


def pytest_runtest_logreport(report):
    record = _tests.get(report.nodeid)
    if record is None or record["outcome"] != "passed":
        return
    if report.failed:
        record["outcome"] = "failed" if report.when == "call" else "error"
        record["message"], record["where"] = _message(report)
    elif report.skipped and report.when in ("setup", "call"):
        record["outcome"] = "skipped"
        record["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""


def pytest_collectreport(report):
    if report.failed:
        _errors.append({"where": report.nodeid, "message": _message(report, limit=12)[0]})


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MINIMRCNN_GRADE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tests": _tests, "collection_errors": _errors, "exitstatus": int(exitstatus)}, f)
