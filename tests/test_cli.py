"""The command line: `python -m minimrcnn gradcheck` prints its table and sets its exit code."""
import subprocess
import sys

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn.backend import get_array_module, to_device


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minimrcnn", *args], capture_output=True, text=True,
                          timeout=300)


def test_gradcheck_cli_checks_every_case_and_passes():
    r = run_cli("gradcheck", "--device", "cpu")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.rstrip().endswith("s") and " pass " in line]
    assert len(rows) >= 30
    assert "0 failed" in r.stdout


def test_gradcheck_cli_filters_and_rejects_unknown_ops():
    r = run_cli("gradcheck", "--op", "softmax", "--device", "cpu")
    assert r.returncode == 0 and "log_softmax" in r.stdout and "conv2d" not in r.stdout
    r = run_cli("gradcheck", "--op", "no_such_op")
    assert r.returncode == 2 and "no case matches" in r.stderr


def test_cpu_backend_without_cupy():
    x = np.ones(3)
    assert get_array_module(x) is np and get_array_module(mr.Tensor(x)) is np
    assert to_device(x, "cpu") is x or np.shares_memory(to_device(x, "cpu"), x)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        to_device(x, "tpu")


def test_convert_cli_turns_a_torch_checkpoint_into_npz(tmp_path):
    torch = pytest.importorskip("torch")
    from minimrcnn.weights import load_state_dict_file
    state = {"rpn.head.conv.weight": torch.randn(4, 4, 3, 3),        # old torchvision name
             "backbone.body.bn1.num_batches_tracked": torch.tensor(3)}
    torch.save({"model": state}, tmp_path / "ckpt.pth")
    r = run_cli("convert", str(tmp_path / "ckpt.pth"), str(tmp_path / "out.npz"))
    assert r.returncode == 0, r.stderr
    arrays, meta = load_state_dict_file(tmp_path / "out.npz")
    assert meta["source"] == "ckpt.pth"
    np.testing.assert_array_equal(arrays["rpn.head.conv.0.0.weight"], state["rpn.head.conv.weight"].numpy())
    assert "rpn.head.conv.weight" not in arrays
