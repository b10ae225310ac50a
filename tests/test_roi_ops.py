"""RoIAlign, RoIPool and RoIWarp on the CPU: the Cython kernels against the NumPy references,
hand-computable cases, edge cases and argument checks. (Gradient checks are registered in the
op modules and run by tests/test_gradcheck.py; torchvision parity is in tests/parity/.)"""
import importlib

import numpy as np
import pytest

from minimrcnn import Tensor, ops

ALIGN_TOL = {np.float32: dict(rtol=1e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def random_rois(rng, k, batch_size, extent, max_size):
    """Boxes of 0..max_size pixels whose top-left corner lies in [-max_size/2, extent)."""
    size = rng.uniform(0, max_size, (k, 2))
    x1 = rng.uniform(-max_size / 2, extent[1], k)
    y1 = rng.uniform(-max_size / 2, extent[0], k)
    return np.stack([rng.integers(0, batch_size, k), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)


@pytest.fixture
def data():
    """(2, 6, 9, 11) features (6 channels: the kernels' 4-channel blocks plus a remainder) and
    30 boxes for spatial_scale 0.25 (a 36 x 44 image), many partly outside."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 11))
    rois = random_rois(rng, 30, 2, (36, 44), 30)
    rois[0] = [0, 4.0, 4.0, 4.0, 4.0]          # empty box
    rois[1] = [1, 10.3, 7.1, 10.6, 7.2]        # sub-pixel box
    rois[2] = [1, -40.0, -40.0, -20.0, -30.0]  # entirely outside
    return x, rois


def test_cython_kernels_are_built():
    for name in ("roi_align", "roi_pool"):
        importlib.import_module(f"minimrcnn._ext.{name}")   # python setup.py build_ext --inplace


# ---- RoIAlign ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_roi_align_matches_reference(data, dtype, aligned, sampling_ratio, mode):
    x, rois = data
    x = x.astype(dtype)
    rng = np.random.default_rng(1)
    for scale, size in ((0.25, (3, 4)), (0.5, 5)):
        xt = Tensor(x, requires_grad=True)
        out = ops.roi_align(xt, rois, size, scale, sampling_ratio, aligned, mode)
        assert out.dtype == dtype
        expected = ops.roi_align_reference(x, rois, size, scale, sampling_ratio, aligned, mode)
        np.testing.assert_allclose(out.data, expected, **ALIGN_TOL[dtype])
        grad = rng.standard_normal(out.shape).astype(dtype)
        out.backward(grad)
        expected = ops.roi_align_reference_backward(grad, rois, x.shape, size, scale,
                                                    sampling_ratio, aligned, mode, input=x)
        np.testing.assert_allclose(xt.grad, expected, **ALIGN_TOL[dtype])


@pytest.mark.ex_roi_align_forward
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_of_a_linear_ramp_is_the_bin_centre(aligned):
    """Bilinear interpolation reproduces f(y, x) = 3y - 2x + 1 exactly, so inside the map each
    output is f at the bin centre: (y0 + (ph + 1/2) * bin_h, x0 + (pw + 1/2) * bin_w)."""
    H, W = 20, 24
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    x = (3.0 * yy - 2.0 * xx + 1.0)[None, None]
    rois = np.array([[0, 8.0, 6.0, 36.0, 40.0], [0, 3.0, 5.0, 20.0, 12.0]])   # image coordinates
    scale, PH, PW = 0.5, 4, 3
    out = ops.roi_align(x, rois, (PH, PW), scale, 2, aligned).data
    o = 0.5 if aligned else 0.0
    for k, (_, x1, y1, x2, y2) in enumerate(rois):
        y0, x0 = y1 * scale - o, x1 * scale - o
        bin_h, bin_w = (y2 - y1) * scale / PH, (x2 - x1) * scale / PW
        cy = y0 + (np.arange(PH)[:, None] + 0.5) * bin_h
        cx = x0 + (np.arange(PW)[None, :] + 0.5) * bin_w
        np.testing.assert_allclose(out[k, 0], 3 * cy - 2 * cx + 1, rtol=0, atol=1e-12)


@pytest.mark.ex_roi_align_forward
def test_roi_align_boundary_rules():
    """Samples in [-1, 0] read row/column 0, beyond the last pixel read the last one, and samples
    outside [-1, H] x [-1, W] count as zero (but still count in the average)."""
    x = np.arange(1.0, 13.0).reshape(1, 1, 3, 4)                 # values 1..12
    one = dict(output_size=1, spatial_scale=1.0, sampling_ratio=1, aligned=False)
    # a 1x1 box [-1, 0]: its one sample (-0.5, -0.5) reads pixel (0, 0) = 1
    assert ops.roi_align(x, [[0, -1.0, -1.0, 0.0, 0.0]], **one).data.item() == 1.0
    # a sample at (2.5, 3.5), beyond the last row and column, reads the last pixel, 12
    assert ops.roi_align(x, [[0, 3.0, 2.0, 4.0, 3.0]], **one).data.item() == 12.0
    # a sample at (-1.5, 0.5) is outside: 0
    assert ops.roi_align(x, [[0, 0.0, -2.0, 1.0, -1.0]], **one).data.item() == 0.0
    # box [0, -2, 1, 0], 2x2 samples: y = -1.5 (outside, two zeros) and y = -0.5 (row 0), at
    # x = 0.25 (0.75*1 + 0.25*2 = 1.25) and x = 0.75 (1.75): (0 + 0 + 1.25 + 1.75) / 4
    out = ops.roi_align(x, [[0, 0.0, -2.0, 1.0, 0.0]], 1, 1.0, 2, False).data
    assert out.item() == 0.75


@pytest.mark.ex_roi_align_forward
@pytest.mark.ex_roi_align_backward
def test_roi_align_outside_and_degenerate_boxes(data):
    x, rois = data
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_align(xt, rois[:3], 2, 0.25, -1, True)
    assert np.all(out.data[0] == 0)          # aligned, empty box: a 0 x 0 sampling grid
    assert np.all(out.data[2] == 0)          # entirely outside
    out.backward(np.ones(out.shape))
    unaligned = ops.roi_align(x, rois[:2], 2, 0.25, -1, False).data
    assert np.all(np.isfinite(unaligned)) and np.any(unaligned[0] != 0)   # forced to 1 x 1
    # a box 40 pixels left of the image touches nothing; its gradient is zero
    xt = Tensor(x, requires_grad=True)
    ops.roi_align(xt, rois[2:3], 2, 0.25, 2, False).backward(np.ones((1, 6, 2, 2)))
    assert np.all(xt.grad == 0)


def test_roi_align_empty_inputs(data):
    x, _ = data
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_align(xt, np.zeros((0, 5)), (7, 5), 0.25)
    assert out.shape == (0, 6, 7, 5) and out.dtype == x.dtype
    out.backward(np.zeros(out.shape))
    assert xt.grad.shape == x.shape and np.all(xt.grad == 0)
    out = ops.roi_align(np.zeros((2, 0, 4, 4)), [[1, 0, 0, 3, 3]], 2)
    assert out.shape == (1, 0, 2, 2)


def test_roi_align_accepts_views_lists_and_tensors(data):
    x, rois = data
    view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)   # not C-contiguous
    assert not view.flags.c_contiguous
    expected = ops.roi_align(x, rois, 3, 0.25, 2).data
    np.testing.assert_array_equal(ops.roi_align(view, rois, 3, 0.25, 2).data, expected)
    np.testing.assert_array_equal(ops.roi_align(x, rois.tolist(), [3, 3], 0.25, 2).data, expected)
    np.testing.assert_array_equal(ops.roi_align(Tensor(x), Tensor(rois), 3, 0.25, 2).data, expected)
    int_rois = np.array([[1, 0, 0, 20, 24]])
    np.testing.assert_array_equal(ops.roi_align(x, int_rois, 3, 0.25, 2).data,
                                  ops.roi_align(x, int_rois.astype(float), 3, 0.25, 2).data)


def test_roi_align_float32_rois_are_cast_to_the_input_dtype(data):
    x, rois = data
    out = ops.roi_align(x.astype(np.float32), rois, 3, 0.25)        # float64 rois
    assert out.dtype == np.float32


# ---- RoIPool -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale, size", [(0.25, (3, 4)), (0.5, 2), (1.0, (5, 3))])
def test_roi_pool_matches_reference(data, dtype, scale, size):
    x, rois = data
    x = x.astype(dtype)
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_pool(xt, rois, size, scale)
    expected, argmax = ops.roi_pool_reference(x, rois, size, scale)
    np.testing.assert_array_equal(out.data, expected)
    grad = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    out.backward(grad)
    np.testing.assert_allclose(xt.grad, ops.roi_pool_reference_backward(grad, argmax, rois, x.shape),
                               rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)


def test_roi_pool_by_hand():
    """A 4x4 map, one box [0.6, 0.4, 2.6, 2.4] (scale 1): rounded to pixels x 1..3, y 0..2;
    a 3x3 box cut into 2x2 bins = rows/cols [0, 2) and [1, 3) of the box (overlapping)."""
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16.0]])[None, None]
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_pool(xt, [[0, 0.6, 0.4, 2.6, 2.4]], 2)
    np.testing.assert_array_equal(out.data[0, 0], [[7, 8], [11, 12]])
    out.backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((4, 4))
    expected[1, 2] = expected[1, 3] = expected[2, 2] = expected[2, 3] = 1
    np.testing.assert_array_equal(xt.grad[0, 0], expected)
    # halves round away from zero, as C's round(): 0.5 -> 1, 2.5 -> 3
    out = ops.roi_pool(x, [[0, 0.5, 0.5, 2.5, 2.5]], 1).data
    assert out.item() == 16.0


def test_roi_pool_empty_bins_are_zero(data):
    x, rois = data
    out, argmax = ops.roi_pool_reference(x, rois[2:3], 3, 0.25)   # entirely outside
    assert np.all(argmax == -1) and np.all(out == 0)
    np.testing.assert_array_equal(ops.roi_pool(x, rois[2:3], 3, 0.25).data, out)
    assert ops.roi_pool(x, np.zeros((0, 5)), 3, 0.25).shape == (0, 6, 3, 3)


# ---- RoIWarp -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sampling_ratio, mode", [(1, "avg"), (2, "avg"), (2, "max"), (-1, "max")])
def test_roi_warp_matches_reference(data, dtype, sampling_ratio, mode):
    x, rois = data
    x = x.astype(dtype)
    xt = Tensor(x, requires_grad=True)
    out = ops.roi_warp(xt, rois, (3, 4), 0.25, sampling_ratio, mode)
    np.testing.assert_allclose(out.data, ops.roi_warp_reference(x, rois, (3, 4), 0.25,
                                                                sampling_ratio, mode),
                               **ALIGN_TOL[dtype])
    grad = np.random.default_rng(3).standard_normal(out.shape).astype(dtype)
    out.backward(grad)
    boxes = ops.warp_boxes(rois.astype(dtype), 0.25)
    np.testing.assert_allclose(xt.grad, ops.roi_align_reference_backward(grad, boxes, x.shape, (3, 4),
                                                                         1.0, sampling_ratio, True,
                                                                         mode, input=x),
                               **ALIGN_TOL[dtype])


def test_roi_warp_quantizes_and_roi_align_does_not(data):
    """Moving a box by less than half a feature pixel leaves RoIWarp (and RoIPool) unchanged;
    RoIAlign follows the box."""
    x, _ = data
    box = np.array([[0, 8.0, 8.0, 28.0, 24.0]])
    nudged = box + [0, 1.5, 1.5, 1.5, 1.5]                    # 1.5 image px = 0.375 feature px
    for op in (ops.roi_warp, ops.roi_pool):
        np.testing.assert_array_equal(op(x, box, 4, 0.25).data, op(x, nudged, 4, 0.25).data)
    assert not np.allclose(ops.roi_align(x, box, 4, 0.25).data, ops.roi_align(x, nudged, 4, 0.25).data)


def test_roi_warp_samples_bin_centres_of_the_quantized_box():
    """On a linear ramp, RoIWarp returns f at the bin centres of RoIPool's pixel box
    [x_start - 1/2, x_end + 1/2] (pixel centres at integers)."""
    H, W = 16, 16
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    x = (2.0 * yy + 5.0 * xx)[None, None]
    out = ops.roi_warp(x, [[0, 4.4, 2.2, 20.6, 18.0]], (2, 4), 0.5).data[0, 0]
    # x: round(2.2) = 2 .. round(10.3) = 10 -> [1.5, 10.5], bins of 9/4; y: 1 .. 9 -> [0.5, 9.5]
    cy = 0.5 + (np.arange(2)[:, None] + 0.5) * 9 / 2
    cx = 1.5 + (np.arange(4)[None, :] + 0.5) * 9 / 4
    np.testing.assert_allclose(out, 2 * cy + 5 * cx, atol=1e-12)


# ---- argument checks ---------------------------------------------------------------------------

OPS = {"roi_align": ops.roi_align, "roi_pool": ops.roi_pool, "roi_warp": ops.roi_warp}
GOOD = np.array([[0, 1.0, 1.0, 5.0, 5.0], [1, 0.0, 0.0, 3.0, 3.0], [1, 2.0, 2.0, 4.0, 6.0],
                 [0, 2.0, 2.0, 4.0, 6.0]])


def with_value(index, value):
    rois = GOOD.copy()
    rois[index] = value
    return rois


MAP = np.zeros((2, 1, 8, 8))
BAD_ARGS = [
    # (input, rois, output_size, spatial_scale), error type, message fragment
    ((MAP[0], GOOD, 2, 1.0), ValueError, "input must be 4-D (N, C, H, W), got shape (1, 8, 8)"),
    ((MAP.astype(np.int64), GOOD, 2, 1.0), TypeError,
     "input must be float32 or float64, got dtype int64"),
    ((MAP.astype(np.float16), GOOD, 2, 1.0), TypeError, "got dtype float16"),
    ((MAP[:, :, :0], GOOD, 2, 1.0), ValueError, "height and width"),
    ((MAP, GOOD[:, :4], 2, 1.0), ValueError, "rois must have shape (K, 5)"),
    ((MAP, GOOD[0], 2, 1.0), ValueError, "rois must have shape (K, 5)"),
    ((MAP, with_value((3, 0), 5), 2, 1.0), ValueError,
     "rois[3, 0] = 5 is not a batch index in [0, 2)"),
    ((MAP, with_value((1, 0), -1), 2, 1.0), ValueError, "rois[1, 0] = -1 is not a batch index"),
    ((MAP, with_value((2, 0), 0.5), 2, 1.0), ValueError, "rois[2, 0] = 0.5 is not a batch index"),
    ((MAP, with_value((2, 0), np.nan), 2, 1.0), ValueError, "rois[2, 0] = nan is not a batch"),
    ((MAP, with_value((1, 3), np.nan), 2, 1.0), ValueError, "rois[1, 3] = nan is not finite"),
    ((MAP, with_value((2, 2), -np.inf), 2, 1.0), ValueError, "rois[2, 2] = -inf is not finite"),
    ((MAP.astype(np.float32), with_value((0, 4), 1e39), 2, 1.0), ValueError,
     "rois[0, 4] = inf is not finite"),                    # finite in float64, not in float32
    ((MAP, with_value((2, 3), 1.0), 2, 1.0), ValueError, "rois[2] has x2 = 1 < x1 = 2"),
    ((MAP, with_value((3, 4), 0.0), 2, 1.0), ValueError, "rois[3] has y2 = 0 < y1 = 2"),
    ((MAP, GOOD.astype(str), 2, 1.0), TypeError, "rois must be a numeric array"),
    ((MAP, [[0, 1, 1, 2, 2], [0, 1]], 2, 1.0), ValueError, "rois must be a (K, 5) array"),
    ((MAP, GOOD, 0, 1.0), ValueError, "output_size must be >= 1, got 0"),
    ((MAP, GOOD, (3, -1), 1.0), ValueError, "output_size must be >= 1, got (3, -1)"),
    ((MAP, GOOD, (3, 2 ** 15 + 1), 1.0), ValueError, "output_size must be at most 32768, got (3, 32769)"),
    ((MAP, GOOD, (3,), 1.0), ValueError, "output_size must be an int or a pair of ints, got (3,)"),
    ((MAP, GOOD, 2.5, 1.0), ValueError, "got 2.5"),
    ((MAP, GOOD, True, 1.0), ValueError, "got True"),
    ((MAP, GOOD, 2, 0.0), ValueError, "spatial_scale must be a positive finite number, got 0.0"),
    ((MAP, GOOD, 2, -0.25), ValueError, "got -0.25"),
    ((MAP, GOOD, 2, float("inf")), ValueError, "got inf"),
    ((MAP, GOOD, 2, "1/16"), ValueError, "got '1/16'"),
]


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("args, error, message", BAD_ARGS, ids=[b[2][:40] for b in BAD_ARGS])
def test_bad_arguments_raise_clear_errors(op, args, error, message):
    with pytest.raises(error) as info:
        OPS[op](*args)
    assert str(info.value).startswith(f"{op}: ") and message in str(info.value), str(info.value)


def test_roi_align_specific_argument_checks():
    x = np.zeros((2, 1, 8, 8))
    with pytest.raises(TypeError, match=r"roi_align: sampling_ratio must be an int .*got 2.0"):
        ops.roi_align(x, GOOD, 2, 1.0, 2.0)
    with pytest.raises(TypeError, match=r"roi_align: aligned must be a bool, got 'yes'"):
        ops.roi_align(x, GOOD, 2, 1.0, 2, "yes")
    # adaptive sampling of an absurdly large box would need a gigantic table: refused, not tried
    with pytest.raises(ValueError, match=r"roi_align: rois\[0\] = .* needs a 1000 x 10000 sampling grid"):
        ops.roi_align(x, [[0, 0.0, 0.0, 70000.0, 7000.0]], 7, 1.0, -1)
    # inverted boxes are refused (torchvision would make them 1 x 1); empty ones are fine
    assert ops.roi_align(x, [[0, 3.0, 3.0, 3.0, 3.0]], 2).shape == (1, 1, 2, 2)


def test_compiled_kernels_check_bounds_themselves():
    """Called directly, past the Python checks, the Cython kernels still refuse a batch index out
    of range instead of reading outside the input."""
    from minimrcnn._ext import roi_align as align_ext
    from minimrcnn._ext import roi_pool as pool_ext
    x = np.zeros((2, 3, 8, 8))
    bad = np.array([[2.0, 0, 0, 4, 4]])
    with pytest.raises(ValueError, match=r"rois\[0, 0\] = 2.0 is not a batch index in \[0, 2\)"):
        align_ext.roi_align_forward(x, bad, 2, 2, 1.0, 2, False)
    with pytest.raises(ValueError, match="is not a batch index"):
        align_ext.roi_align_backward(np.zeros((1, 3, 2, 2)), bad, 2, 8, 8, 1.0, 2, False)
    with pytest.raises(ValueError, match="is not a batch index"):
        pool_ext.roi_pool_forward(x, bad, 2, 2, 1.0)
    with pytest.raises(ValueError, match=r"argmax holds indices outside"):
        pool_ext.roi_pool_backward(np.zeros((1, 3, 2, 2)), np.full((1, 3, 2, 2), 64, np.intc),
                                   np.array([[1.0, 0, 0, 4, 4]]), 2, 8, 8)


THREADS_SCRIPT = """
import sys
import numpy as np
from minimrcnn import Tensor, ops
rng = np.random.default_rng(0)
x = Tensor(rng.standard_normal((2, 9, 12, 14)).astype(np.float32), requires_grad=True)
size = rng.uniform(0, 40, (50, 2))
xy = rng.uniform(-10, 50, (50, 2))
rois = np.concatenate([rng.integers(0, 2, (50, 1)), xy, xy + size], 1)
grads = []
for op in (lambda: ops.roi_align(x, rois, 5, 0.25, -1, False), lambda: ops.roi_pool(x, rois, 5, 0.25)):
    x.grad = None
    out = op()
    out.backward(np.linspace(-1, 1, out.size, dtype=np.float32).reshape(out.shape))
    grads += [out.data, x.grad]
np.savez(sys.argv[1], *grads)
"""


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    """Forward parallelizes over RoIs and backward over channels, so every output and gradient
    element is summed in the same order whatever the thread count: bit-identical results."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for threads in (1, 3):
        out = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                   PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-c", THREADS_SCRIPT, str(out)], check=True, env=env,
                       cwd=root)
        results.append(np.load(out))
    for name in results[0].files:
        np.testing.assert_array_equal(results[0][name], results[1][name])
