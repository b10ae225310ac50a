# Shared by the OpenMP kernels (include "_parallel.pxi"): how many threads a prange may use.
# Without OpenMP the kernels build serial and this answers 1.
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
