# Shared by the RoI kernels (include "_roi_common.pxi").

# How many threads a prange may use; without OpenMP the kernels build serial and this answers 1.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int minimrcnn_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int minimrcnn_max_threads(void) { return 1; }
    #endif
    """
    int minimrcnn_max_threads() nogil


def _check_sizes(op, shape, rois_shape, int PH, int PW):
    """Bounds the kernels rely on: 5 columns, positive output size, H*W addressable by int."""
    if rois_shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (K, 5), got {tuple(rois_shape)}")
    if PH < 1 or PW < 1:
        raise ValueError(f"{op}: output_size must be positive, got ({PH}, {PW})")
    if shape[2] < 1 or shape[3] < 1 or <double>shape[2] * shape[3] >= 2.0 ** 31:
        raise ValueError(f"{op}: feature map of shape {tuple(shape)} has an unsupported height/width")
