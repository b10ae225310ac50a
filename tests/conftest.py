"""Shared pytest setup: the array backends to test on, and the GPU marker's skip rule."""
import os

# One BLAS thread in tests: the tests are small, and on a loaded 2-core machine OpenBLAS's
# spinning threads made the model tests ~20x slower (measured: 113 s vs 5 s for one test).
# Set before NumPy loads OpenBLAS; benchmarks choose their own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _cupy_with_gpu():
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # ImportError, or CUDA present without a device/driver
        return None


CUPY = _cupy_with_gpu()
BACKENDS = [np] + ([CUPY] if CUPY is not None else [])


def pytest_collection_modifyitems(config, items):
    if CUPY is not None:
        return
    skip = pytest.mark.skip(reason="needs CuPy and an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS, ids=lambda xp: xp.__name__)
def xp(request):
    """Each available array module: numpy always, cupy where a GPU exists."""
    return request.param
