"""Compiled kernels, and the one place that finds them.

CPU: every ``ext/NAME.pyx`` is built by setup.py into the extension module
``minimrcnn._ext.NAME`` (``conv``, ``pooling``, ``nms``, ``roi_align``, ``roi_pool``).
GPU: every ``ext/NAME.cu`` is CUDA C++ source that ``cupy.RawModule`` compiles at first use.
setup.py ships the ``.cu`` files inside this package (a wheel has no ``ext/``); a checkout's
``ext/`` is read first, so an edited kernel runs without a reinstall.

    cpu_module("nms")          # the compiled module, or None (and a warning, once) if not built
    cuda_module("roi_align")   # the cupy.RawModule of ext/roi_align.cu, compiled once per process
    launch("roi_pool", "roi_pool_forward", dtype, total, args)   # a grid-stride kernel
"""
import functools
import importlib
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["cpu_module", "cuda_source_path", "cuda_module", "launch"]

# OpenMP threads that finish a kernel sleep instead of spinning (unless the user chose): the
# OpenMP kernels (im2col, RoIAlign) alternate with OpenBLAS GEMMs, whose own threads then
# fight spinning OpenMP threads for the cores. Measured on 2 cores, one classroom training step
# (4 images of 128 px, trained state): 0.38 s spinning, 0.27 s passive; R50-FPN inference at
# 800x1216: 4.41 s vs 4.59 s. libgomp reads this once, when the first kernel module loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_EXT_DIR = _PACKAGE_DIR.parent.parent / "ext"

# --fmad=false: no fused multiply-add, so that the GPU rounds as the CPU kernels do
CUDA_OPTIONS = ("--std=c++14", "--fmad=false")


@functools.lru_cache(maxsize=None)
def cpu_module(name):
    """The compiled module ``minimrcnn._ext.<name>``, or None (with a warning, once) where it was
    not built; the callers then run their NumPy code instead."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        warnings.warn(f"minimrcnn._ext.{name} is not built (pip install -e . or python setup.py "
                      f"build_ext --inplace); using the slow NumPy code instead", RuntimeWarning,
                      stacklevel=3)
        return None


def cuda_source_path(name):
    """Where ``<name>.cu`` is: the checkout's ext/ if there is one, else this package."""
    for directory in (_CHECKOUT_EXT_DIR, _PACKAGE_DIR):
        path = directory / f"{name}.cu"
        if path.is_file():
            return path
    raise RuntimeError(f"the CUDA source {name}.cu is missing: looked in {_CHECKOUT_EXT_DIR} (a "
                       f"checkout) and {_PACKAGE_DIR} (an installed package); reinstall minimrcnn")


@functools.lru_cache(maxsize=None)
def cuda_module(name):
    """``ext/<name>.cu`` compiled by ``cupy.RawModule`` (once per process)."""
    from ..backend import get_cupy
    cupy = get_cupy()
    return cupy.RawModule(code=cuda_source_path(name).read_text(), options=CUDA_OPTIONS)


def launch(name, kernel, dtype, total, args, threads=256):
    """Run kernel ``<kernel>_<float|double>`` of ``<name>.cu`` over ``total`` elements: the
    kernels loop with a grid stride, so at most 65536 blocks of ``threads`` are launched; the
    first argument they get is ``total`` (int64)."""
    suffix = "float" if np.dtype(dtype) == np.float32 else "double"
    function = cuda_module(name).get_function(f"{kernel}_{suffix}")
    blocks = max(1, min((total + threads - 1) // threads, 1 << 16))
    function((blocks,), (threads,), (np.int64(total),) + tuple(args))
