// RoIAlign on the GPU, loaded by minimrcnn/ops/roi_align.py with cupy.RawModule.
//
// Semantics are those of torchvision's roi_align (torchvision/csrc/ops/cuda/roi_align_kernel.cu)
// and of the CPU kernel ext/roi_align.pyx, in the input's own precision. For RoI k, with
// offset = 0.5 if aligned else 0:
//
//     y0 = y1 * scale - offset          roi_h = y2 * scale - offset - y0   (>= 1 if not aligned)
//     bin_h = roi_h / PH                gh = sampling_ratio if > 0 else ceil(roi_h / PH)
//     sample (ph, iy):  y = y0 + ph * bin_h + (iy + 0.5) * bin_h / gh          (x likewise)
//     out[k, c, ph, pw] = sum of bilinear(input[b, c], y, x) over the gh * gw samples
//                         / max(gh * gw, 1)
//
// One thread per output element (k, c, ph, pw), in a grid-stride loop. The backward kernel
// recomputes the same samples and scatters grad * weight / count into grad_input with
// atomicAdd (two RoIs, or two bins of one RoI, may share a pixel). The caller validates the
// arguments (batch index in range, finite boxes, bounded sampling grid) and passes C-contiguous
// arrays; the loader compiles with --fmad=false so that a*b+c is not fused into an FMA and the
// forward pass rounds as the CPU kernel does.
//
// Max mode (roi_align_forward_max / roi_align_backward_max): the same samples, and
//
//     out[k, c, ph, pw] = max over the gh * gw samples of bilinear(input[b, c], y, x)
//     argmax[k, c, ph, pw] = iy * gw + ix of the first sample attaining it (-1: no samples)
//
// an empty sample counting as 0, a bin without samples giving 0, a NaN sample winning over any
// number (the first NaN wins, as NumPy's argmax). Each sample's value is the expression the CPU
// kernel uses, so with --fmad=false the max and its argmax are the CPU's bit for bit. Backward:
// one thread per output recomputes its arg-max sample's position and atomicAdds grad * weight
// into its four pixels; an argmax outside [0, gh * gw) contributes nothing.

template <typename T>
struct RoIGeometry {
    int batch;
    T y0, x0, bin_h, bin_w;
    int gh, gw;
};

template <typename T>
__device__ __forceinline__ RoIGeometry<T> roi_geometry(const T* roi, T scale, int PH, int PW,
                                                       int sampling_ratio, int aligned) {
    RoIGeometry<T> g;
    g.batch = (int)roi[0];
    T offset = aligned ? (T)0.5 : (T)0.0;
    g.x0 = roi[1] * scale - offset;
    g.y0 = roi[2] * scale - offset;
    T roi_w = (roi[3] * scale - offset) - g.x0;
    T roi_h = (roi[4] * scale - offset) - g.y0;
    if (!aligned) {  // malformed RoIs are forced to be at least 1x1
        if (roi_w < (T)1) roi_w = (T)1;
        if (roi_h < (T)1) roi_h = (T)1;
    }
    g.bin_h = roi_h / (T)PH;
    g.bin_w = roi_w / (T)PW;
    g.gh = sampling_ratio > 0 ? sampling_ratio : (int)ceil((double)(roi_h / (T)PH));
    g.gw = sampling_ratio > 0 ? sampling_ratio : (int)ceil((double)(roi_w / (T)PW));
    if (g.gh < 0) g.gh = 0;
    if (g.gw < 0) g.gw = 0;
    return g;
}

// Bilinear weights of the sample (y, x) on an H x W plane: false for an empty sample.
template <typename T>
__device__ __forceinline__ bool bilinear_weights(int H, int W, T y, T x, int& p1, int& p2,
                                                 int& p3, int& p4, T& w1, T& w2, T& w3, T& w4) {
    if (!(y >= (T)-1.0 && y <= (T)H && x >= (T)-1.0 && x <= (T)W)) return false;
    if (y <= (T)0) y = (T)0;
    if (x <= (T)0) x = (T)0;
    int y_low = (int)y, x_low = (int)x, y_high, x_high;
    if (y_low >= H - 1) {
        y_high = y_low = H - 1;
        y = (T)y_low;
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= W - 1) {
        x_high = x_low = W - 1;
        x = (T)x_low;
    } else {
        x_high = x_low + 1;
    }
    T ly = y - (T)y_low, lx = x - (T)x_low;
    T hy = (T)(1.0 - (double)ly), hx = (T)(1.0 - (double)lx);  // as torchvision: `T hy = 1. - ly`
    p1 = y_low * W + x_low;
    p2 = y_low * W + x_high;
    p3 = y_high * W + x_low;
    p4 = y_high * W + x_high;
    w1 = hy * hx;
    w2 = hy * lx;
    w3 = ly * hx;
    w4 = ly * lx;
    return true;
}

template <typename T>
__device__ void roi_align_forward(long long total, const T* input, const T* rois, T scale, int C,
                                  int H, int W, int PH, int PW, int sampling_ratio, int aligned,
                                  T* output) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int pw = (int)(index % PW);
        int ph = (int)((index / PW) % PH);
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        RoIGeometry<T> g = roi_geometry(rois + k * 5, scale, PH, PW, sampling_ratio, aligned);
        const T* plane = input + ((long long)g.batch * C + c) * H * W;
        T count = (T)max(g.gh * g.gw, 1);
        T acc = (T)0;
        for (int iy = 0; iy < g.gh; iy++) {
            T y = g.y0 + ph * g.bin_h + ((T)iy + (T)0.5) * g.bin_h / (T)g.gh;
            for (int ix = 0; ix < g.gw; ix++) {
                T x = g.x0 + pw * g.bin_w + ((T)ix + (T)0.5) * g.bin_w / (T)g.gw;
                int p1, p2, p3, p4;
                T w1, w2, w3, w4;
                if (bilinear_weights(H, W, y, x, p1, p2, p3, p4, w1, w2, w3, w4))
                    acc += w1 * plane[p1] + w2 * plane[p2] + w3 * plane[p3] + w4 * plane[p4];
            }
        }
        output[index] = acc / count;
    }
}

template <typename T>
__device__ void roi_align_backward(long long total, const T* grad_output, const T* rois, T scale,
                                   int C, int H, int W, int PH, int PW, int sampling_ratio,
                                   int aligned, T* grad_input) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int pw = (int)(index % PW);
        int ph = (int)((index / PW) % PH);
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        RoIGeometry<T> g = roi_geometry(rois + k * 5, scale, PH, PW, sampling_ratio, aligned);
        if (g.gh * g.gw == 0) continue;
        T* plane = grad_input + ((long long)g.batch * C + c) * H * W;
        T grad = grad_output[index] / (T)(g.gh * g.gw);
        for (int iy = 0; iy < g.gh; iy++) {
            T y = g.y0 + ph * g.bin_h + ((T)iy + (T)0.5) * g.bin_h / (T)g.gh;
            for (int ix = 0; ix < g.gw; ix++) {
                T x = g.x0 + pw * g.bin_w + ((T)ix + (T)0.5) * g.bin_w / (T)g.gw;
                int p1, p2, p3, p4;
                T w1, w2, w3, w4;
                if (bilinear_weights(H, W, y, x, p1, p2, p3, p4, w1, w2, w3, w4)) {
                    atomicAdd(plane + p1, w1 * grad);
                    atomicAdd(plane + p2, w2 * grad);
                    atomicAdd(plane + p3, w3 * grad);
                    atomicAdd(plane + p4, w4 * grad);
                }
            }
        }
    }
}

// The bilinear value of sample (y, x): the CPU kernel's expression, 0 for an empty sample.
template <typename T>
__device__ __forceinline__ T sample_value(const T* plane, int H, int W, T y, T x) {
    int p1, p2, p3, p4;
    T w1, w2, w3, w4;
    if (!bilinear_weights(H, W, y, x, p1, p2, p3, p4, w1, w2, w3, w4)) return (T)0;
    return w1 * plane[p1] + w2 * plane[p2] + w3 * plane[p3] + w4 * plane[p4];
}

// v replaces the running max: it is larger, or it is the first NaN (NumPy's argmax rule).
template <typename T>
__device__ __forceinline__ bool beats(T v, T best) {
    return v > best || (v != v && best == best);
}

template <typename T>
__device__ void roi_align_forward_max(long long total, const T* input, const T* rois, T scale,
                                      int C, int H, int W, int PH, int PW, int sampling_ratio,
                                      int aligned, T* output, int* argmax) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int pw = (int)(index % PW);
        int ph = (int)((index / PW) % PH);
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        RoIGeometry<T> g = roi_geometry(rois + k * 5, scale, PH, PW, sampling_ratio, aligned);
        const T* plane = input + ((long long)g.batch * C + c) * H * W;
        T best = (T)0;
        int best_index = -1;
        for (int iy = 0; iy < g.gh; iy++) {
            T y = g.y0 + ph * g.bin_h + ((T)iy + (T)0.5) * g.bin_h / (T)g.gh;
            for (int ix = 0; ix < g.gw; ix++) {
                T x = g.x0 + pw * g.bin_w + ((T)ix + (T)0.5) * g.bin_w / (T)g.gw;
                T v = sample_value(plane, H, W, y, x);
                if (best_index < 0 || beats(v, best)) {
                    best = v;
                    best_index = iy * g.gw + ix;
                }
            }
        }
        output[index] = best;  // 0 and -1 for a bin without samples
        argmax[index] = best_index;
    }
}

template <typename T>
__device__ void roi_align_backward_max(long long total, const T* grad_output, const int* argmax,
                                       const T* rois, T scale, int C, int H, int W, int PH,
                                       int PW, int sampling_ratio, int aligned, T* grad_input) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int pw = (int)(index % PW);
        int ph = (int)((index / PW) % PH);
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        RoIGeometry<T> g = roi_geometry(rois + k * 5, scale, PH, PW, sampling_ratio, aligned);
        int a = argmax[index];
        if (a < 0 || a >= g.gh * g.gw) continue;  // no samples (or not an index of this bin)
        int iy = a / g.gw, ix = a % g.gw;
        T y = g.y0 + ph * g.bin_h + ((T)iy + (T)0.5) * g.bin_h / (T)g.gh;
        T x = g.x0 + pw * g.bin_w + ((T)ix + (T)0.5) * g.bin_w / (T)g.gw;
        int p1, p2, p3, p4;
        T w1, w2, w3, w4;
        if (!bilinear_weights(H, W, y, x, p1, p2, p3, p4, w1, w2, w3, w4)) continue;
        T* plane = grad_input + ((long long)g.batch * C + c) * H * W;
        T grad = grad_output[index];
        atomicAdd(plane + p1, w1 * grad);
        atomicAdd(plane + p2, w2 * grad);
        atomicAdd(plane + p3, w3 * grad);
        atomicAdd(plane + p4, w4 * grad);
    }
}

#define ROI_ALIGN_KERNELS(T, SUFFIX)                                                          \
    extern "C" __global__ void roi_align_forward_##SUFFIX(                                    \
        long long total, const T* input, const T* rois, T scale, int C, int H, int W, int PH, \
        int PW, int sampling_ratio, int aligned, T* output) {                                 \
        roi_align_forward<T>(total, input, rois, scale, C, H, W, PH, PW, sampling_ratio,      \
                             aligned, output);                                                \
    }                                                                                         \
    extern "C" __global__ void roi_align_backward_##SUFFIX(                                   \
        long long total, const T* grad_output, const T* rois, T scale, int C, int H, int W,   \
        int PH, int PW, int sampling_ratio, int aligned, T* grad_input) {                     \
        roi_align_backward<T>(total, grad_output, rois, scale, C, H, W, PH, PW,               \
                              sampling_ratio, aligned, grad_input);                           \
    }                                                                                         \
    extern "C" __global__ void roi_align_forward_max_##SUFFIX(                                \
        long long total, const T* input, const T* rois, T scale, int C, int H, int W, int PH, \
        int PW, int sampling_ratio, int aligned, T* output, int* argmax) {                    \
        roi_align_forward_max<T>(total, input, rois, scale, C, H, W, PH, PW, sampling_ratio,  \
                                 aligned, output, argmax);                                    \
    }                                                                                         \
    extern "C" __global__ void roi_align_backward_max_##SUFFIX(                               \
        long long total, const T* grad_output, const int* argmax, const T* rois, T scale,     \
        int C, int H, int W, int PH, int PW, int sampling_ratio, int aligned,                 \
        T* grad_input) {                                                                      \
        roi_align_backward_max<T>(total, grad_output, argmax, rois, scale, C, H, W, PH, PW,   \
                                  sampling_ratio, aligned, grad_input);                       \
    }

ROI_ALIGN_KERNELS(float, float)
ROI_ALIGN_KERNELS(double, double)
