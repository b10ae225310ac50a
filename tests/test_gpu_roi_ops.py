"""RoIAlign, RoIPool and RoIWarp on the GPU: the CUDA kernels (ext/roi_align.cu, ext/roi_pool.cu,
through cupy.RawModule) against the CPU kernels and the references, forward and backward, in
RoIAlign's / RoIWarp's avg and max modes. Skipped where CuPy or a
GPU is missing (tests/conftest.py)."""
import numpy as np
import pytest

from minimrcnn import Tensor, ops
from minimrcnn.backend import is_cupy_array
from minimrcnn.ops.roi_align import RoIAlign
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
def test_roi_align_max_gpu_matches_cpu(cupy, data, dtype, aligned, sampling_ratio):
    """The CUDA max kernels against the Cython ones: each sample's value is the same expression
    (no FMA on either side), so the outputs and the saved arg-max samples are identical."""
    x, rois = data
    x = x.astype(dtype)
    for size, scale in (((7, 7), 0.25), ((3, 5), 0.5)):
        grad = np.random.default_rng(4).standard_normal((len(rois), 6) + size).astype(dtype)
        args = (size, scale, sampling_ratio, aligned, "max")
        cpu_out, cpu_grad = run(ops.roi_align, x, rois, grad, *args)
        gpu_out, gpu_grad = run(ops.roi_align, x, rois, grad, *args, cupy=cupy)
        np.testing.assert_array_equal(gpu_out, cpu_out)
        np.testing.assert_allclose(gpu_grad, cpu_grad, **TOL[dtype])
        checked = rois.astype(dtype)
        cpu_f, gpu_f = RoIAlign(size, scale, sampling_ratio, aligned, "max"), \
            RoIAlign(size, scale, sampling_ratio, aligned, "max")
        cpu_f(Tensor(x), checked)
        gpu_f(Tensor(cupy.asarray(x)), cupy.asarray(checked))
        assert gpu_f.argmax.dtype == np.int32
        np.testing.assert_array_equal(cupy.asnumpy(gpu_f.argmax), cpu_f.argmax)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_gpu_matches_the_reference(cupy, data, dtype, mode):
    x, rois = data
    gx = cupy.asarray(x.astype(dtype))
    grad = cupy.asarray(np.random.default_rng(5).standard_normal((len(rois), 6, 4, 3)).astype(dtype))
    for aligned, ratio in ((False, 2), (True, -1)):
        xt = Tensor(gx, requires_grad=True)
        out = ops.roi_align(xt, rois, (4, 3), 0.25, ratio, aligned, mode)
        out.backward(grad)
        expected = ops.roi_align_reference(gx, rois, (4, 3), 0.25, ratio, aligned, mode)
        expected_grad = ops.roi_align_reference_backward(grad, rois, gx.shape, (4, 3), 0.25, ratio,
                                                         aligned, mode, input=gx)
        assert is_cupy_array(expected) and is_cupy_array(expected_grad)
        tol = dict(rtol=1e-5, atol=2e-6) if dtype == np.float32 else TOL[np.float64]
        np.testing.assert_allclose(cupy.asnumpy(out.data), cupy.asnumpy(expected), **tol)
        np.testing.assert_allclose(cupy.asnumpy(xt.grad), cupy.asnumpy(expected_grad), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_warp_max_gpu_matches_cpu(cupy, data, dtype):
    x, rois = data
    x = x.astype(dtype)
    grad = np.random.default_rng(6).standard_normal((len(rois), 6, 4, 3)).astype(dtype)
    cpu_out, cpu_grad = run(ops.roi_warp, x, rois, grad, (4, 3), 0.25, 2, "max")
    gpu_out, gpu_grad = run(ops.roi_warp, x, rois, grad, (4, 3), 0.25, 2, "max", cupy=cupy)
    np.testing.assert_array_equal(gpu_out, cpu_out)
    np.testing.assert_allclose(gpu_grad, cpu_grad, **TOL[dtype])


def test_roi_align_max_gpu_empty_bins_and_empty_inputs(cupy, data):
    x, _ = data
    gx = cupy.asarray(x)
    f = RoIAlign((2, 2), 1.0, 0, True, "max")           # aligned + adaptive, empty box: no samples
    xt = Tensor(gx, requires_grad=True)
    out = f(xt, cupy.asarray([[0, 3.0, 3.0, 3.0, 3.0]]))
    assert np.all(cupy.asnumpy(out.data) == 0) and np.all(cupy.asnumpy(f.argmax) == -1)
    out.backward(cupy.ones(out.shape))
    assert not np.any(cupy.asnumpy(xt.grad))
    out = ops.roi_align(Tensor(gx, requires_grad=True), cupy.zeros((0, 5)), 7, 0.25, mode="max")
    assert out.shape == (0, 6, 7, 7) and out.device == "cuda"


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
