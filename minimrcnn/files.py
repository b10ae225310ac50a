"""Atomic file writes: the one home for "write a temporary, flush, rename over the target".

Checkpoints, results files, metrics and pictures are all written this way, so a crash (or a
Ctrl-C) leaves either the old file or the new one, never half of one::

    with atomic_write("OUT/metrics.json") as f:      # f: a binary file object
        f.write(json.dumps(metrics).encode())

The temporary is ``.<name>.<pid>.<random>.tmp`` beside the target; it is flushed to disk, given
the mode a new file gets under the umask (``mkstemp`` alone makes it 0600), renamed over the
target (``os.replace``), and the directory is flushed too, so that the rename survives a crash.
A temporary left by a write that was killed half-way is removed by the next write to the same
target.
"""
import contextlib
import os
import re
import tempfile
import time

__all__ = ["atomic_write", "STALE_SECONDS"]

STALE_SECONDS = 3600        # a temporary this old belongs to no write that can still finish


@contextlib.contextmanager
def atomic_write(path):
    """Context manager: a binary file object whose contents replace ``path`` when the block
    ends without an exception (and are thrown away when it raises)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temporaries(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _umask():
    mask = os.umask(0)          # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    if os.name != "posix":      # Windows cannot open a directory; NTFS journals the rename
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(directory, basename):
    """Remove ``.<basename>.<pid>.*.tmp`` files of earlier writes that can no longer finish:
    their process is gone (POSIX), or they are older than :data:`STALE_SECONDS`."""
    pattern = re.compile(re.escape(f".{basename}.") + r"(\d+)\.\w+\.tmp")
    now = time.time()
    for name in os.listdir(directory):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        candidate = os.path.join(directory, name)
        pid = int(match.group(1))
        try:
            old = now - os.path.getmtime(candidate) > STALE_SECONDS
            if old or (pid != os.getpid() and not _process_alive(pid)):
                os.unlink(candidate)
        except FileNotFoundError:   # its own write just renamed or removed it
            pass


def _process_alive(pid):
    if os.name != "posix":      # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, another user's
        return True
    return True
