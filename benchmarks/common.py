"""What every benchmark shares: the import path for a checkout, BLAS threads, median timing.

Benchmarks print ratios against a reference timed in the same process (torch / torchvision
on the CPU, or our plain NumPy reference), never absolute pass/fail times: the machines are
noisy, so the functions being compared take turns and the median of the repeats is kept.
"""
import os
import sys
import time

import numpy as np

# run from a checkout without installing: python benchmarks/bench_xxx.py
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _blas_pool():
    """threadpoolctl's description of NumPy's BLAS, or None (no threadpoolctl, or no BLAS found)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return next((pool for pool in threadpool_info() if pool.get("user_api") == "blas"), None)


def blas_threads():
    """The number of threads NumPy's BLAS uses (threadpoolctl if present, else env / CPUs)."""
    pool = _blas_pool()
    if pool is not None:
        return int(pool["num_threads"])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def blas_description():
    """NumPy's BLAS and the kernels it runs, e.g. "openblas 0.3.31, Haswell kernels
    (OPENBLAS_CORETYPE=Haswell set in the environment)": OpenBLAS runs AVX2 kernels when told
    so, even on an AVX-512 CPU, and a ratio against torch (MKL / oneDNN) then says so."""
    pool = _blas_pool()
    if pool is None:
        text = "BLAS unknown (pip install threadpoolctl to name it)"
    else:
        text = f"{pool.get('internal_api')} {pool.get('version')}"
        if pool.get("architecture"):
            text += f", {pool['architecture']} kernels"
    if os.environ.get("OPENBLAS_CORETYPE"):
        text += f" (OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} set in the environment)"
    return text


def median_times(fns, repeats, warmup=True):
    """Median seconds of each function; the functions take turns, so that a burst of load on
    a shared machine hits all of them rather than one."""
    if warmup:
        for fn in fns:
            fn()                              # allocations, thread pools, kernel caches
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def median_time(fn, repeats, warmup=False):
    """Median seconds of ``fn`` over ``repeats`` calls."""
    return median_times([fn], repeats, warmup)[0]
