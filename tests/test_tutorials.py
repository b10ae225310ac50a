"""Every tutorial notebook runs top to bottom in smoke mode (MINIMRCNN_SMOKE=1: fewer iterations,
cached results), and is committed with its outputs and without errors, as a student first sees
it. The notebooks are executed from a copy, so the committed outputs (from a full run) stay."""
import glob
import json
import os

import nbclient
import nbformat
import pytest

TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials")
NOTEBOOKS = sorted(glob.glob(os.path.join(TUTORIALS, "[0-9][0-9]_*.ipynb")))


def test_the_tutorials_folder_has_notebooks():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_committed_with_outputs_and_no_errors(path):
    nb = json.load(open(path))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") is not None for c in code)
    assert any(c.get("outputs") for c in code), "committed without outputs"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"committed with an error output: {errors[0].get('ename')}"
    local = ["/" + d + "/" for d in ("tmp", "root", "home")]
    assert not any(l in json.dumps(c.get("outputs", [])) for c in code for l in local), \
        "an output shows a path of this machine"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMRCNN_SMOKE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": TUTORIALS}})
    client.execute()
