"""Argument checks shared by the detection ops (boxes, anchors, NMS, RoIAlign / RoIPool / RoIWarp).

Each raises before any kernel runs, naming the op, the argument and the offending value;
the generic ones (ints, pairs of ints) are in :mod:`minimrcnn.checks`.
"""
import math

import numpy as np

from ..autograd.tensor import as_array
from ..backend import as_numpy, get_array_module, get_cupy, is_cupy_array
from ..checks import int_pair, is_int

__all__ = ["first_index", "as_boxes", "check_valid_boxes", "check_roi_args", "check_align_args",
           "check_pool_mode", "POOL_MODES", "MAX_ROI_OUTPUT_SIZE"]

# the largest RoI output side (PH, PW) the kernels accept
MAX_ROI_OUTPUT_SIZE = 1 << 15

# how RoIAlign / RoIWarp aggregate the bilinear samples of a bin
POOL_MODES = ("avg", "max")


# ---- boxes ---------------------------------------------------------------------------------------

def first_index(mask):
    """Index of the first True in a 1-d boolean array (NumPy or CuPy), as a Python int."""
    return int(get_array_module(mask).flatnonzero(mask)[0])


def as_boxes(boxes, name, ndim=2):
    """``boxes`` as an array of shape (N, 4) (``ndim=None``: (..., 4)), or a ValueError."""
    boxes = as_array(boxes)
    ok = boxes.ndim >= 1 and boxes.shape[-1] == 4 if ndim is None else \
        boxes.ndim == ndim and boxes.shape[-1] == 4
    if not ok:
        want = "(..., 4)" if ndim is None else "(N, 4)"
        raise ValueError(f"{name} must be an array of shape {want} holding x1, y1, x2, y2; "
                         f"got shape {tuple(boxes.shape)}")
    if boxes.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    return boxes


def check_valid_boxes(boxes, name):
    """Raise if any box of an (N, 4) array is not finite or has x2 < x1 or y2 < y1."""
    if boxes.shape[0] == 0:
        return
    xp = get_array_module(boxes)
    bad = ~xp.isfinite(boxes).all(axis=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(bad.any()):
        i = first_index(bad)
        values = [float(v) for v in boxes[i].tolist()]
        raise ValueError(f"{name}[{i}] = {values} is not a valid box: boxes must be finite "
                         f"x1, y1, x2, y2 with x1 <= x2 and y1 <= y2 "
                         f"({int(bad.sum())} of {boxes.shape[0]} boxes are invalid)")


# ---- the RoI ops (roi_align, roi_pool, roi_warp) --------------------------------------------------

def check_roi_args(op, input, rois, output_size, spatial_scale):
    """Validate the arguments of an RoI op before any kernel runs.

    Returns ``(x, rois, (PH, PW), spatial_scale)``: ``x`` the input's array (NumPy or CuPy, not
    copied), ``rois`` a (K, 5) array of ``x``'s dtype on ``x``'s device, already checked:
    integral batch indices in [0, N), finite coordinates, x1 <= x2 and y1 <= y2.
    """
    x = as_array(input)
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {x.dtype}")
    N, C, H, W = x.shape
    if H < 1 or W < 1 or H * W >= 2 ** 31:
        raise ValueError(f"{op}: input height and width must be in [1, 2^31) pixels, got shape "
                         f"{tuple(x.shape)}")
    size = int_pair(output_size, "output_size", op, minimum=1, maximum=MAX_ROI_OUTPUT_SIZE)
    real = isinstance(spatial_scale, (int, float, np.integer, np.floating)) \
        and not isinstance(spatial_scale, (bool, np.bool_))
    if not (real and 0 < spatial_scale < math.inf):
        raise ValueError(f"{op}: spatial_scale must be a positive finite number, "
                         f"got {spatial_scale!r}")

    try:
        r = np.asarray(as_numpy(as_array(rois)))
    except ValueError as e:                    # a ragged nested list
        raise ValueError(f"{op}: rois must be a (K, 5) array, got {type(rois).__name__} ({e})")
    if r.ndim != 2 or r.shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (K, 5) = [batch_index, x1, y1, x2, y2], "
                         f"got shape {r.shape}")
    if r.dtype.kind not in "fiu":
        raise TypeError(f"{op}: rois must be a numeric array, got dtype {r.dtype}")
    with np.errstate(over="ignore"):           # too large for float32: inf, reported below
        r = r.astype(x.dtype)                  # a copy, in the precision the kernels compute in
    batch = r[:, 0]
    bad = ~((batch >= 0) & (batch < N) & (batch == np.floor(batch)))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{op}: rois[{k}, 0] = {batch[k]:g} is not a batch index in [0, {N})")
    bad = ~np.isfinite(r[:, 1:])
    if bad.any():
        k, j = np.argwhere(bad)[0]
        raise ValueError(f"{op}: rois[{k}, {j + 1}] = {r[k, j + 1]:g} is not finite")
    for lo, hi, name in ((1, 3, "x"), (2, 4, "y")):
        bad = r[:, hi] < r[:, lo]
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(f"{op}: rois[{k}] has {name}2 = {r[k, hi]:g} < {name}1 = "
                             f"{r[k, lo]:g}; boxes are [batch_index, x1, y1, x2, y2] with "
                             f"x1 <= x2 and y1 <= y2")
    if is_cupy_array(x):
        r = get_cupy().asarray(r)
    return x, r, size, float(spatial_scale)


def check_align_args(op, sampling_ratio, aligned):
    """RoIAlign's sampling_ratio (an int, <= 0 for adaptive, at most 4096) and aligned (a bool)."""
    if not is_int(sampling_ratio):
        raise TypeError(f"{op}: sampling_ratio must be an int (<= 0 for adaptive), "
                        f"got {sampling_ratio!r}")
    if sampling_ratio > 1 << 12:
        raise ValueError(f"{op}: sampling_ratio must be at most 4096, got {sampling_ratio}")
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"{op}: aligned must be a bool, got {aligned!r}")
    return max(int(sampling_ratio), 0), bool(aligned)


def check_pool_mode(op, mode):
    """RoIAlign's / RoIWarp's aggregation of a bin's samples: "avg" or "max" (a str)."""
    if not isinstance(mode, str) or mode not in POOL_MODES:
        raise ValueError(f"{op}: mode must be one of {POOL_MODES}, got {mode!r}")
    return mode
