"""Array backends: NumPy on the CPU, CuPy on an NVIDIA GPU, one code path for both.

Every op gets its array module from its inputs (Chainer's idiom)::

    xp = get_array_module(x)      # numpy or cupy
    y = xp.maximum(x, 0)

CuPy is imported only when a GPU array is asked for (``to_device(x, "cuda")``); nothing here
needs it, and ``get_array_module`` never imports it (an array can only be a CuPy array if CuPy
was imported already).
"""
import sys

import numpy as np

__all__ = ["get_array_module", "get_cupy", "to_device", "device_of", "is_cupy_array", "as_numpy"]


def get_cupy():
    """Import and return CuPy, or raise a clear error where it is missing."""
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "device 'cuda' needs CuPy: pip install 'minimrcnn[gpu]' (cupy-cuda12x) on a machine "
            "with an NVIDIA GPU") from e
    return cupy


def is_cupy_array(x):
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def _unwrap(x):
    """The array inside a Tensor; arrays pass through (a CuPy array's own ``.data`` is a
    memory pointer, so only non-arrays are unwrapped)."""
    if isinstance(x, np.ndarray) or is_cupy_array(x):
        return x
    return getattr(x, "data", x)


def get_array_module(*xs):
    """Return ``cupy`` if any of ``xs`` (arrays or Tensors) lives on the GPU, else ``numpy``."""
    for x in xs:
        if is_cupy_array(_unwrap(x)):
            return sys.modules["cupy"]
    return np


def device_of(x):
    """'cuda' or 'cpu' for an array or Tensor."""
    return "cuda" if is_cupy_array(_unwrap(x)) else "cpu"


def _check_device(device):
    device = str(device)
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_device(array, device):
    """Move an array to ``device`` ('cpu' or 'cuda'); a no-op when it is already there."""
    device = _check_device(device)
    if device == "cuda":
        cupy = get_cupy()
        return cupy.asarray(array)
    return as_numpy(array)


def as_numpy(x):
    """A NumPy view/copy of an array or Tensor, wherever it lives."""
    x = _unwrap(x)
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)
