"""minimrcnn: Mask R-CNN from scratch, for teaching.

    import minimrcnn as mr
    from minimrcnn import Tensor, functional as F, nn, optim, ops
"""
from .autograd import Function, Tensor, enable_grad, gradcheck, no_grad  # noqa: F401
from . import backend, functional  # noqa: F401
from .backend import get_array_module  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):
    # nn, optim and ops load on first use so that `import minimrcnn` stays light
    import importlib
    if name in ("nn", "optim", "ops", "data", "config", "models", "viz", "engine", "weights"):
        return importlib.import_module(f"minimrcnn.{name}")
    raise AttributeError(f"module 'minimrcnn' has no attribute {name!r}")
