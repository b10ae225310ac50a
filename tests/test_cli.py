"""The command line: `python -m minimrcnn gradcheck` prints its table and sets its exit code."""
import importlib.util
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


def _one_line_error(r, command):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"python -m minimrcnn {command}: error: "), r.stderr
    return lines[0]


def test_cli_user_mistakes_print_one_line_and_exit_2(tmp_path):
    line = _one_line_error(run_cli("convert", str(tmp_path / "missing.pth"), str(tmp_path / "o.npz")),
                           "convert")
    assert "missing.pth: no such file" in line
    line = _one_line_error(run_cli("gradcheck", "--op", "no_such_op"), "gradcheck")
    assert "no case matches --op no_such_op" in line
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    if importlib.util.find_spec("torch") is not None:     # a file torch.load cannot read: ValueError
        line = _one_line_error(run_cli("convert", str(tmp_path / "notes.pth"), str(tmp_path / "o.npz")),
                               "convert")
        assert "not a torch checkpoint" in line
    r = run_cli("--traceback", "convert", str(tmp_path / "missing.pth"), str(tmp_path / "o.npz"))
    assert r.returncode != 0 and "Traceback" in r.stderr and "UsageError" in r.stderr


def test_cli_maps_user_errors_of_any_command_to_exit_2(capsys, monkeypatch):
    """The mapping lives in main(), so a command gets it without code of its own."""
    from minimrcnn import __main__ as cli
    from minimrcnn.config import ConfigError

    for error in (cli.UsageError("bad --iters 0"), FileNotFoundError("ann.json"),
                  ConfigError("unknown config key 'lr'"), ValueError("boxes[3] has x2 < x1")):
        def boom(args, error=error):
            raise error
        monkeypatch.setattr(cli, "cmd_gradcheck", boom)
        assert cli.main(["gradcheck"]) == 2
        err = capsys.readouterr().err
        assert err == f"python -m minimrcnn gradcheck: error: {error}\n"

    def crash(args):
        raise KeyError("a bug, not a user mistake")
    monkeypatch.setattr(cli, "cmd_gradcheck", crash)
    with pytest.raises(KeyError):                      # programming errors keep their traceback
        cli.main(["gradcheck"])


def test_convert_checks_its_input_before_importing_torch(tmp_path):
    code = ("import sys; from minimrcnn.__main__ import main; "
            f"rc = main(['convert', {str(tmp_path / 'missing.pth')!r}, {str(tmp_path / 'o.npz')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], r.stdout + r.stderr
