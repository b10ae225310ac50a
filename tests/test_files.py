"""atomic_write: the one way minimrcnn writes files (checkpoints, results, metrics, pictures)."""
import os
import stat

import pytest

from minimrcnn.files import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_write_replaces_the_file_with_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "sub" / "a.bin") as f:
            f.write(b"new")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "a.bin").st_mode) == 0o644


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / ".a.bin.999999999.abc.tmp"      # no process has this pid
    dead.write_bytes(b"x")
    other = tmp_path / ".b.bin.999999999.abc.tmp"     # another target's: not ours to remove
    other.write_bytes(b"x")
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"y")
    assert sorted(os.listdir(tmp_path)) == [".b.bin.999999999.abc.tmp", "a.bin"]
