// RoIPool on the GPU, loaded by minimrcnn/ops/roi_pool.py with cupy.RawModule.
//
// Semantics are those of torchvision's roi_pool (torchvision/csrc/ops/cuda/roi_pool_kernel.cu)
// and of the CPU kernel ext/roi_pool.pyx. For RoI k:
//
//     x_start = round(x1 * scale)   x_end = round(x2 * scale)   (round half away from zero)
//     roi_w = max(x_end - x_start + 1, 1)                        bin_w = roi_w / PW
//     bin pw covers columns [floor(pw * bin_w) + x_start, ceil((pw + 1) * bin_w) + x_start),
//     clipped to [0, W]                                          (rows likewise)
//     out = max over the bin (0 for an empty bin), argmax = y * W + x of the first max (or -1)
//
// One thread per output element in a grid-stride loop; the backward kernel adds grad_output
// to grad_input at argmax with atomicAdd (bins of several RoIs may share a maximum). The caller
// validates the arguments (batch index in range, |coordinate * scale| < 2^28).

template <typename T>
__device__ void roi_pool_forward(long long total, const T* input, const T* rois, T scale, int C,
                                 int H, int W, int PH, int PW, T* output, int* argmax) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int pw = (int)(index % PW);
        int ph = (int)((index / PW) % PH);
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        const T* roi = rois + k * 5;
        int batch = (int)roi[0];
        int x_start = (int)round((double)(roi[1] * scale));
        int y_start = (int)round((double)(roi[2] * scale));
        int x_end = (int)round((double)(roi[3] * scale));
        int y_end = (int)round((double)(roi[4] * scale));
        T bin_h = (T)max(y_end - y_start + 1, 1) / (T)PH;
        T bin_w = (T)max(x_end - x_start + 1, 1) / (T)PW;
        int hstart = min(max((int)floor((double)((T)ph * bin_h)) + y_start, 0), H);
        int hend = min(max((int)ceil((double)((T)(ph + 1) * bin_h)) + y_start, 0), H);
        int wstart = min(max((int)floor((double)((T)pw * bin_w)) + x_start, 0), W);
        int wend = min(max((int)ceil((double)((T)(pw + 1) * bin_w)) + x_start, 0), W);
        if (hend <= hstart || wend <= wstart) {
            output[index] = (T)0;
            argmax[index] = -1;
            continue;
        }
        const T* plane = input + ((long long)batch * C + c) * H * W;
        int best = hstart * W + wstart;
        T value = plane[best];
        for (int h = hstart; h < hend; h++) {
            for (int w = wstart; w < wend; w++) {
                if (plane[h * W + w] > value) {
                    value = plane[h * W + w];
                    best = h * W + w;
                }
            }
        }
        output[index] = value;
        argmax[index] = best;
    }
}

template <typename T>
__device__ void roi_pool_backward(long long total, const T* grad_output, const int* argmax,
                                  const T* rois, int C, int H, int W, int PH, int PW,
                                  T* grad_input) {
    for (long long index = blockIdx.x * (long long)blockDim.x + threadIdx.x; index < total;
         index += (long long)blockDim.x * gridDim.x) {
        int a = argmax[index];
        if (a < 0) continue;
        int c = (int)((index / PW / PH) % C);
        long long k = index / PW / PH / C;
        int batch = (int)rois[k * 5];
        atomicAdd(grad_input + ((long long)batch * C + c) * H * W + a, grad_output[index]);
    }
}

#define ROI_POOL_KERNELS(T, SUFFIX)                                                            \
    extern "C" __global__ void roi_pool_forward_##SUFFIX(long long total, const T* input,      \
                                                         const T* rois, T scale, int C, int H, \
                                                         int W, int PH, int PW, T* output,     \
                                                         int* argmax) {                        \
        roi_pool_forward<T>(total, input, rois, scale, C, H, W, PH, PW, output, argmax);       \
    }                                                                                          \
    extern "C" __global__ void roi_pool_backward_##SUFFIX(                                     \
        long long total, const T* grad_output, const int* argmax, const T* rois, int C, int H, \
        int W, int PH, int PW, T* grad_input) {                                                \
        roi_pool_backward<T>(total, grad_output, argmax, rois, C, H, W, PH, PW, grad_input);   \
    }

ROI_POOL_KERNELS(float, float)
ROI_POOL_KERNELS(double, double)
