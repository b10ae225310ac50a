"""Non-maximum suppression (NMS).

Greedy NMS keeps the highest-scored box, removes every remaining box whose IoU with it is
*greater* than ``iou_threshold``, and repeats with the highest-scored box left:

    keep = []
    for i in boxes by decreasing score:
        if no box in keep has IoU(i, k) > iou_threshold:  keep.append(i)

Three implementations, one result (``torchvision.ops.nms``'s):

* :func:`nms_reference`: the loop above in NumPy/CuPy, one vectorized IoU per kept box; for reading.
* the CPU kernel ``minimrcnn._ext.nms`` (ext/nms.pyx, Cython): torchvision's suppressed-flag
  double loop, the same arithmetic in the boxes' precision, with a branch-free (vectorized)
  inner loop.
* the GPU kernels in ext/nms.cu (CuPy RawModule): a 64x64-block IoU bitmask and a one-block
  greedy pass, like torchvision's CUDA nms.

Ties: torchvision orders boxes with ``scores.sort(stable=True, descending=True)``, i.e. equal
scores keep their input order (lower index first). All three paths do the same: NumPy's
``argsort(-scores, kind="stable")`` on the CPU, CuPy's ``argsort`` (a stable thrust sort) on the
GPU. So with tied scores the kept indices equal torchvision's CPU result exactly.
"""
import math
import numbers

import numpy as np

from .. import _ext
from ..autograd.tensor import as_array
from ..backend import get_array_module
from .checks import as_boxes, first_index

__all__ = ["nms", "batched_nms", "nms_reference"]


def _without_overflow(boxes):
    """Boxes on which the IoU arithmetic stays finite, with the same IoUs.

    float32 areas overflow (w h > 2^128) once a coordinate reaches 2^62; every IoU is then NaN
    (inf / inf) and even identical boxes survive each other. Such boxes are computed in float64,
    which holds every float32 value exactly (the answer of NMS in float64). float64 boxes past
    2^510 are scaled down by a power of two: exact, and an IoU is a ratio of areas, so unchanged.
    """
    if boxes.shape[0] == 0:
        return boxes
    xp = get_array_module(boxes)
    largest = float(xp.abs(boxes).max())
    if boxes.dtype == np.float32 and largest >= 2.0 ** 62:
        boxes = boxes.astype(np.float64)
    if largest >= 2.0 ** 510:
        boxes = xp.ldexp(boxes, 510 - math.frexp(largest)[1])
    return boxes


def _descending_order(scores):
    """Indices by decreasing score, ties in input order (torchvision's stable descending sort)."""
    xp = get_array_module(scores)
    if xp is np:
        return np.argsort(-scores, kind="stable").astype(np.int64, copy=False)
    return xp.argsort(-scores).astype(np.int64, copy=False)     # CuPy: thrust stable sort


def _empty_keep(like):
    return get_array_module(like).empty((0,), dtype=np.int64)


# ---- reference -------------------------------------------------------------------------------------

def nms_reference(boxes, scores, iou_threshold):
    """Greedy NMS in plain NumPy (or CuPy): the definition, for reading and testing.

    boxes: (N, 4) xyxy; scores: (N,). Returns int64 indices of the kept boxes, by decreasing score.
    """
    boxes, scores, iou_threshold = _check_nms_inputs(boxes, scores, iou_threshold)
    return _greedy_reference(boxes, scores, iou_threshold)


def _greedy_reference(boxes, scores, iou_threshold):
    if boxes.shape[0] == 0:
        return _empty_keep(boxes)
    xp = get_array_module(boxes)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = _descending_order(scores)         # candidates left, best first
    ### BEGIN SOLUTION nms
    keep = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = xp.maximum(xp.minimum(x2[i], x2[rest]) - xp.maximum(x1[i], x1[rest]), 0)
        h = xp.maximum(xp.minimum(y2[i], y2[rest]) - xp.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        # compare in float64 like the C kernels (a float32 comparison would round the threshold);
        # a NaN IoU (two empty boxes: 0/0) suppresses nothing, as in torchvision
        order = rest[~(iou.astype(np.float64) > iou_threshold)]
    ### END SOLUTION
    return xp.asarray(keep, dtype=np.int64)


# ---- CPU (Cython) ----------------------------------------------------------------------------------

def _nms_cpu(boxes, scores, iou_threshold):
    """ext/nms.pyx on the boxes in score order (the NumPy reference where it is not built)."""
    kernels = _ext.cpu_module("nms")
    if kernels is None:
        return _greedy_reference(boxes, scores, iou_threshold)
    order = _descending_order(scores)
    return kernels.nms_sorted(np.ascontiguousarray(boxes), order, iou_threshold)


# ---- GPU (CuPy RawModule) --------------------------------------------------------------------------

_NMS_BLOCK = 64
_GATHER_THREADS = 256


def _nms_cuda(boxes, scores, iou_threshold):
    import cupy
    n = boxes.shape[0]
    order = _descending_order(scores)                           # (N,) int64
    sorted_boxes = cupy.ascontiguousarray(boxes[order])         # (N, 4) by decreasing score
    col_blocks = (n + _NMS_BLOCK - 1) // _NMS_BLOCK
    mask = cupy.zeros((n, col_blocks), dtype=cupy.uint64)       # bit b of mask[i, c]: box i kills 64c+b
    module = _ext.cuda_module("nms")                            # ext/nms.cu
    name = "nms_mask_float" if sorted_boxes.dtype == np.float32 else "nms_mask_double"
    module.get_function(name)((col_blocks, col_blocks), (_NMS_BLOCK,),
                              (sorted_boxes, np.int32(n), np.float64(iou_threshold), mask))
    shared_bytes = col_blocks * 8
    if shared_bytes <= 48 * 1024:                               # the bitset fits in shared memory
        keep = cupy.zeros((n,), dtype=cupy.bool_)
        module.get_function("nms_gather_keep")((1,), (_GATHER_THREADS,), (mask, np.int32(n), keep),
                                               shared_mem=shared_bytes)
    else:                                                       # > 393216 boxes: greedy pass on the host
        keep = cupy.asarray(_gather_keep_host(cupy.asnumpy(mask), n))
    return order[keep]


def _gather_keep_host(mask, n):
    """The greedy pass over an (N, col_blocks) uint64 suppression bitmask, in NumPy."""
    removed = np.zeros(mask.shape[1], dtype=np.uint64)
    keep = np.zeros(n, dtype=bool)
    for i in range(n):
        block, bit = divmod(i, _NMS_BLOCK)
        if not (int(removed[block]) >> bit) & 1:
            keep[i] = True
            removed |= mask[i]
    return keep


# ---- public ----------------------------------------------------------------------------------------

def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression (``torchvision.ops.nms``).

    boxes: (N, 4) xyxy, finite, x1 <= x2, y1 <= y2 (NumPy or CuPy, float32 or float64; other dtypes
    become float32); scores: (N,); iou_threshold: boxes with IoU > iou_threshold with a
    higher-scored kept box are removed.
    Returns int64 indices of the kept boxes, sorted by decreasing score (ties: lower index first).
    """
    boxes, scores, iou_threshold = _check_nms_inputs(boxes, scores, iou_threshold)
    return _nms(boxes, scores, iou_threshold)


def _nms(boxes, scores, iou_threshold):
    """NMS on checked inputs: the CPU kernel for NumPy arrays, the CUDA kernels for CuPy ones."""
    if boxes.shape[0] == 0:
        return _empty_keep(boxes)
    if get_array_module(boxes) is np:
        return _nms_cpu(boxes, scores, iou_threshold)
    return _nms_cuda(boxes, scores, iou_threshold)


def batched_nms(boxes, scores, idxs, iou_threshold):
    """NMS within each category: boxes with different ``idxs`` never suppress each other.

    boxes: (N, 4); scores: (N,); idxs: (N,) integer category (or image, or level) of each box.
    Returns int64 indices of the kept boxes, by decreasing score (ties: lower index first).

    One NMS per category. (torchvision, for speed, runs a single NMS on boxes shifted by
    ``idxs * (max coordinate + 1)``; in floating point that shift rounds the coordinates -- with
    float32 boxes and category 2^26 distinct boxes collapse into one -- so its answer can differ
    from NMS per category and depend on the number of boxes. Per category it is always exact.)
    """
    boxes, scores, iou_threshold = _check_nms_inputs(boxes, scores, iou_threshold)
    idxs = _check_idxs(idxs, boxes)
    xp = get_array_module(boxes)
    if boxes.shape[0] == 0:
        return _empty_keep(boxes)
    by_category = xp.argsort(idxs, kind="stable") if xp is np else xp.argsort(idxs)
    sorted_idxs = idxs[by_category]
    starts = xp.flatnonzero(sorted_idxs[1:] != sorted_idxs[:-1]) + 1         # category boundaries
    keep = []
    for members in xp.split(by_category, starts.tolist()):                  # one category each
        keep.append(members[_nms(boxes[members], scores[members], iou_threshold)])
    keep = xp.sort(xp.concatenate(keep))                  # by index, so that ties keep input order
    return keep[_descending_order(scores[keep])]


# ---- the checks at the door ---------------------------------------------------------------------

def _check_threshold(iou_threshold):
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real) \
            or math.isnan(iou_threshold):
        raise ValueError(f"iou_threshold must be a real number, got {iou_threshold!r}")
    return float(iou_threshold)


def _check_nms_inputs(boxes, scores, iou_threshold):
    """Validated (boxes (N, 4) float, scores (N,), threshold float)."""
    boxes = as_boxes(boxes, "boxes")
    scores = as_array(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be an array of shape (N,), got shape {tuple(scores.shape)}")
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"boxes and scores must have the same length, got {boxes.shape[0]} boxes "
                         f"and {scores.shape[0]} scores")
    if scores.dtype.kind not in "fiu":
        raise TypeError(f"scores must hold real numbers, got dtype {scores.dtype}")
    if get_array_module(boxes) is not get_array_module(scores):
        raise ValueError("boxes and scores must be on the same device (both NumPy or both CuPy)")
    iou_threshold = _check_threshold(iou_threshold)
    if boxes.dtype not in (np.float32, np.float64):
        boxes = boxes.astype(np.float32)
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)     # -scores must not wrap around (unsigned)
    if boxes.shape[0]:
        xp = get_array_module(boxes)
        bad = ~xp.isfinite(boxes).all(axis=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bool(bad.any()):
            i = first_index(bad)
            raise ValueError(f"boxes[{i}] = {[float(v) for v in boxes[i].tolist()]} is not a valid box: "
                             f"NMS needs finite x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")
        bad = ~xp.isfinite(scores)
        if bool(bad.any()):
            i = first_index(bad)
            raise ValueError(f"scores[{i}] = {float(scores[i])} is not finite")
    return _without_overflow(boxes), scores, iou_threshold


def _check_idxs(idxs, boxes):
    idxs = as_array(idxs)
    if idxs.ndim != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs must be an array of shape (N,) with N = {boxes.shape[0]} "
                         f"(one category per box), got shape {tuple(idxs.shape)}")
    if idxs.dtype.kind not in "iub":
        raise TypeError(f"idxs must hold integer categories, got dtype {idxs.dtype}")
    if get_array_module(idxs) is not get_array_module(boxes):
        raise ValueError("idxs must be on the same device as boxes")
    return idxs
