# distutils: extra_compile_args = -ffp-contract=off
"""RoIAlign on the CPU (minimrcnn._ext.roi_align): forward and backward, float32 and float64,
averaging a bin's samples (roi_align_forward / roi_align_backward) or taking their max
(roi_align_forward_max / roi_align_backward_max).

The caller (minimrcnn/ops/roi_align.py) validates the arguments; this module repeats the checks
that guard memory (batch index, sampling-grid size) before any loop indexes an array.

Semantics are those of torchvision's CPU kernel (torchvision/csrc/ops/cpu/roi_align_kernel.cpp),
in the input's own precision and with the same order of operations. For RoI k, with
offset = 0.5 if aligned else 0:

    y0 = y1 * scale - offset          roi_h = y2 * scale - offset - y0   (>= 1 if not aligned)
    bin_h = roi_h / PH                gh = sampling_ratio if > 0 else ceil(roi_h / PH)
    sample (ph, iy):  y = y0 + ph * bin_h + (iy + 0.5) * bin_h / gh          (x likewise)
    out[k, c, ph, pw] = sum over the gh * gw samples of bilinear(input[b, c], y, x)
                        / max(gh * gw, 1)

bilinear() is zero for a sample with y < -1, y > H, x < -1 or x > W; otherwise y <= 0 -> 0 and
a sample at or beyond the last row/column reads that row/column (the same for x).

Speed comes from torchvision's "pre_calc" trick: the four pixel offsets and four weights of
every sample of an RoI depend on the RoI only, so they are computed once per RoI and reused for
all C channels. The forward pass runs the RoIs in parallel (OpenMP), each thread with its own
pre_calc buffer. The backward pass scatters the same weights into the input gradient; two RoIs
may touch the same pixel, so instead of splitting the RoIs it splits the channels: thread t owns
channels [c0, c1) of every image and walks all RoIs, so no two threads ever write the same
element (no atomics, no per-thread copies of the gradient). -ffp-contract=off keeps the compiler
from fusing a*b+c into an FMA, which would round differently from torchvision.

Max mode (mmcv's RoIAlign pool_mode="max", Mask R-CNN Table 2c's "RoIAlign max"): with the same
samples and the same pre_calc tables,

    out[k, c, ph, pw] = max over the gh * gw samples of bilinear(input[b, c], y, x)
    argmax[k, c, ph, pw] = iy * gw + ix of the first sample that attains it (-1: no samples)

an empty sample counting as 0 and a bin without samples giving 0. A NaN sample beats every
number (the first NaN wins), as NumPy's argmax, so a NaN in the features is never hidden. Each
sample's value is the same expression as one term of the average, so the max is bit for bit the
largest of the terms the average sums. Backward sends grad_output[k, c, ph, pw] to the four
pixels of the arg-max sample with its bilinear weights, split over channels like the average.
"""
import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.math cimport ceil, isfinite

ctypedef fused floating:
    float
    double

include "_roi_common.pxi"

# A single RoI may not ask for more bilinear samples than this (adaptive sampling on an absurdly
# large box would otherwise allocate gigabytes for its pre_calc table).
cdef double _MAX_SAMPLES = 1 << 24
MAX_SAMPLES_PER_ROI = int(_MAX_SAMPLES)


def max_threads():
    """Threads the parallel loops use (OMP_NUM_THREADS; 1 where built without OpenMP)."""
    return minimrcnn_max_threads()


cdef Py_ssize_t _geometry(const floating[:, ::1] rois, Py_ssize_t batch_size, floating scale,
                          int PH, int PW, int sampling_ratio, bint aligned,
                          int[::1] batch, floating[:, ::1] geom, int[:, ::1] grid) except -1:
    """Per RoI: batch index, (y0, x0, bin_h, bin_w) and the sampling grid (gh, gw).

    Returns the largest number of samples of one RoI (PH * PW * gh * gw), the size of a
    pre_calc table. Raises ValueError for a bad batch index, a non-finite geometry or a grid
    too large to tabulate.
    """
    cdef Py_ssize_t k, most = 0
    cdef floating offset = <floating>0.5 if aligned else <floating>0.0
    cdef floating y0, x0, y1, x1, roi_h, roi_w, bin_h, bin_w
    cdef double gh_d, gw_d, n
    for k in range(rois.shape[0]):
        if not (rois[k, 0] >= 0 and rois[k, 0] < batch_size):
            raise ValueError(f"roi_align: rois[{k}, 0] = {rois[k, 0]} is not a batch index "
                             f"in [0, {batch_size})")
        batch[k] = <int>rois[k, 0]
        x0 = rois[k, 1] * scale - offset
        y0 = rois[k, 2] * scale - offset
        x1 = rois[k, 3] * scale - offset
        y1 = rois[k, 4] * scale - offset
        roi_w = x1 - x0
        roi_h = y1 - y0
        if not aligned:             # malformed RoIs are forced to be at least 1x1
            if roi_w < 1:
                roi_w = 1
            if roi_h < 1:
                roi_h = 1
        bin_h = roi_h / <floating>PH
        bin_w = roi_w / <floating>PW
        if not (isfinite(x0) and isfinite(y0) and isfinite(roi_w) and isfinite(roi_h)):
            raise ValueError(f"roi_align: rois[{k}] = {np.asarray(rois[k]).tolist()} scaled by "
                             f"spatial_scale={scale} is not finite")
        if sampling_ratio > 0:
            gh_d = sampling_ratio
            gw_d = sampling_ratio
        else:
            gh_d = ceil(roi_h / <floating>PH)
            gw_d = ceil(roi_w / <floating>PW)
            if gh_d < 0:
                gh_d = 0
            if gw_d < 0:
                gw_d = 0
        n = gh_d * gw_d * PH * PW
        if n > _MAX_SAMPLES:
            raise ValueError(
                f"roi_align: rois[{k}] = {np.asarray(rois[k]).tolist()} needs a {gh_d:.0f} x "
                f"{gw_d:.0f} sampling grid per bin ({n:.0f} samples); pass a fixed "
                f"sampling_ratio or check the box")
        geom[k, 0] = y0
        geom[k, 1] = x0
        geom[k, 2] = bin_h
        geom[k, 3] = bin_w
        grid[k, 0] = <int>gh_d
        grid[k, 1] = <int>gw_d
        if <Py_ssize_t>n > most:
            most = <Py_ssize_t>n
    return most


cdef void _precalc(int height, int width, int PH, int PW, floating y0, floating x0,
                   floating bin_h, floating bin_w, int gh, int gw,
                   int* pos, floating* wt) noexcept nogil:
    """Fill pos[4i:4i+4] (pixel offsets in an H*W plane) and wt[4i:4i+4] (bilinear weights)
    for sample i, in the order (ph, pw, iy, ix). An empty sample gets offsets 0, weights 0."""
    cdef Py_ssize_t i = 0
    cdef int ph, pw, iy, ix, y_low, x_low, y_high, x_high
    cdef floating yy, xx, y, x, ly, lx, hy, hx
    for ph in range(PH):
        for pw in range(PW):
            for iy in range(gh):
                yy = y0 + ph * bin_h + (<floating>iy + <floating>0.5) * bin_h / <floating>gh
                for ix in range(gw):
                    xx = x0 + pw * bin_w + (<floating>ix + <floating>0.5) * bin_w / <floating>gw
                    y = yy
                    x = xx
                    if not (y >= -1.0 and y <= height and x >= -1.0 and x <= width):
                        pos[4 * i] = 0
                        pos[4 * i + 1] = 0
                        pos[4 * i + 2] = 0
                        pos[4 * i + 3] = 0
                        wt[4 * i] = 0
                        wt[4 * i + 1] = 0
                        wt[4 * i + 2] = 0
                        wt[4 * i + 3] = 0
                        i = i + 1
                        continue
                    if y <= 0:
                        y = 0
                    if x <= 0:
                        x = 0
                    y_low = <int>y
                    x_low = <int>x
                    if y_low >= height - 1:
                        y_low = height - 1
                        y_high = y_low
                        y = <floating>y_low
                    else:
                        y_high = y_low + 1
                    if x_low >= width - 1:
                        x_low = width - 1
                        x_high = x_low
                        x = <floating>x_low
                    else:
                        x_high = x_low + 1
                    ly = y - y_low
                    lx = x - x_low
                    hy = <floating>(1.0 - ly)     # as torchvision: `T hy = 1. - ly`
                    hx = <floating>(1.0 - lx)
                    pos[4 * i] = y_low * width + x_low
                    pos[4 * i + 1] = y_low * width + x_high
                    pos[4 * i + 2] = y_high * width + x_low
                    pos[4 * i + 3] = y_high * width + x_high
                    wt[4 * i] = hy * hx
                    wt[4 * i + 1] = hy * lx
                    wt[4 * i + 2] = ly * hx
                    wt[4 * i + 3] = ly * lx
                    i = i + 1


cdef void _forward_roi(const floating* image, floating* out, Py_ssize_t C, Py_ssize_t HW,
                       Py_ssize_t P, Py_ssize_t S, floating count,
                       const int* pos, const floating* wt) noexcept nogil:
    """out[c, p] = sum_s <wt_s, image[c][pos_s]> / count for the P bins of one RoI, S samples
    per bin. Four channels share each load of a sample's offsets and weights (the sum of each
    channel is still taken in the same order, so the result does not depend on the blocking)."""
    cdef Py_ssize_t c = 0, p, s, i
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    cdef const floating* x3
    cdef floating a0, a1, a2, a3, w0, w1, w2, w3
    cdef int o0, o1, o2, o3
    while c + 4 <= C:
        x0 = image + c * HW
        x1 = x0 + HW
        x2 = x1 + HW
        x3 = x2 + HW
        i = 0
        for p in range(P):
            a0 = 0
            a1 = 0
            a2 = 0
            a3 = 0
            for s in range(S):
                w0 = wt[i]
                w1 = wt[i + 1]
                w2 = wt[i + 2]
                w3 = wt[i + 3]
                o0 = pos[i]
                o1 = pos[i + 1]
                o2 = pos[i + 2]
                o3 = pos[i + 3]
                a0 = a0 + (w0 * x0[o0] + w1 * x0[o1] + w2 * x0[o2] + w3 * x0[o3])
                a1 = a1 + (w0 * x1[o0] + w1 * x1[o1] + w2 * x1[o2] + w3 * x1[o3])
                a2 = a2 + (w0 * x2[o0] + w1 * x2[o1] + w2 * x2[o2] + w3 * x2[o3])
                a3 = a3 + (w0 * x3[o0] + w1 * x3[o1] + w2 * x3[o2] + w3 * x3[o3])
                i = i + 4
            out[c * P + p] = a0 / count
            out[(c + 1) * P + p] = a1 / count
            out[(c + 2) * P + p] = a2 / count
            out[(c + 3) * P + p] = a3 / count
        c = c + 4
    while c < C:
        x0 = image + c * HW
        i = 0
        for p in range(P):
            a0 = 0
            for s in range(S):
                a0 = a0 + (wt[i] * x0[pos[i]] + wt[i + 1] * x0[pos[i + 1]]
                           + wt[i + 2] * x0[pos[i + 2]] + wt[i + 3] * x0[pos[i + 3]])
                i = i + 4
            out[c * P + p] = a0 / count
        c = c + 1


cdef void _backward_roi(floating* grad_image, const floating* grad_out, Py_ssize_t c0,
                        Py_ssize_t c1, Py_ssize_t HW, Py_ssize_t P, Py_ssize_t S,
                        floating count, const int* pos, const floating* wt) noexcept nogil:
    """grad_image[c][pos_s] += wt_s * grad_out[c, p] / count for channels c0 <= c < c1, four
    channels per load of a sample's offsets and weights."""
    cdef Py_ssize_t c = c0, p, s, i
    cdef floating* x0
    cdef floating* x1
    cdef floating* x2
    cdef floating* x3
    cdef floating g0, g1, g2, g3, w
    cdef int j, o
    while c + 4 <= c1:
        x0 = grad_image + c * HW
        x1 = x0 + HW
        x2 = x1 + HW
        x3 = x2 + HW
        i = 0
        for p in range(P):
            g0 = grad_out[c * P + p] / count
            g1 = grad_out[(c + 1) * P + p] / count
            g2 = grad_out[(c + 2) * P + p] / count
            g3 = grad_out[(c + 3) * P + p] / count
            for s in range(4 * S):
                w = wt[i + s]
                o = pos[i + s]
                x0[o] += w * g0
                x1[o] += w * g1
                x2[o] += w * g2
                x3[o] += w * g3
            i = i + 4 * S
        c = c + 4
    while c < c1:
        x0 = grad_image + c * HW
        i = 0
        for p in range(P):
            g0 = grad_out[c * P + p] / count
            for s in range(4 * S):
                x0[pos[i + s]] += wt[i + s] * g0
            i = i + 4 * S
        c = c + 1


def roi_align_forward(const floating[:, :, :, ::1] input, const floating[:, ::1] rois,
                      int pooled_height, int pooled_width, double spatial_scale,
                      int sampling_ratio, bint aligned):
    """RoIAlign forward: input (N, C, H, W), rois (K, 5) of the same dtype -> (K, C, PH, PW)."""
    cdef Py_ssize_t N = input.shape[0], C = input.shape[1]
    cdef int H = input.shape[2], W = input.shape[3], PH = pooled_height, PW = pooled_width
    cdef Py_ssize_t K = rois.shape[0], k, HW = <Py_ssize_t>H * W, P = PH * PW
    dtype = np.float32 if floating is float else np.float64
    _check_sizes("roi_align", (N, C, H, W), (K, rois.shape[1]), PH, PW)
    out = np.zeros((K, C, PH, PW), dtype=dtype)
    if K == 0 or C == 0:
        return out
    cdef floating[:, :, :, ::1] out_v = out
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    cdef floating[:, ::1] geom = np.empty((K, 4), dtype=dtype)
    cdef int[:, ::1] grid = np.empty((K, 2), dtype=np.intc)
    cdef Py_ssize_t most = _geometry(rois, N, <floating>spatial_scale, PH, PW, sampling_ratio,
                                     aligned, batch, geom, grid)
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>K))
    cdef int[:, ::1] pos_buf = np.empty((nt, 4 * max(most, 1)), dtype=np.intc)
    cdef floating[:, ::1] wt_buf = np.empty((nt, 4 * max(most, 1)), dtype=dtype)
    cdef int* pos
    cdef floating* wt
    cdef int tid, gh, gw
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        pos = &pos_buf[tid, 0]
        wt = &wt_buf[tid, 0]
        for k in prange(K, schedule="dynamic"):
            gh = grid[k, 0]
            gw = grid[k, 1]
            _precalc(H, W, PH, PW, geom[k, 0], geom[k, 1], geom[k, 2], geom[k, 3], gh, gw,
                     pos, wt)
            _forward_roi(&input[batch[k], 0, 0, 0], &out_v[k, 0, 0, 0], C, HW, P,
                         <Py_ssize_t>gh * gw, <floating>max(gh * gw, 1), pos, wt)
    return out


def roi_align_backward(const floating[:, :, :, ::1] grad_output, const floating[:, ::1] rois,
                       Py_ssize_t batch_size, int height, int width, double spatial_scale,
                       int sampling_ratio, bint aligned):
    """RoIAlign backward: grad_output (K, C, PH, PW) -> grad_input (N, C, H, W)."""
    cdef Py_ssize_t K = grad_output.shape[0], C = grad_output.shape[1], t, k, c0, c1
    cdef int PH = grad_output.shape[2], PW = grad_output.shape[3], H = height, W = width
    cdef Py_ssize_t HW = <Py_ssize_t>H * W, P = PH * PW
    dtype = np.float32 if floating is float else np.float64
    if rois.shape[0] != K:
        raise ValueError(f"roi_align: grad_output has {K} RoIs but rois has {rois.shape[0]}")
    _check_sizes("roi_align", (batch_size, C, H, W), (K, rois.shape[1]), PH, PW)
    grad_input = np.zeros((batch_size, C, H, W), dtype=dtype)
    if K == 0 or C == 0:
        return grad_input
    cdef floating[:, :, :, ::1] gin = grad_input
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    cdef floating[:, ::1] geom = np.empty((K, 4), dtype=dtype)
    cdef int[:, ::1] grid = np.empty((K, 2), dtype=np.intc)
    cdef Py_ssize_t most = _geometry(rois, batch_size, <floating>spatial_scale, PH, PW,
                                     sampling_ratio, aligned, batch, geom, grid)
    # one chunk of channels per thread: each thread recomputes the pre_calc tables of all RoIs
    # (cheap next to the C/nt channels it scatters) and writes only its own channels
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>C))
    cdef Py_ssize_t nchunks = nt
    cdef int[:, ::1] pos_buf = np.empty((nt, 4 * max(most, 1)), dtype=np.intc)
    cdef floating[:, ::1] wt_buf = np.empty((nt, 4 * max(most, 1)), dtype=dtype)
    cdef int* pos
    cdef floating* wt
    cdef int tid, gh, gw
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        pos = &pos_buf[tid, 0]
        wt = &wt_buf[tid, 0]
        for t in prange(nchunks, schedule="static", chunksize=1):
            c0 = t * C // nchunks
            c1 = (t + 1) * C // nchunks
            for k in range(K):
                gh = grid[k, 0]
                gw = grid[k, 1]
                if gh * gw == 0:
                    continue
                _precalc(H, W, PH, PW, geom[k, 0], geom[k, 1], geom[k, 2], geom[k, 3], gh, gw,
                         pos, wt)
                _backward_roi(&gin[batch[k], 0, 0, 0], &grad_output[k, 0, 0, 0], c0, c1, HW, P,
                              <Py_ssize_t>gh * gw, <floating>(gh * gw), pos, wt)
    return grad_input


# ---- max over a bin's samples ------------------------------------------------------------------

cdef inline floating _sample_value(const floating* plane, const int* pos,
                                   const floating* wt) noexcept nogil:
    """One sample's bilinear value, <wt, plane[pos]>: the expression each term of the average
    is (0 for an empty sample, whose weights are 0)."""
    return wt[0] * plane[pos[0]] + wt[1] * plane[pos[1]] + wt[2] * plane[pos[2]] + wt[3] * plane[pos[3]]


cdef inline void _first_nan(const floating* plane, const int* pos, const floating* wt,
                            Py_ssize_t S, floating* best, int* arg) noexcept nogil:
    """The bin's first NaN sample as its max (called only for a bin that has one)."""
    cdef Py_ssize_t s
    cdef floating v
    for s in range(S):
        v = _sample_value(plane, pos + 4 * s, wt + 4 * s)
        if v != v:
            best[0] = v
            arg[0] = <int>s
            return


cdef void _forward_max_roi(const floating* image, floating* out, int* argmax, Py_ssize_t C,
                           Py_ssize_t HW, Py_ssize_t P, Py_ssize_t S, const int* pos,
                           const floating* wt) noexcept nogil:
    """out[c, p] = max_s <wt_s, image[c][pos_s]> and argmax[c, p] = the first s attaining it,
    for the P bins of one RoI with S samples per bin (S = 0: out 0, argmax -1); a bin with a
    NaN sample gets its first NaN. Four channels per pass over a bin's samples, as in
    _forward_roi. The running max is branch-free (on random features the comparisons are
    coin flips a branch predictor loses): m = v if v > m else m is one max instruction, the
    arg-max an integer blend, and NaNs are only flagged, then looked up in the rare bin that
    has one."""
    cdef Py_ssize_t c = 0, p, s, i, i0
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    cdef const floating* x3
    cdef floating v0, v1, v2, v3, m0, m1, m2, m3, w0, w1, w2, w3
    cdef int a0, a1, a2, a3, o0, o1, o2, o3, g0, g1, g2, g3, nan
    if S == 0:
        for i in range(C * P):
            out[i] = 0
            argmax[i] = -1
        return
    while c + 4 <= C:
        x0 = image + c * HW
        x1 = x0 + HW
        x2 = x1 + HW
        x3 = x2 + HW
        for p in range(P):
            i0 = 4 * p * S                       # the bin's first sample
            i = i0
            m0 = _sample_value(x0, pos + i, wt + i)
            m1 = _sample_value(x1, pos + i, wt + i)
            m2 = _sample_value(x2, pos + i, wt + i)
            m3 = _sample_value(x3, pos + i, wt + i)
            a0 = a1 = a2 = a3 = 0
            nan = (m0 != m0) | (m1 != m1) | (m2 != m2) | (m3 != m3)
            for s in range(1, S):
                i = i + 4
                w0 = wt[i]
                w1 = wt[i + 1]
                w2 = wt[i + 2]
                w3 = wt[i + 3]
                o0 = pos[i]
                o1 = pos[i + 1]
                o2 = pos[i + 2]
                o3 = pos[i + 3]
                v0 = w0 * x0[o0] + w1 * x0[o1] + w2 * x0[o2] + w3 * x0[o3]
                v1 = w0 * x1[o0] + w1 * x1[o1] + w2 * x1[o2] + w3 * x1[o3]
                v2 = w0 * x2[o0] + w1 * x2[o1] + w2 * x2[o2] + w3 * x2[o3]
                v3 = w0 * x3[o0] + w1 * x3[o1] + w2 * x3[o2] + w3 * x3[o3]
                g0 = v0 > m0
                g1 = v1 > m1
                g2 = v2 > m2
                g3 = v3 > m3
                a0 = a0 + g0 * (<int>s - a0)
                a1 = a1 + g1 * (<int>s - a1)
                a2 = a2 + g2 * (<int>s - a2)
                a3 = a3 + g3 * (<int>s - a3)
                m0 = v0 if v0 > m0 else m0
                m1 = v1 if v1 > m1 else m1
                m2 = v2 if v2 > m2 else m2
                m3 = v3 if v3 > m3 else m3
                nan = nan | (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
            if nan:
                if m0 == m0:
                    _first_nan(x0, pos + i0, wt + i0, S, &m0, &a0)
                if m1 == m1:
                    _first_nan(x1, pos + i0, wt + i0, S, &m1, &a1)
                if m2 == m2:
                    _first_nan(x2, pos + i0, wt + i0, S, &m2, &a2)
                if m3 == m3:
                    _first_nan(x3, pos + i0, wt + i0, S, &m3, &a3)
            out[c * P + p] = m0
            out[(c + 1) * P + p] = m1
            out[(c + 2) * P + p] = m2
            out[(c + 3) * P + p] = m3
            argmax[c * P + p] = a0
            argmax[(c + 1) * P + p] = a1
            argmax[(c + 2) * P + p] = a2
            argmax[(c + 3) * P + p] = a3
        c = c + 4
    while c < C:
        x0 = image + c * HW
        for p in range(P):
            i0 = 4 * p * S
            i = i0
            m0 = _sample_value(x0, pos + i, wt + i)
            a0 = 0
            nan = m0 != m0
            for s in range(1, S):
                i = i + 4
                v0 = _sample_value(x0, pos + i, wt + i)
                g0 = v0 > m0
                a0 = a0 + g0 * (<int>s - a0)
                m0 = v0 if v0 > m0 else m0
                nan = nan | (v0 != v0)
            if nan and m0 == m0:
                _first_nan(x0, pos + i0, wt + i0, S, &m0, &a0)
            out[c * P + p] = m0
            argmax[c * P + p] = a0
        c = c + 1


cdef void _backward_max_roi(floating* grad_image, const floating* grad_out, const int* argmax,
                            Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t HW, Py_ssize_t P,
                            Py_ssize_t S, const int* pos, const floating* wt) noexcept nogil:
    """grad_image[c][pos_s] += wt_s * grad_out[c, p] for the arg-max sample s = argmax[c, p] of
    each bin (none where it is -1), channels c0 <= c < c1. argmax is checked by the caller."""
    cdef Py_ssize_t c, p, i
    cdef floating* x0
    cdef floating g
    cdef int a
    for c in range(c0, c1):
        x0 = grad_image + c * HW
        for p in range(P):
            a = argmax[c * P + p]
            if a < 0:
                continue
            g = grad_out[c * P + p]
            i = 4 * (p * S + a)
            x0[pos[i]] += wt[i] * g
            x0[pos[i + 1]] += wt[i + 1] * g
            x0[pos[i + 2]] += wt[i + 2] * g
            x0[pos[i + 3]] += wt[i + 3] * g


def roi_align_forward_max(const floating[:, :, :, ::1] input, const floating[:, ::1] rois,
                          int pooled_height, int pooled_width, double spatial_scale,
                          int sampling_ratio, bint aligned):
    """RoIAlign max forward: input (N, C, H, W), rois (K, 5) of the same dtype ->
    (output (K, C, PH, PW), argmax (K, C, PH, PW) int32: iy * gw + ix of the winning sample)."""
    cdef Py_ssize_t N = input.shape[0], C = input.shape[1]
    cdef int H = input.shape[2], W = input.shape[3], PH = pooled_height, PW = pooled_width
    cdef Py_ssize_t K = rois.shape[0], k, HW = <Py_ssize_t>H * W, P = PH * PW
    dtype = np.float32 if floating is float else np.float64
    _check_sizes("roi_align", (N, C, H, W), (K, rois.shape[1]), PH, PW)
    out = np.empty((K, C, PH, PW), dtype=dtype)         # every element is written below
    argmax = np.empty((K, C, PH, PW), dtype=np.intc)
    if K == 0 or C == 0:
        return out, argmax
    cdef floating[:, :, :, ::1] out_v = out
    cdef int[:, :, :, ::1] arg_v = argmax
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    cdef floating[:, ::1] geom = np.empty((K, 4), dtype=dtype)
    cdef int[:, ::1] grid = np.empty((K, 2), dtype=np.intc)
    cdef Py_ssize_t most = _geometry(rois, N, <floating>spatial_scale, PH, PW, sampling_ratio,
                                     aligned, batch, geom, grid)
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>K))
    cdef int[:, ::1] pos_buf = np.empty((nt, 4 * max(most, 1)), dtype=np.intc)
    cdef floating[:, ::1] wt_buf = np.empty((nt, 4 * max(most, 1)), dtype=dtype)
    cdef int* pos
    cdef floating* wt
    cdef int tid, gh, gw
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        pos = &pos_buf[tid, 0]
        wt = &wt_buf[tid, 0]
        for k in prange(K, schedule="dynamic"):
            gh = grid[k, 0]
            gw = grid[k, 1]
            _precalc(H, W, PH, PW, geom[k, 0], geom[k, 1], geom[k, 2], geom[k, 3], gh, gw,
                     pos, wt)
            _forward_max_roi(&input[batch[k], 0, 0, 0], &out_v[k, 0, 0, 0], &arg_v[k, 0, 0, 0],
                             C, HW, P, <Py_ssize_t>gh * gw, pos, wt)
    return out, argmax


def roi_align_backward_max(const floating[:, :, :, ::1] grad_output,
                           const int[:, :, :, ::1] argmax, const floating[:, ::1] rois,
                           Py_ssize_t batch_size, int height, int width, double spatial_scale,
                           int sampling_ratio, bint aligned):
    """RoIAlign max backward: grad_output (K, C, PH, PW) and the forward's argmax ->
    grad_input (N, C, H, W). Refuses an argmax of another shape or with a value outside
    [-1, gh * gw) of its RoI before it indexes anything."""
    cdef Py_ssize_t K = grad_output.shape[0], C = grad_output.shape[1], t, k, c0, c1, i, n
    cdef int PH = grad_output.shape[2], PW = grad_output.shape[3], H = height, W = width
    cdef Py_ssize_t HW = <Py_ssize_t>H * W, P = PH * PW
    dtype = np.float32 if floating is float else np.float64
    arg_shape = (argmax.shape[0], argmax.shape[1], argmax.shape[2], argmax.shape[3])
    if arg_shape != (K, C, PH, PW) or rois.shape[0] != K:
        raise ValueError(f"roi_align: grad_output {(K, C, PH, PW)}, argmax {arg_shape} and "
                         f"rois ({rois.shape[0]}, 5) do not match")
    _check_sizes("roi_align", (batch_size, C, H, W), (K, rois.shape[1]), PH, PW)
    grad_input = np.zeros((batch_size, C, H, W), dtype=dtype)
    if K == 0 or C == 0:
        return grad_input
    cdef floating[:, :, :, ::1] gin = grad_input
    cdef int[::1] batch = np.empty(K, dtype=np.intc)
    cdef floating[:, ::1] geom = np.empty((K, 4), dtype=dtype)
    cdef int[:, ::1] grid = np.empty((K, 2), dtype=np.intc)
    cdef Py_ssize_t most = _geometry(rois, batch_size, <floating>spatial_scale, PH, PW,
                                     sampling_ratio, aligned, batch, geom, grid)
    cdef const int* arg
    cdef Py_ssize_t bad = -1
    with nogil:
        for k in range(K):
            n = <Py_ssize_t>grid[k, 0] * grid[k, 1]
            arg = &argmax[k, 0, 0, 0]
            for i in range(C * P):
                if arg[i] < -1 or arg[i] >= n:
                    bad = k
                    break
            if bad >= 0:
                break
    if bad >= 0:
        n = <Py_ssize_t>grid[bad, 0] * grid[bad, 1]
        raise ValueError(f"roi_align: argmax[{bad}] holds sample indices outside [-1, {n}) "
                         f"(RoI {bad} has {grid[bad, 0]} x {grid[bad, 1]} samples per bin)")
    cdef int nt = max(1, min(minimrcnn_max_threads(), <int>C))
    cdef Py_ssize_t nchunks = nt
    cdef int[:, ::1] pos_buf = np.empty((nt, 4 * max(most, 1)), dtype=np.intc)
    cdef floating[:, ::1] wt_buf = np.empty((nt, 4 * max(most, 1)), dtype=dtype)
    cdef int* pos
    cdef floating* wt
    cdef int tid, gh, gw
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        pos = &pos_buf[tid, 0]
        wt = &wt_buf[tid, 0]
        for t in prange(nchunks, schedule="static", chunksize=1):
            c0 = t * C // nchunks
            c1 = (t + 1) * C // nchunks
            for k in range(K):
                gh = grid[k, 0]
                gw = grid[k, 1]
                if gh * gw == 0:
                    continue
                _precalc(H, W, PH, PW, geom[k, 0], geom[k, 1], geom[k, 2], geom[k, 3], gh, gw,
                         pos, wt)
                _backward_max_roi(&gin[batch[k], 0, 0, 0], &grad_output[k, 0, 0, 0],
                                  &argmax[k, 0, 0, 0], c0, c1, HW, P, <Py_ssize_t>gh * gw,
                                  pos, wt)
    return grad_input
