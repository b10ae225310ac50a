"""How students install: a non-editable ``pip install .`` into a fresh virtual environment, used
from another directory. The installed package must find its compiled kernels and its CUDA
sources (package data: a wheel has no ext/ folder) without the checkout.

Marked ``install`` (and ``slow``): it builds the kernels and fetches the dependencies, so the
default test run leaves it out (pyproject.toml's addopts); CI runs it (``pytest -m install``).
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.install, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent

SMOKE = textwrap.dedent("""
    import os, sys
    import numpy as np
    import minimrcnn
    from minimrcnn import _ext, ops

    package = os.path.dirname(os.path.abspath(minimrcnn.__file__))
    assert package.startswith(sys.prefix), (package, sys.prefix)      # the installed copy
    for name in ("conv", "pooling", "nms", "roi_align", "roi_pool"):
        assert _ext.cpu_module(name) is not None, f"compiled kernel {name} missing"
    for name in ("nms", "roi_align", "roi_pool"):
        path = _ext.cuda_source_path(name)
        assert str(path).startswith(package), path                   # package data, not ext/
        assert "__global__" in path.read_text(), path

    from minimrcnn.config import get_config
    from minimrcnn.models import build_model
    model = build_model(get_config("classroom_fpn"))
    det = model.predict([np.random.default_rng(0).random((3, 64, 80))])[0]
    assert det["boxes"].shape[1] == 4 and det["masks"].shape[-2:] == (64, 80)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    assert ops.nms(boxes, np.array([0.9, 0.8], np.float32), 0.5).tolist() == [0]
    print("installed minimrcnn works from", os.getcwd())
""")


def _clean_copy(dst):
    """The checkout's files as a fresh clone has them (tracked, and new ones git does not ignore),
    without build outputs, compiled modules or virtual environments."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def test_a_fresh_non_editable_install_works_from_another_directory(tmp_path):
    source, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    source.mkdir()
    elsewhere.mkdir()
    _clean_copy(source)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
                       capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    shutil.rmtree(source)                         # nothing may be read from the sources any more
    r = subprocess.run([str(python), "-c", SMOKE], cwd=elsewhere, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([str(python), "-m", "minimrcnn", "gradcheck", "--op", "relu", "--device", "cpu"],
                       cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0 and "0 failed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
