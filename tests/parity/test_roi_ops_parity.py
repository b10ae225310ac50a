"""Parity with torchvision.ops.roi_align / roi_pool (CPU), forward and backward, every mode.

Our Cython kernels use torchvision's arithmetic in the input's precision, so the forward passes
agree to the last bit where this was written (gcc, x86-64); the tolerances leave room for a compiler
that rounds differently. Backward sums the same terms in the same order per pixel, but divides by
the sample count before (not after) multiplying by the weight: equal within a few ulps.
"""
import numpy as np
import pytest

from minimrcnn import Tensor, ops
from tests.roi_data import roi_test_data

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}


@pytest.fixture(scope="module")
def data():
    return roi_test_data()


def torch_roi_op(name, x, rois, grad, *args):
    xt = torch.from_numpy(x).requires_grad_()
    out = getattr(torchvision.ops, name)(xt, torch.from_numpy(rois), *args)
    out.backward(torch.from_numpy(grad))
    return out.detach().numpy(), xt.grad.numpy()


def our_roi_op(name, x, rois, grad, *args):
    xt = Tensor(x, requires_grad=True)
    out = getattr(ops, name)(xt, rois, *args)
    out.backward(grad)
    return out.data, xt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 4])
@pytest.mark.parametrize("output_size, scale", [((7, 7), 0.25), ((3, 5), 0.5), (2, 1.0)])
def test_roi_align_matches_torchvision(data, dtype, aligned, sampling_ratio, output_size, scale):
    x, rois = data
    x, rois = x.astype(dtype), rois.astype(dtype)
    shape = (len(rois), x.shape[1]) + ((output_size,) * 2 if isinstance(output_size, int) else output_size)
    grad = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    args = (output_size, scale, sampling_ratio, aligned)
    ours, ours_grad = our_roi_op("roi_align", x, rois, grad, *args)
    theirs, theirs_grad = torch_roi_op("roi_align", x, rois, grad, *args)
    np.testing.assert_allclose(ours, theirs, **TOL[dtype])
    np.testing.assert_allclose(ours_grad, theirs_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output_size, scale", [((7, 7), 0.25), ((3, 5), 0.5), (2, 1.0), (4, 0.125)])
def test_roi_pool_matches_torchvision(data, dtype, output_size, scale):
    x, rois = data
    x, rois = x.astype(dtype), rois.astype(dtype)
    shape = (len(rois), x.shape[1]) + ((output_size,) * 2 if isinstance(output_size, int) else output_size)
    grad = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    ours, ours_grad = our_roi_op("roi_pool", x, rois, grad, output_size, scale)
    theirs, theirs_grad = torch_roi_op("roi_pool", x, rois, grad, output_size, scale)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours_grad, theirs_grad, **TOL[dtype])


def test_roi_warp_is_torchvision_roi_align_of_the_quantized_box(data):
    """RoIWarp = torchvision roi_align(aligned=True, sampling_ratio=1) of RoIPool's box."""
    x, rois = data
    boxes = ops.warp_boxes(rois, 0.25)
    grad = np.random.default_rng(3).standard_normal((len(rois), x.shape[1], 4, 4))
    ours, ours_grad = our_roi_op("roi_warp", x, rois, grad, 4, 0.25)
    theirs, theirs_grad = torch_roi_op("roi_align", x, boxes, grad, 4, 1.0, 1, True)
    np.testing.assert_allclose(ours, theirs, **TOL[np.float64])
    np.testing.assert_allclose(ours_grad, theirs_grad, **TOL[np.float64])
