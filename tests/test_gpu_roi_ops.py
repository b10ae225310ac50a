"""RoIAlign, RoIPool and RoIWarp on the GPU: the CUDA kernels (ext/roi_align.cu, ext/roi_pool.cu,
through cupy.RawModule) against the CPU kernels, forward and backward. Skipped where CuPy or a
GPU is missing (tests/conftest.py)."""
import numpy as np
import pytest

from minimrcnn import Tensor, ops
from minimrcnn.backend import is_cupy_array
from tests.roi_data import roi_test_data

pytestmark = pytest.mark.gpu

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(scope="module")
def cupy():
    import cupy
    return cupy


@pytest.fixture(scope="module")
def data():
    return roi_test_data()


def run(op, x, rois, grad, *args, cupy=None):
    if cupy is not None:
        x, rois, grad = cupy.asarray(x), cupy.asarray(rois), cupy.asarray(grad)
    xt = Tensor(x, requires_grad=True)
    out = op(xt, rois, *args)
    out.backward(grad)
    if cupy is not None:
        assert out.device == "cuda" and is_cupy_array(xt.grad)
        return cupy.asnumpy(out.data), cupy.asnumpy(xt.grad)
    return out.data, xt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
def test_roi_align_gpu_matches_cpu(cupy, data, dtype, aligned, sampling_ratio):
    x, rois = data
    x = x.astype(dtype)
    for size, scale in (((7, 7), 0.25), ((3, 5), 0.5)):
        grad = np.random.default_rng(1).standard_normal((len(rois), 6) + size).astype(dtype)
        args = (size, scale, sampling_ratio, aligned)
        cpu_out, cpu_grad = run(ops.roi_align, x, rois, grad, *args)
        gpu_out, gpu_grad = run(ops.roi_align, x, rois, grad, *args, cupy=cupy)
        np.testing.assert_allclose(gpu_out, cpu_out, **TOL[dtype])
        np.testing.assert_allclose(gpu_grad, cpu_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, scale", [((7, 7), 0.25), ((3, 5), 0.5), (2, 1.0)])
def test_roi_pool_gpu_matches_cpu(cupy, data, dtype, size, scale):
    x, rois = data
    x = x.astype(dtype)
    shape = (len(rois), 6) + ((size, size) if isinstance(size, int) else size)
    grad = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    cpu_out, cpu_grad = run(ops.roi_pool, x, rois, grad, size, scale)
    gpu_out, gpu_grad = run(ops.roi_pool, x, rois, grad, size, scale, cupy=cupy)
    np.testing.assert_array_equal(gpu_out, cpu_out)
    np.testing.assert_allclose(gpu_grad, cpu_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_warp_gpu_matches_cpu(cupy, data, dtype):
    x, rois = data
    x = x.astype(dtype)
    grad = np.random.default_rng(3).standard_normal((len(rois), 6, 4, 3)).astype(dtype)
    cpu_out, cpu_grad = run(ops.roi_warp, x, rois, grad, (4, 3), 0.25)
    gpu_out, gpu_grad = run(ops.roi_warp, x, rois, grad, (4, 3), 0.25, cupy=cupy)
    np.testing.assert_allclose(gpu_out, cpu_out, **TOL[dtype])
    np.testing.assert_allclose(gpu_grad, cpu_grad, **TOL[dtype])


def test_references_run_on_cupy(cupy, data):
    x, rois = data
    gx = cupy.asarray(x)
    np.testing.assert_allclose(cupy.asnumpy(ops.roi_align_reference(gx, rois, 3, 0.25, 2, True)),
                               ops.roi_align(x, rois, 3, 0.25, 2, True).data, **TOL[np.float64])
    out, argmax = ops.roi_pool_reference(gx, rois, 3, 0.25)
    np.testing.assert_array_equal(cupy.asnumpy(out), ops.roi_pool(x, rois, 3, 0.25).data)
    grad = cupy.ones(out.shape)
    np.testing.assert_allclose(cupy.asnumpy(ops.roi_pool_reference_backward(grad, argmax, rois, x.shape)),
                               ops.roi_pool_reference_backward(np.ones(out.shape), cupy.asnumpy(argmax),
                                                               rois, x.shape))


def test_gpu_empty_and_bad_inputs(cupy, data):
    x, rois = data
    gx = cupy.asarray(x)
    xt = Tensor(gx, requires_grad=True)
    out = ops.roi_align(xt, cupy.zeros((0, 5)), 7, 0.25)
    assert out.shape == (0, 6, 7, 7) and out.device == "cuda"
    out.backward(cupy.zeros(out.shape))
    assert xt.grad.shape == x.shape
    bad = rois.copy()
    bad[5, 0] = 2
    with pytest.raises(ValueError, match=r"roi_align: rois\[5, 0\] = 2 is not a batch index in \[0, 2\)"):
        ops.roi_align(gx, cupy.asarray(bad), 7, 0.25)
    with pytest.raises(ValueError, match=r"roi_pool: rois\[5, 0\] = 2 is not a batch index"):
        ops.roi_pool(gx, bad, 7, 0.25)
    with pytest.raises(ValueError, match="sampling grid"):
        ops.roi_align(gx, [[0, 0.0, 0.0, 70000.0, 7000.0]], 7, 1.0, -1)
