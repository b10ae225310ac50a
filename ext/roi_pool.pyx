# distutils: extra_compile_args = -ffp-contract=off
"""RoIPool on the CPU (minimrcnn._ext.roi_pool): forward (max and argmax) and backward.

The caller (minimrcnn/ops/roi_pool.py) validates the arguments; this module repeats the checks
that guard memory (batch index, coordinate range) before any loop indexes an array.

Semantics are those of torchvision's CPU kernel (torchvision/csrc/ops/cpu/roi_pool_kernel.cpp),
in the input's own precision. For RoI k:

    x_start = round(x1 * scale)   x_end = round(x2 * scale)   (round half away from zero)
    roi_w = max(x_end - x_start + 1, 1)                        bin_w = roi_w / PW
    bin pw covers columns [floor(pw * bin_w) + x_start, ceil((pw + 1) * bin_w) + x_start),
    clipped to [0, W]                                          (rows likewise)
    out[k, c, ph, pw] = max of input[b, c] over the bin; 0 for an empty bin
    argmax[k, c, ph, pw] = y * W + x of that max (the first in row-major order); -1 if empty

Backward adds grad_output[k, c, ph, pw] to grad_input[b, c] at argmax. (One difference from
torchvision: the running max starts at the bin's first element, not at -FLT_MAX, so that a bin
whose values are all below -3.4e38 still reports its true max.)

Parallel as RoIAlign: the forward pass over RoIs, the backward pass over chunks of channels,
so that no two threads write the same gradient element.
"""
import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.math cimport ceil, floor, round

ctypedef fused floating:
    float
    double

include "_roi_common.pxi"

# |round(coordinate * spatial_scale)| must stay below this, so that integer bin arithmetic
# cannot overflow
cdef double _MAX_COORDINATE = 1 << 28
MAX_COORDINATE = int(_MAX_COORDINATE)


cdef int _quantize(const floating[:, ::1] rois, Py_ssize_t batch_size, floating scale,
                   int[::1] batch, int[:, ::1] box) except -1:
    """Per RoI: batch index and the quantized box (x_start, y_start, x_end, y_end)."""
    cdef Py_ssize_t k
    cdef int j
    cdef floating v
    for k in range(rois.shape[0]):
        if not (rois[k, 0] >= 0 and rois[k, 0] < batch_size):
            raise ValueError(f"roi_pool: rois[{k}, 0] = {rois[k, 0]} is not a batch index "
                             f"in [0, {batch_size})")
        batch[k] = <int>rois[k, 0]
        for j in range(4):
            v = rois[k, j + 1] * scale
            if not (-_MAX_COORDINATE < v < _MAX_COORDINATE):
                raise ValueError(f"roi_pool: rois[{k}, {j + 1}] = {rois[k, j + 1]} times "
                                 f"spatial_scale={scale} is out of range")
            box[k, j] = <int>round(v)
    return 0


cdef void _bins(int start, int size, int pooled, floating bin_size,
                int* lo, int* hi) noexcept nogil:
    """Bin edges along one axis: bin i covers [lo[i], hi[i]) (empty when hi <= lo)."""
    cdef int i
    for i in range(pooled):
        lo[i] = min(max(<int>floor(<floating>i * bin_size) + start, 0), size)
        hi[i] = min(max(<int>ceil(<floating>(i + 1) * bin_size) + start, 0), size)


cdef void _forward_roi(const floating* image, floating* out, int* argmax, Py_ssize_t C,
                       int H, int W, int PH, int PW, const int* hlo, const int* hhi,
                       const int* wlo, const int* whi) noexcept nogil:
    cdef Py_ssize_t c, HW = <Py_ssize_t>H * W, P = PH * PW
    cdef int ph, pw, h, w, best
    cdef const floating* plane
    cdef floating value
    for c in range(C):
        plane = image + c * HW
        for ph in range(PH):
            for pw in range(PW):
                if hhi[ph] <= hlo[ph] or whi[pw] <= wlo[pw]:
                    out[c * P + ph * PW + pw] = 0
                    argmax[c * P + ph * PW + pw] = -1
                    continue
                best = hlo[ph] * W + wlo[pw]
                value = plane[best]
                for h in range(hlo[ph], hhi[ph]):
                    for w in range(wlo[pw], whi[pw]):
                        if plane[h * W + w] > value:
                            value = plane[h * W + w]
                            best = h * W + w
                out[c * P + ph * PW + pw] = value
                argmax[c * P + ph * PW + pw] = best


def roi_pool_forward(const floating[:, :, :, ::1] input, const floating[:, ::1] rois,
                     int pooled_height, int pooled_width, double spatial_scale):
    """RoIPool forward: -> (output (K, C, PH, PW), argmax (K, C, PH, PW) int32)."""
    cdef Py_ssize_t N = input.shape[0], C = input.shape[1], K = rois.shape[0], k
    cdef int H = input.shape[2], W = input.shape[3], PH = pooled_height, PW = pooled_width
    dtype = np.float32 if floating is float else np.float64
    _check_sizes("roi_pool", (N, C, H, W), (K, rois.shape[1]), PH, PW)
    out = np.zeros((K, C, PH, PW), dtype=dtype)
    argmax = np.full((K, C, PH, PW), -1, dtype=np.intc)
    if K == 0 or C == 0:
        return out, argmax
    cdef floating[:, :, :, ::1] out_v = out
    cdef int[:, :, :, ::1] arg_v = argmax
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    cdef int[:, ::1] box = np.empty((K, 4), dtype=np.intc)
    _quantize(rois, N, <floating>spatial_scale, batch, box)
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>K))
    cdef int[:, ::1] edges = np.empty((nt, 2 * (PH + PW)), dtype=np.intc)
    cdef int tid
    cdef int* e
    cdef floating bin_h, bin_w
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        e = &edges[tid, 0]
        for k in prange(K, schedule="dynamic"):
            # the quantized RoI covers max(end - start + 1, 1) pixels
            bin_h = <floating>max(box[k, 3] - box[k, 1] + 1, 1) / <floating>PH
            bin_w = <floating>max(box[k, 2] - box[k, 0] + 1, 1) / <floating>PW
            _bins(box[k, 1], H, PH, bin_h, e, e + PH)
            _bins(box[k, 0], W, PW, bin_w, e + 2 * PH, e + 2 * PH + PW)
            _forward_roi(&input[batch[k], 0, 0, 0], &out_v[k, 0, 0, 0], &arg_v[k, 0, 0, 0],
                         C, H, W, PH, PW, e, e + PH, e + 2 * PH, e + 2 * PH + PW)
    return out, argmax


def roi_pool_backward(const floating[:, :, :, ::1] grad_output, const int[:, :, :, ::1] argmax,
                      const floating[:, ::1] rois, Py_ssize_t batch_size, int height, int width):
    """RoIPool backward: grad_input[b, c].flat[argmax] += grad_output (N, C, H, W)."""
    cdef Py_ssize_t K = grad_output.shape[0], C = grad_output.shape[1], t, k, c, c0, c1, p
    cdef int PH = grad_output.shape[2], PW = grad_output.shape[3], H = height, W = width
    cdef Py_ssize_t HW = <Py_ssize_t>H * W, P = PH * PW
    cdef int a
    dtype = np.float32 if floating is float else np.float64
    arg_shape = (argmax.shape[0], argmax.shape[1], argmax.shape[2], argmax.shape[3])
    if arg_shape != (K, C, PH, PW) or rois.shape[0] != K:
        raise ValueError(f"roi_pool: grad_output {(K, C, PH, PW)}, argmax {arg_shape} and "
                         f"rois ({rois.shape[0]}, 5) disagree")
    _check_sizes("roi_pool", (batch_size, C, H, W), (K, rois.shape[1]), PH, PW)
    grad_input = np.zeros((batch_size, C, H, W), dtype=dtype)
    if K == 0 or C == 0:
        return grad_input
    cdef floating[:, :, :, ::1] gin = grad_input
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    for k in range(K):
        if not (rois[k, 0] >= 0 and rois[k, 0] < batch_size):
            raise ValueError(f"roi_pool: rois[{k}, 0] = {rois[k, 0]} is not a batch index "
                             f"in [0, {batch_size})")
        batch[k] = <int>rois[k, 0]
    arg_np = np.asarray(argmax)
    if arg_np.size and (arg_np.min() < -1 or arg_np.max() >= HW):
        raise ValueError(f"roi_pool: argmax holds indices outside [-1, {HW})")
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>C))
    cdef Py_ssize_t nchunks = nt
    cdef floating* plane
    cdef const floating* grad
    cdef const int* arg
    with nogil, parallel(num_threads=nt):
        for t in prange(nchunks, schedule="static", chunksize=1):
            c0 = t * C // nchunks
            c1 = (t + 1) * C // nchunks
            for k in range(K):
                for c in range(c0, c1):
                    plane = &gin[batch[k], c, 0, 0]
                    grad = &grad_output[k, c, 0, 0]
                    arg = &argmax[k, c, 0, 0]
                    for p in range(P):
                        a = arg[p]
                        if a >= 0:
                            plane[a] += grad[p]
    return grad_input
