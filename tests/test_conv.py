"""conv2d, conv_transpose2d and max_pool2d against naive loop references (float64).

Each op is checked on both of its implementations on NumPy -- the compiled CPU path and the
array-module reference path (the one CuPy uses) -- and on CuPy where a GPU exists. The
references below loop over window offsets and output pixels, straight from the definitions;
gradients are checked with an explicit upstream gradient (``y.backward(gy)``).
"""
import itertools

import numpy as np
import pytest

from minimrcnn.autograd import Tensor
from minimrcnn.backend import as_numpy, to_device
from minimrcnn.functional import conv as conv_module
from minimrcnn.functional import pooling as pooling_module
from minimrcnn.functional.conv import conv2d, conv_transpose2d
from minimrcnn.functional.pooling import max_pool2d

from .conftest import CUPY


@pytest.fixture(params=["compiled", "im2col", "reference"] + (["cupy"] if CUPY is not None else []))
def path(request, monkeypatch):
    """'compiled' (NumPy: ext/winograd.pyx for 3x3 stride 1, else ext/conv.pyx), 'im2col' (the
    compiled path without Winograd), 'reference' (NumPy through the xp code) or 'cupy'."""
    if request.param == "im2col":
        _no_winograd(monkeypatch)
    if request.param == "reference":
        monkeypatch.setattr(conv_module, "_use_cpu", lambda a: False)
        monkeypatch.setattr(pooling_module, "_use_cpu", lambda a: False)
    return request.param


def _no_winograd(monkeypatch):
    monkeypatch.setattr(conv_module._CPU, "_is_winograd", classmethod(lambda cls, *args: False))


def _tensor(a, path):
    return Tensor(to_device(a, "cuda") if path == "cupy" else a, requires_grad=True)


def _grad(t):
    return as_numpy(t.grad)


# ---- naive references ------------------------------------------------------------------------
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def naive_conv2d(x, w, b, stride, padding, dilation, groups):
    """y[n, o, ho, wo] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, g Cg + c, ho s - p + i d, wo s - p + j d]."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Og = O // groups
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, O, Ho, Wo)) + (0 if b is None else b[None, :, None, None])
    for o, ho, wo, i, j in itertools.product(range(O), range(Ho), range(Wo), range(kh), range(kw)):
        hi, wi = ho * sh - ph + i * dh, wo * sw - pw + j * dw
        if 0 <= hi < H and 0 <= wi < W:
            g = o // Og
            y[:, o, ho, wo] += x[:, g * Cg:(g + 1) * Cg, hi, wi] @ w[o, :, i, j]
    return y


def naive_conv2d_grads(x, w, gy, stride, padding, dilation, groups):
    """dx, dw of <gy, conv2d(x, w)>: every product x * w of the forward sends gy back."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Og = O // groups
    Ho, Wo = gy.shape[2:]
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for o, ho, wo, i, j in itertools.product(range(O), range(Ho), range(Wo), range(kh), range(kw)):
        hi, wi = ho * sh - ph + i * dh, wo * sw - pw + j * dw
        if 0 <= hi < H and 0 <= wi < W:
            cs = slice((o // Og) * Cg, (o // Og + 1) * Cg)
            gx[:, cs, hi, wi] += gy[:, o, ho, wo][:, None] * w[o, :, i, j][None, :]
            gw[o, :, i, j] += gy[:, o, ho, wo] @ x[:, cs, hi, wi]
    return gx, gw


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    """Each input pixel scatters x[n, c, h, v] * w[c, co] onto y[n, g Cog + co, h s - p + i d, v s - p + j d]."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    oph, opw = _pair(output_padding)
    N, C, H, W = x.shape
    _, Cog, kh, kw = w.shape
    Cg = C // groups
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y = np.zeros((N, Cog * groups, Ho, Wo)) + (0 if b is None else b[None, :, None, None])
    for c, h, v, i, j in itertools.product(range(C), range(H), range(W), range(kh), range(kw)):
        ho, wo = h * sh - ph + i * dh, v * sw - pw + j * dw
        if 0 <= ho < Ho and 0 <= wo < Wo:
            g = c // Cg
            y[:, g * Cog:(g + 1) * Cog, ho, wo] += x[:, c, h, v][:, None] * w[c, :, i, j][None, :]
    return y


def naive_max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, gy):
    """Max over each window (padding never wins), and the gradient sent to the first maximum."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride if stride is not None else kernel_size)

    def out(n, k, s, p, d):
        o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        return o - 1 if ceil_mode and (o - 1) * s >= n + p else o

    H, W = x.shape[-2:]
    Ho, Wo = out(H, kh, sh, ph, dh), out(W, kw, sw, pw, dw)
    y = np.full(x.shape[:-2] + (Ho, Wo), -np.inf)
    gx = np.zeros_like(x)
    for idx in np.ndindex(*x.shape[:-2]):
        for ho, wo in itertools.product(range(Ho), range(Wo)):
            best, at = -np.inf, None
            for i, j in itertools.product(range(kh), range(kw)):
                hi, wi = ho * sh - ph + i * dh, wo * sw - pw + j * dw
                if 0 <= hi < H and 0 <= wi < W and (at is None or x[idx + (hi, wi)] > best):
                    best, at = x[idx + (hi, wi)], (hi, wi)
            y[idx + (ho, wo)] = best
            gx[idx + at] += gy[idx + (ho, wo)]
    return y, gx


# ---- conv2d ----------------------------------------------------------------------------------
# (N, C, H, W), (O, kh, kw), stride, padding, dilation, groups, bias
CONV_CASES = [
    ((1, 3, 6, 7), (4, 3, 3), 1, 1, 1, 1, True),
    ((2, 4, 7, 9), (6, 3, 3), 2, 1, 1, 2, False),
    ((2, 4, 8, 7), (4, 1, 1), 1, 0, 1, 1, True),            # pointwise GEMM
    ((1, 4, 9, 8), (8, 1, 1), 2, 0, 1, 4, True),            # 1x1 stride 2, groups
    ((1, 3, 11, 13), (2, 7, 7), 2, 3, 1, 1, True),          # the stem's geometry
    ((2, 2, 9, 10), (3, 3, 2), (1, 2), (2, 0), (2, 3), 1, True),
    ((1, 6, 6, 6), (6, 3, 3), (3, 1), (0, 2), 1, 6, False),  # depthwise
    ((1, 2, 5, 5), (2, 5, 5), 1, 4, 2, 2, True),            # padding wider than the image
    ((1, 1, 1, 1), (1, 1, 1), 1, 0, 1, 1, True),
]


@pytest.mark.ex_conv2d_backward
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}")
def test_conv2d_matches_naive_loops(case, path):
    xs, (O, kh, kw), stride, padding, dilation, groups, has_bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((O, xs[1] // groups, kh, kw))
    b = rng.standard_normal(O) if has_bias else None
    ref = naive_conv2d(x, w, b, stride, padding, dilation, groups)
    gy = rng.standard_normal(ref.shape)

    X, Wt = _tensor(x, path), _tensor(w, path)
    B = _tensor(b, path) if has_bias else None
    y = conv2d(X, Wt, B, stride, padding, dilation, groups)
    assert y.shape == ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(as_numpy(y.data), ref, rtol=1e-10, atol=1e-10)

    y.backward(to_device(gy, "cuda") if path == "cupy" else gy)
    gx, gw = naive_conv2d_grads(x, w, gy, stride, padding, dilation, groups)
    np.testing.assert_allclose(_grad(X), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_grad(Wt), gw, rtol=1e-10, atol=1e-10)
    if has_bias:
        np.testing.assert_allclose(_grad(B), gy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)


@pytest.mark.ex_conv2d_forward
def test_conv2d_noncontiguous_input_and_float32(path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 14))[..., ::2]           # a strided view
    w = rng.standard_normal((5, 3, 3, 3))
    ref = naive_conv2d(x, w, None, 1, 1, 1, 1)
    np.testing.assert_allclose(as_numpy(conv2d(_tensor(x, path), _tensor(w, path), padding=1).data),
                               ref, rtol=1e-10, atol=1e-10)
    y32 = conv2d(_tensor(x.astype(np.float32), path), _tensor(w.astype(np.float32), path), padding=1)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(as_numpy(y32.data), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_banded_path_matches_one_band(monkeypatch):
    """Several bands of output rows (the last one short) give the same result as one band."""
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((1, 3, 23, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    gy = rng.standard_normal((1, 4, 12, 5))
    results = []
    for band in (1 << 30, 1):                                    # one band; then one row per band
        monkeypatch.setattr(conv_module._CPU, "band_bytes", band)
        monkeypatch.setattr(conv_module._CPU, "min_band_columns", 1)
        X, Wt, B = (Tensor(a, requires_grad=True) for a in (x, w, b))
        y = conv2d(X, Wt, B, stride=2, padding=1)
        y.backward(gy)
        results.append((y.data, X.grad, Wt.grad, B.grad))
    assert conv_module._CPU._bands(12, 5, 27, 1, 8)[1] == 1    # the second run really had bands
    for a, b_ in zip(*results):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_conv2d_gradient_only_where_required():
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((1, 2, 5, 5)))               # an image: no gradient wanted
    w = Tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    y = conv2d(x, w, padding=1)
    y.backward(np.ones(y.shape))
    assert x.grad is None and w.grad.shape == (3, 2, 3, 3)


# ---- several small images per GEMM (the packed path of _CPU) --------------------------------
# (N, C, H, W), (O, kh, kw), stride, padding, dilation, groups
PACKED_CASES = [
    ((5, 4, 6, 5), (6, 3, 3), 1, 1, 1, 1),                  # RoI-head-like 3x3, padding 1
    ((5, 4, 7, 6), (6, 3, 3), 2, 1, 1, 2),                  # stride 2, groups
    ((5, 3, 7, 8), (4, 3, 2), (1, 2), (2, 0), (2, 1), 1),   # dilation, uneven everything
    ((5, 6, 4, 3), (6, 3, 3), 1, 1, 1, 6),                  # depthwise
    ((5, 6, 4, 3), (9, 1, 1), 1, 0, 1, 3),                  # 1x1 pointwise (packed copies), groups
    ((5, 4, 5, 5), (6, 1, 1), 2, 0, 1, 1),                  # 1x1 stride 2 (im2col)
]


def _packed_budget(case, dtype):
    """A pack_bytes that packs exactly two images per GEMM (so: 2, 2, 1 images for N = 5)."""
    (N, C, H, W), (O, kh, kw), stride, padding, dilation, groups = case
    Ho, Wo = conv_module._conv_out_hw(H, W, kh, kw, _pair(stride), _pair(padding), _pair(dilation))
    return 2 * (C * kh * kw + O) * Ho * Wo * np.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("budget", ["all", "pairs"])
@pytest.mark.parametrize("case", PACKED_CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}")
def test_conv2d_packed_images_match_reference(case, budget, dtype, monkeypatch):
    """The compiled path with several images per GEMM (all in one, or two per GEMM and a last
    lone one) gives _Reference's forward, grad_input and grad_weight."""
    xs, (O, kh, kw), stride, padding, dilation, groups = case
    args = _pair(stride), _pair(padding), _pair(dilation), groups
    _no_winograd(monkeypatch)                  # the packing of im2col (Winograd: its own tests)
    if budget == "pairs":
        monkeypatch.setattr(conv_module._CPU, "pack_bytes", _packed_budget(case, dtype))
        monkeypatch.setattr(conv_module._CPU, "min_pack_columns", 0)
    cpu, ref = conv_module._CPU, conv_module._Reference
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((O, xs[1] // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    y_ref = ref.forward(x, w, *args) + b.reshape(1, -1, 1, 1)
    Ho, Wo = y_ref.shape[2:]
    units = cpu._units(xs[0], Ho, Wo, xs[1] * kh * kw, O, x.itemsize)[0]
    assert [n1 - n0 for n0, n1, _, _ in units] == ([5] if budget == "all" else [2, 2, 1])
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)

    y = cpu.forward(x, w, b, *args)
    gx = cpu.grad_input(gy, w, xs, *args)
    gw = cpu.grad_weight(gy, x, (kh, kw), *args)
    assert y.dtype == gx.dtype == gw.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(gx, ref.grad_input(gy, w, xs, *args), **tol)
    np.testing.assert_allclose(gw, ref.grad_weight(gy, x, (kh, kw), *args), **tol)


@pytest.mark.parametrize("budget", ["all", "tiny"])
def test_conv_transpose2d_packed_images_match_reference(budget, monkeypatch):
    """conv_transpose2d runs the same three products: several images per GEMM, or (tiny
    budget) one image per GEMM in one-row bands, both equal to the reference path."""
    if budget == "tiny":
        for name in ("band_bytes", "pack_bytes", "min_pack_columns", "min_band_columns"):
            monkeypatch.setattr(conv_module._CPU, name, 1)
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((6, 4, 4, 3)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(6)
    results = []
    for use_cpu in (True, False):
        with monkeypatch.context() as m:
            m.setattr(conv_module, "_use_cpu", lambda a, use_cpu=use_cpu: use_cpu)
            X, Wt, B = (Tensor(a, requires_grad=True) for a in (x, w, b))
            y = conv_transpose2d(X, Wt, B, stride=2, padding=1, output_padding=1, groups=2,
                                 dilation=1)
            y.backward(np.cos(np.arange(y.data.size)).reshape(y.shape))
            results.append((y.data, X.grad, Wt.grad, B.grad))
    for a, b_ in zip(*results):
        np.testing.assert_allclose(a, b_, rtol=1e-11, atol=1e-11)


def test_conv2d_pointwise_bands_match_reference(monkeypatch):
    """A 1x1 convolution of one image done in bands of rows (tiny budget) is still exact."""
    monkeypatch.setattr(conv_module._CPU, "band_bytes", 1)
    monkeypatch.setattr(conv_module._CPU, "min_band_columns", 1)
    cpu, ref = conv_module._CPU, conv_module._Reference
    rng = np.random.default_rng(7)
    x, w, gy = rng.standard_normal((1, 4, 5, 3)), rng.standard_normal((6, 4, 1, 1)), rng.standard_normal((1, 6, 5, 3))
    args = (1, 1), (0, 0), (1, 1), 1
    assert len(cpu._units(1, 5, 3, 4, 6, 8)[0]) == 5          # one unit per row
    np.testing.assert_allclose(cpu.forward(x, w, None, *args), ref.forward(x, w, *args), rtol=1e-12)
    np.testing.assert_allclose(cpu.grad_input(gy, w, x.shape, *args), ref.grad_input(gy, w, x.shape, *args),
                               rtol=1e-12)
    np.testing.assert_allclose(cpu.grad_weight(gy, x, (1, 1), *args), ref.grad_weight(gy, x, (1, 1), *args),
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_write_a_column_slice(dtype):
    """im2col fills exactly the column slice it is given (rows strided, each row contiguous)
    and col2im reads exactly that slice; a slice whose rows are not contiguous is refused."""
    from minimrcnn._ext import conv as kernels
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 4)).astype(dtype)
    geometry = (3, 3, 1, 2, 1, 1, 1, 1, 0, 2)                      # kh kw sh sw ph pw dh dw h0 Wo
    alone = np.zeros((18, 10), dtype)
    kernels.im2col(x, alone, *geometry)
    wide = np.full((18, 30), -7.0, dtype)
    kernels.im2col(x, wide[:, 10:20], *geometry)
    np.testing.assert_array_equal(wide[:, 10:20], alone)
    assert (wide[:, :10] == -7).all() and (wide[:, 20:] == -7).all()

    gx_alone, gx_wide = np.zeros_like(x), np.zeros_like(x)
    kernels.col2im(alone, gx_alone, *geometry)
    kernels.col2im(wide[:, 10:20], gx_wide, *geometry)
    np.testing.assert_array_equal(gx_wide, gx_alone)
    with pytest.raises(ValueError, match="each row of cols must be contiguous"):
        kernels.im2col(x, wide[:, ::3], *geometry)
    with pytest.raises(ValueError, match="each row of cols must be contiguous"):
        kernels.col2im(wide[:, ::3], gx_wide, *geometry)


# ---- conv_transpose2d ------------------------------------------------------------------------
# (N, C_in, H, W), (C_out/groups, kh, kw), stride, padding, output_padding, groups, dilation, bias
CONVT_CASES = [
    ((1, 3, 4, 5), (2, 2, 2), 2, 0, 0, 1, 1, True),          # mask head's 2x2 stride-2 deconv
    ((2, 4, 3, 4), (3, 4, 4), 2, 1, 0, 2, 1, False),         # 4x4 stride 2 padding 1, groups
    ((1, 2, 4, 3), (3, 3, 3), (2, 3), (1, 0), (1, 2), 1, 1, True),
    ((1, 2, 3, 3), (2, 3, 2), 1, (2, 1), 0, 1, (2, 1), True),
    ((2, 3, 5, 4), (2, 1, 1), 1, 0, 0, 1, 1, True),          # 1x1
    ((1, 2, 3, 4), (2, 3, 3), 1, 1, 1, 1, 2, True),          # output_padding >= stride
]


@pytest.mark.ex_conv2d_backward
@pytest.mark.parametrize("case", CONVT_CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-p{c[3]}-op{c[4]}-g{c[5]}")
def test_conv_transpose2d_matches_naive_loops(case, path):
    xs, (Cog, kh, kw), stride, padding, output_padding, groups, dilation, has_bias = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((xs[1], Cog, kh, kw))
    b = rng.standard_normal(Cog * groups) if has_bias else None
    ref = naive_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    gy = rng.standard_normal(ref.shape)

    X, Wt = _tensor(x, path), _tensor(w, path)
    B = _tensor(b, path) if has_bias else None
    y = conv_transpose2d(X, Wt, B, stride, padding, output_padding, groups, dilation)
    assert y.shape == ref.shape
    np.testing.assert_allclose(as_numpy(y.data), ref, rtol=1e-10, atol=1e-10)

    # its gradients are conv2d's: dx = conv2d(gy, w), and dw from the adjoint pairing
    y.backward(to_device(gy, "cuda") if path == "cupy" else gy)
    gx = naive_conv2d(gy, w, None, stride, padding, dilation, groups)[:, :, :xs[2], :xs[3]]
    _, gw = naive_conv2d_grads(gy, w, x, stride, padding, dilation, groups)
    np.testing.assert_allclose(_grad(X), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_grad(Wt), gw, rtol=1e-10, atol=1e-10)
    if has_bias:
        np.testing.assert_allclose(_grad(B), gy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)


# ---- max_pool2d ------------------------------------------------------------------------------
# shape, kernel_size, stride, padding, dilation, ceil_mode
POOL_CASES = [
    ((2, 3, 9, 10), 3, 2, 1, 1, False),                      # the stem's max pool
    ((1, 2, 5, 7), 1, 2, 0, 1, False),                       # FPN P6: kernel 1, stride 2
    ((1, 2, 7, 8), 2, None, 0, 1, True),                     # ceil_mode, odd size
    ((2, 5, 6), (2, 3), (1, 2), (1, 1), (2, 1), True),        # 3-D input, every knob
    ((1, 1, 4, 4), 4, 3, 2, 1, True),
]


@pytest.mark.ex_max_pool2d_backward
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-ceil{c[5]}")
def test_max_pool2d_matches_naive_loops(case, path):
    shape, k, s, p, d, ceil_mode = case
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(shape) * 2) / 2            # many ties: the first max must win
    X = _tensor(x, path)
    y = max_pool2d(X, k, s, p, d, ceil_mode)
    gy = rng.standard_normal(y.shape)
    ref, gx = naive_max_pool2d(x, k, s, p, d, ceil_mode, gy)
    assert y.shape == ref.shape
    np.testing.assert_array_equal(as_numpy(y.data), ref)
    y.backward(to_device(gy, "cuda") if path == "cupy" else gy)
    np.testing.assert_allclose(_grad(X), gx, rtol=1e-12, atol=1e-12)


@pytest.mark.ex_max_pool2d_backward
def test_max_pool2d_nan_and_minus_inf(path):
    x = np.array([[[[1.0, np.nan, 3.0], [-np.inf, -np.inf, 2.0]]]])
    y = max_pool2d(_tensor(x, path), 2, 1)
    np.testing.assert_array_equal(np.isnan(as_numpy(y.data)), [[[[True, True]]]])
    z = max_pool2d(_tensor(np.full((1, 1, 2, 2), -np.inf), path), 2, padding=1)
    X = z.creator.inputs[0]
    z.backward(to_device(np.ones(z.shape), "cuda") if path == "cupy" else np.ones(z.shape))
    assert np.all(as_numpy(z.data) == -np.inf) and _grad(X).sum() == z.size  # each window routes to a real pixel


# ---- bad input -------------------------------------------------------------------------------
def _f(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("call, error, words", [
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 3, 3, 3)), ValueError, "weight has 3 input channels per group but input has 4"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(3, 2, 3, 3), groups=2), ValueError, "3 output channels, not divisible by groups=2"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), _f(3)), ValueError, "bias must have shape (2,), got (3,)"),
    (lambda: conv2d(_f(4, 5, 5), _f(2, 4, 3, 3)), ValueError, "input must be 4-D"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3)), ValueError, "weight must be 4-D"),
    (lambda: conv2d(_f(1, 4, 2, 2), _f(2, 4, 3, 3)), ValueError, "output size would be 0x0"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), stride=0), ValueError, "stride must be >= 1, got 0"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), padding=(1, -1)), ValueError, "padding must be >= 0"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), dilation=(1, 2, 3)), ValueError, "dilation must be an int or a pair"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), groups=0), ValueError, "groups must be a positive int, got 0"),
    (lambda: conv2d(_f(1, 4, 5, 5, dtype=np.int64), _f(2, 4, 3, 3)), TypeError, "input must be a floating array, got dtype int64"),
    (lambda: conv2d(_f(1, 4, 5, 5, dtype=np.float32), _f(2, 4, 3, 3)), TypeError, "different dtypes"),
    (lambda: conv_transpose2d(_f(1, 4, 5, 5), _f(3, 2, 2, 2)), ValueError, "weight has 3 input channels (dim 0) but input has 4"),
    (lambda: conv_transpose2d(_f(1, 4, 5, 5), _f(4, 2, 2, 2), stride=2, output_padding=2), ValueError, "output_padding (2, 2) must be smaller"),
    (lambda: conv_transpose2d(_f(1, 3, 5, 5), _f(3, 2, 2, 2), groups=2), ValueError, "3 channels, not divisible by groups=2"),
    (lambda: conv_transpose2d(_f(1, 4, 1, 1), _f(4, 2, 1, 1), padding=1), ValueError, "output size would be -1x-1"),
    (lambda: max_pool2d(_f(1, 1, 5, 5), 3, padding=2), ValueError, "padding (2, 2) must be at most half of kernel_size (3, 3)"),
    (lambda: max_pool2d(_f(5, 5), 2), ValueError, "input must be 3-D (C, H, W) or 4-D"),
    (lambda: max_pool2d(_f(1, 1, 2, 2), 3, padding=1, dilation=2), ValueError, "output size would be"),
    (lambda: max_pool2d(_f(1, 1, 4, 4, dtype=np.int32), 2), TypeError, "got dtype int32"),
    (lambda: max_pool2d(_f(1, 1, 4, 4), 0), ValueError, "kernel_size must be >= 1, got 0"),
    # floats and sizes past int32 (the kernels' int): one clear error, not a crash or 8 TiB
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), stride=1.0), ValueError, "stride must be an int or a pair of ints, got 1.0"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), padding=(1, 0.5)), ValueError, "padding must be an int or a pair of ints, got (1, 0.5)"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), stride=2 ** 40), ValueError, "stride must be at most 2147483647, got 1099511627776"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), padding=2 ** 40), ValueError, "padding must be at most 2147483647"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), dilation=(1, 2 ** 33)), ValueError, "dilation must be at most 2147483647, got (1, 8589934592)"),
    (lambda: conv2d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), padding=2 ** 31 - 1), ValueError, "output size would be 4294967297x4294967297"),
    (lambda: conv_transpose2d(_f(1, 4, 5, 5), _f(4, 2, 2, 2), stride=2.0), ValueError, "stride must be an int or a pair of ints, got 2.0"),
    (lambda: max_pool2d(_f(1, 1, 4, 4), 2 ** 40), ValueError, "kernel_size must be at most 2147483647"),
    (lambda: max_pool2d(_f(1, 1, 4, 4), 2, stride=1.5), ValueError, "stride must be an int or a pair of ints, got 1.5"),
])
def test_bad_input_names_argument_and_value(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# ---- Winograd F(2x2, 3x3) (ext/winograd.pyx) ----------------------------------------------------
# (N, C, H, W), O, padding
WINOGRAD_CASES = [
    ((5, 4, 6, 5), 6, 1),                      # odd width: the last tile column is half outside
    ((3, 3, 7, 7), 2, (0, 2)),                 # padding 0 and 2 (grad_input pads by 2 and 0)
    ((2, 5, 9, 4), 3, (2, 1)),
    ((4, 2, 1, 1), 3, 1),                      # 1x1 images: one tile, mostly padding
    ((1, 6, 3, 8), 4, 0),                      # one output row
    ((6, 8, 14, 14), 8, 1),                    # the mask head's 14x14
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("units", ["one", "per_image", "row_bands"])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=lambda c: f"{c[0]}-O{c[1]}-p{c[2]}")
def test_winograd_matches_reference(case, units, dtype, monkeypatch):
    """Forward (with bias), grad_input and grad_weight of a 3x3 stride-1 convolution by Winograd
    equal _Reference's (im2col), with all images in one unit of tiles, one image per unit, or
    one tile row per unit (the weight gradient then sums over the units)."""
    xs, O, padding = case
    cpu, ref = conv_module._CPU, conv_module._Reference
    args = (1, 1), _pair(padding), (1, 1), 1
    Ho, Wo = xs[2] + 2 * _pair(padding)[0] - 2, xs[3] + 2 * _pair(padding)[1] - 2
    th, tw = (Ho + 1) // 2, (Wo + 1) // 2
    if units != "one":
        monkeypatch.setattr(cpu, "pack_bytes", 1)
        # at least this many tiles per GEMM: an image's (whole images), or a tile row's (bands)
        monkeypatch.setattr(cpu, "min_pack_columns", 4 * (th * tw if units == "per_image" else tw))
    found = cpu._winograd_units(xs[0], th, tw, 16 * (xs[1] + O), np.dtype(dtype).itemsize)[0]
    expected = {"one": [(0, xs[0], 0, th)], "per_image": [(n, n + 1, 0, th) for n in range(xs[0])]}
    if th * tw > tw:                 # bands of one tile row each (one-row images: whole images)
        expected["row_bands"] = [(n, n + 1, i, i + 1) for n in range(xs[0]) for i in range(th)]
    else:
        expected["row_bands"] = [(n, n + 1, 0, th) for n in range(xs[0])]
    assert found == expected[units]
    assert cpu._is_winograd(xs, (O, xs[1], 3, 3), *args)
    rng = np.random.default_rng(8)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((O, xs[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    y_ref = ref.forward(x, w, *args) + b.reshape(1, -1, 1, 1)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = cpu.forward(x, w, b, *args)
    gx = cpu.grad_input(gy, w, xs, *args)
    gw = cpu.grad_weight(gy, x, (3, 3), *args)
    assert y.dtype == gx.dtype == gw.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(gx, ref.grad_input(gy, w, xs, *args), **tol)
    np.testing.assert_allclose(gw, ref.grad_weight(gy, x, (3, 3), *args), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_flipped_weights_are_the_flipped_transposed_filters(dtype):
    """grad_input's U folds the spatial flip into G kron G and the channel transpose into a
    view: it equals the transform of w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1] built by hand."""
    w = np.random.default_rng(3).standard_normal((5, 3, 3, 3)).astype(dtype)
    U = conv_module._winograd_weights(w, flipped=True)
    assert U.shape == (16, 3, 5)
    explicit = conv_module._winograd_weights(np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]))
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(U, explicit, **tol)


@pytest.mark.parametrize("M, N, L", [(3, 7, 50), (7, 3, 50), (3, 7, 4096), (7, 3, 4096)])
def test_matmul_abt_either_way_round(M, N, L):
    """a @ b^T, whichever side BLAS multiplies first (the longer side first from 4096 pixels)."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, M, L)), rng.standard_normal((2, N, L))
    np.testing.assert_allclose(conv_module._matmul_abt(a, b), np.einsum("gml,gnl->gmn", a, b), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", [
    ((1, 4, 8, 8), (4, 4, 3, 3), (2, 2), (1, 1), (1, 1), 1),     # stride 2
    ((1, 4, 8, 8), (4, 4, 3, 3), (1, 1), (3, 3), (1, 1), 1),     # padding 3: grad_input would need -1
    ((1, 4, 8, 8), (4, 4, 3, 3), (1, 1), (1, 1), (2, 2), 1),     # dilation
    ((1, 4, 8, 8), (4, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2),     # groups
    ((1, 4, 8, 8), (4, 4, 5, 5), (1, 1), (2, 2), (1, 1), 1),     # 5x5
    ((1, 4, 8, 8), (4, 4, 3, 1), (1, 1), (1, 0), (1, 1), 1),     # 3x1
    ((1, 4, 1, 8), (4, 4, 3, 3), (1, 1), (0, 1), (1, 1), 1),     # no output row
    ((1, 512, 13, 19), (512, 512, 3, 3), (1, 1), (1, 1), (1, 1), 1),   # 70 tiles of 512 channels
])
def test_winograd_only_where_it_applies(x_shape, w_shape, stride, padding, dilation, groups):
    assert not conv_module._CPU._is_winograd(x_shape, w_shape, stride, padding, dilation, groups)


def test_winograd_kernels_check_shapes():
    from minimrcnn._ext import cpu_module
    kernels = cpu_module("winograd")
    x = _f(2, 3, 6, 5)                                   # output 6 x 5 with padding 1: 3 x 3 tiles
    with pytest.raises(ValueError, match="16 positions"):
        kernels.input_tiles(x, _f(15, 3, 2, 3, 3), 1, 1)
    with pytest.raises(ValueError, match="tiles are of 2 images of 4 channels, but .* holds 2 images of 3"):
        kernels.input_tiles(x, _f(16, 4, 2, 3, 3), 1, 1)
    with pytest.raises(ValueError, match=r"tile rows \[0, 3\) of 2 tiles do not fit an output of 6 x 5"):
        kernels.input_tiles(x, _f(16, 3, 2, 3, 2), 1, 1)
    with pytest.raises(ValueError, match=r"tile rows \[2, 4\)"):
        kernels.input_tiles(x, _f(16, 3, 2, 2, 3), 1, 1, 2)
    with pytest.raises(ValueError, match=r"tile rows \[-1, 1\)"):
        kernels.input_tiles(x, _f(16, 3, 2, 2, 3), 1, 1, -1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        kernels.input_tiles(x, _f(16, 3, 2, 2, 2), -1, 1)
    y = _f(2, 4, 6, 5)
    with pytest.raises(ValueError, match="bias has 3 values for 4 output channels"):
        kernels.output_tiles(_f(16, 4, 2, 3, 3), y, _f(3))
    with pytest.raises(ValueError, match="do not fit an output of 6 x 5"):
        kernels.output_tiles(_f(16, 4, 2, 4, 3), y, _f(0))
    with pytest.raises(ValueError, match=r"tile rows \[1, 4\)"):
        kernels.gradient_tiles(y, _f(16, 4, 2, 3, 3), 1)
    with pytest.raises(ValueError, match="tiles are of 3 images of 4 channels, but .* holds 2 images of 4"):
        kernels.gradient_tiles(y, _f(16, 4, 3, 3, 3))


def test_compiled_kernels_check_shapes():
    from minimrcnn._ext import conv as kernels
    x, cols = _f(2, 5, 5), _f(17, 10)
    with pytest.raises(ValueError, match="cols has 17 rows but C\\*kh\\*kw = 2\\*3\\*3 = 18"):
        kernels.im2col(x, cols, 3, 3, 1, 1, 1, 1, 1, 1, 0, 5)
    with pytest.raises(ValueError, match="not a whole number of rows"):
        kernels.col2im(_f(18, 7), x, 3, 3, 1, 1, 1, 1, 1, 1, 0, 5)
