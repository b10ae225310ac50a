// Greedy non-maximum suppression on the GPU, loaded by minimrcnn/ops/nms.py with cupy.RawModule.
//
// The boxes arrive sorted by decreasing score. Two kernels, as in torchvision's CUDA nms
// (torchvision/csrc/ops/cuda/nms_kernel.cu):
//
// 1. nms_mask_{float,double}: the boxes are cut into blocks of 64. CUDA block (col, row) compares
//    the 64 boxes of row block `row` (one per thread) with the 64 boxes of column block `col`
//    (staged in shared memory) and writes one 64-bit word per box:
//        mask[i, col] bit b  <=>  IoU(box i, box 64*col + b) > threshold  and  64*col + b > i.
//    Only col >= row is needed (a box is suppressed only by higher-scored boxes).
// 2. nms_gather_keep: one CUDA block walks the boxes in score order; box i is kept unless a
//    kept box suppressed it, and a kept box ORs its mask row into the `removed` bitset.
//
// The IoU is computed with the arithmetic of the CPU kernel (ext/nms.pyx) in the boxes' own
// precision and compared in double precision, so that with --fmad=false (set by the loader) the
// GPU keeps exactly the boxes the CPU keeps.

#define NMS_BLOCK 64

template <typename T>
__device__ __forceinline__ bool iou_above(const T* a, const T* b, double threshold) {
    T left = max(a[0], b[0]), right = min(a[2], b[2]);
    T top = max(a[1], b[1]), bottom = min(a[3], b[3]);
    T width = right - left, height = bottom - top;
    if (!(width > (T)0)) width = (T)0;
    if (!(height > (T)0)) height = (T)0;
    T inter = width * height;
    T area_a = (a[2] - a[0]) * (a[3] - a[1]);
    T area_b = (b[2] - b[0]) * (b[3] - b[1]);
    T iou = inter / (area_a + area_b - inter);
    return (double)iou > threshold;
}

template <typename T>
__device__ void nms_mask(const T* boxes, int n_boxes, double threshold, unsigned long long* mask) {
    const int row_start = blockIdx.y;
    const int col_start = blockIdx.x;
    if (row_start > col_start) return;
    const int col_blocks = (n_boxes + NMS_BLOCK - 1) / NMS_BLOCK;
    const int row_size = min(n_boxes - row_start * NMS_BLOCK, NMS_BLOCK);
    const int col_size = min(n_boxes - col_start * NMS_BLOCK, NMS_BLOCK);

    __shared__ T block_boxes[NMS_BLOCK * 4];
    if (threadIdx.x < col_size) {
        const T* src = boxes + (long long)(NMS_BLOCK * col_start + threadIdx.x) * 4;
        for (int k = 0; k < 4; k++) block_boxes[threadIdx.x * 4 + k] = src[k];
    }
    __syncthreads();

    if (threadIdx.x < row_size) {
        const int cur = NMS_BLOCK * row_start + threadIdx.x;
        const T* cur_box = boxes + (long long)cur * 4;
        unsigned long long bits = 0;
        const int start = (row_start == col_start) ? threadIdx.x + 1 : 0;
        for (int b = start; b < col_size; b++) {
            if (iou_above(cur_box, block_boxes + b * 4, threshold)) bits |= 1ULL << b;
        }
        mask[(long long)cur * col_blocks + col_start] = bits;
    }
}

extern "C" __global__ void nms_mask_float(const float* boxes, int n_boxes, double threshold,
                                          unsigned long long* mask) {
    nms_mask<float>(boxes, n_boxes, threshold, mask);
}

extern "C" __global__ void nms_mask_double(const double* boxes, int n_boxes, double threshold,
                                           unsigned long long* mask) {
    nms_mask<double>(boxes, n_boxes, threshold, mask);
}

// One block; shared memory: col_blocks 64-bit words (the `removed` bitset).
// Every thread takes the same branches (they all read the same removed[nblock]), so the
// __syncthreads() calls inside the loop are reached by the whole block.
extern "C" __global__ void nms_gather_keep(const unsigned long long* mask, int n_boxes, bool* keep) {
    extern __shared__ unsigned long long removed[];
    const int col_blocks = (n_boxes + NMS_BLOCK - 1) / NMS_BLOCK;
    for (int k = threadIdx.x; k < col_blocks; k += blockDim.x) removed[k] = 0;
    __syncthreads();

    for (int nblock = 0; nblock < col_blocks; nblock++) {
        unsigned long long removed_now = removed[nblock];
        __syncthreads();                       // all have read before anyone writes
        for (int b = 0; b < NMS_BLOCK; b++) {
            const int i = nblock * NMS_BLOCK + b;
            if (i >= n_boxes) break;
            if (removed_now & (1ULL << b)) continue;
            if (threadIdx.x == 0) keep[i] = true;
            const unsigned long long* row = mask + (long long)i * col_blocks;
            for (int k = nblock + threadIdx.x; k < col_blocks; k += blockDim.x) removed[k] |= row[k];
            __syncthreads();                   // writes done before anyone reads
            removed_now = removed[nblock];
            __syncthreads();                   // reads done before the next writes
        }
    }
}
