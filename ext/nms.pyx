# distutils: extra_compile_args = -ffp-contract=off
"""Greedy non-maximum suppression on the CPU (minimrcnn._ext.nms).

The caller (minimrcnn/ops/nms.py) validates the inputs and sorts the boxes by decreasing score;
this kernel runs the classic suppressed-flag double loop of torchvision's CPU nms
(torchvision/csrc/ops/cpu/nms_kernel.cpp), with the same arithmetic in the boxes' own precision:

    inter = max(0, min(x2i, x2j) - max(x1i, x1j)) * max(0, min(y2i, y2j) - max(y1i, y1j))
    iou   = inter / (area_i + area_j - inter)        suppress j when (double) iou > threshold

The differences are in speed only: the boxes are gathered in score order first, so that the inner
loop walks contiguous arrays, and the inner loop has no branch (it recomputes the IoU of boxes
already suppressed, which changes nothing), so that the compiler vectorizes it.
-ffp-contract=off keeps the compiler from fusing a*b+c into an FMA, which would round differently
from torchvision on machines that have one.
"""
import numpy as np

from libc.stdint cimport int64_t, uint8_t

ctypedef fused floating:
    float
    double


def nms_sorted(const floating[:, ::1] boxes, const int64_t[::1] order, double iou_threshold):
    """Indices (int64) kept by greedy NMS.

    boxes: (N, 4) xyxy, C-contiguous float32 or float64; order: (N,) a permutation of 0..N-1,
    the boxes by decreasing score. Returns the kept indices into ``boxes`` in the order of
    ``order``.
    """
    cdef Py_ssize_t n = boxes.shape[0]
    if boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got ({n}, {boxes.shape[1]})")
    if order.shape[0] != n:
        raise ValueError(f"order must have {n} entries, got {order.shape[0]}")
    dtype = np.float32 if floating is float else np.float64
    x1_a = np.empty(n, dtype=dtype)
    y1_a = np.empty(n, dtype=dtype)
    x2_a = np.empty(n, dtype=dtype)
    y2_a = np.empty(n, dtype=dtype)
    area_a = np.empty(n, dtype=dtype)
    suppressed_a = np.zeros(n, dtype=np.uint8)
    keep_a = np.empty(n, dtype=np.int64)
    cdef floating[::1] x1 = x1_a, y1 = y1_a, x2 = x2_a, y2 = y2_a, area = area_a
    cdef uint8_t[::1] suppressed = suppressed_a
    cdef int64_t[::1] keep = keep_a
    cdef Py_ssize_t i, j, k, num_keep = 0
    cdef int64_t src
    cdef floating ix1, iy1, ix2, iy2, iarea, xx1, yy1, xx2, yy2, w, h, inter, iou
    cdef bint out_of_range = False
    # torchvision compares the float IoU with the double threshold. For a float x,
    # (double) x > t  <=>  x > (the largest float <= t), so one float comparison gives the same
    # answer and keeps the inner loop in single precision (vectorizable).
    cdef floating threshold
    if floating is float:
        with np.errstate(over="ignore"):
            t32 = np.float32(iou_threshold)
        if float(t32) > iou_threshold:
            t32 = np.nextafter(t32, np.float32(-np.inf))
        threshold = t32
    else:
        threshold = iou_threshold

    with nogil:
        # gather in score order (checking the permutation's bounds before indexing)
        for k in range(n):
            src = order[k]
            if src < 0 or src >= n:
                out_of_range = True
                break
            x1[k] = boxes[src, 0]
            y1[k] = boxes[src, 1]
            x2[k] = boxes[src, 2]
            y2[k] = boxes[src, 3]
            area[k] = (x2[k] - x1[k]) * (y2[k] - y1[k])
        if not out_of_range:
            for i in range(n):
                if suppressed[i]:
                    continue
                keep[num_keep] = order[i]
                num_keep += 1
                ix1 = x1[i]
                iy1 = y1[i]
                ix2 = x2[i]
                iy2 = y2[i]
                iarea = area[i]
                # branch-free so that the compiler can vectorize it: recomputing the IoU of an
                # already suppressed box changes nothing
                for j in range(i + 1, n):
                    xx1 = ix1 if ix1 > x1[j] else x1[j]      # std::max
                    yy1 = iy1 if iy1 > y1[j] else y1[j]
                    xx2 = ix2 if ix2 < x2[j] else x2[j]      # std::min
                    yy2 = iy2 if iy2 < y2[j] else y2[j]
                    w = xx2 - xx1
                    h = yy2 - yy1
                    w = w if w > 0 else 0                    # std::max(0, w)
                    h = h if h > 0 else 0
                    inter = w * h
                    iou = inter / (iarea + area[j] - inter)
                    suppressed[j] |= iou > threshold
    if out_of_range:
        raise IndexError(f"order[{k}] = {src} is out of range for {n} boxes")
    return keep_a[:num_keep].copy()
