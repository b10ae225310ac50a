"""conv2d, conv_transpose2d and max_pool2d against torch.nn.functional (float64), forward and
backward, on random shapes and parameter mixes drawn from a fixed seed; both our NumPy paths
(compiled and reference) are compared.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minimrcnn.autograd import Tensor  # noqa: E402
from minimrcnn.functional import conv as conv_module  # noqa: E402
from minimrcnn.functional import pooling as pooling_module  # noqa: E402
from minimrcnn.functional.conv import conv2d, conv_transpose2d  # noqa: E402
from minimrcnn.functional.pooling import max_pool2d  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(params=["compiled", "reference"])
def path(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setattr(conv_module, "_use_cpu", lambda a: False)
        monkeypatch.setattr(pooling_module, "_use_cpu", lambda a: False)
    return request.param


def _both(ours, theirs, arrays, rng, tol=TOL):
    """Same arrays into both; compare the output and every input's gradient."""
    ours_in = [Tensor(a, requires_grad=True) if a is not None else None for a in arrays]
    torch_in = [torch.tensor(np.ascontiguousarray(a), requires_grad=True) if a is not None else None
                for a in arrays]
    y, ty = ours(*ours_in), theirs(*torch_in)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), **tol)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    for k, (o, t) in enumerate(zip(ours_in, torch_in)):
        if o is not None:
            np.testing.assert_allclose(o.grad, t.grad.numpy(), err_msg=f"gradient of input {k}", **tol)


def _random_conv(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    k = tuple(int(v) for v in rng.integers(1, 6, size=2))
    s = tuple(int(v) for v in rng.integers(1, 4, size=2))
    d = tuple(int(v) for v in rng.integers(1, 3, size=2))
    p = tuple(int(rng.integers(0, k[i] + 1)) for i in range(2))
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    n = int(rng.integers(1, 3))
    h = int(rng.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 13))
    w = int(rng.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 13))
    return groups, k, s, d, p, cin, cout, n, h, w


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_parity(seed, path):
    rng = np.random.default_rng(seed)
    groups, k, s, d, p, cin, cout, n, h, w = _random_conv(rng)
    x = rng.standard_normal((n, cin, h, w + 3))[..., 1:1 + w]     # a non-contiguous view
    wt = rng.standard_normal((cout, cin // groups, *k))
    b = rng.standard_normal(cout) if seed % 3 else None
    _both(lambda x_, w_, b_: conv2d(x_, w_, b_, s, p, d, groups),
          lambda x_, w_, b_: torch.nn.functional.conv2d(x_, w_, b_, s, p, d, groups),
          [x, wt, b], rng)


@pytest.mark.parametrize("seed", range(12))
def test_conv_transpose2d_parity(seed, path):
    rng = np.random.default_rng(100 + seed)
    groups, k, s, d, p, cin, cout, n, _, _ = _random_conv(rng)
    h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    op = tuple(int(rng.integers(0, max(s[i], d[i]))) for i in range(2))
    p = tuple(min(p[i], (d[i] * (k[i] - 1) + op[i] + (h if i == 0 else w) - 1) // 2) for i in range(2))
    x = rng.standard_normal((n, cin, h, w))
    wt = rng.standard_normal((cin, cout // groups, *k))
    b = rng.standard_normal(cout) if seed % 2 else None
    _both(lambda x_, w_, b_: conv_transpose2d(x_, w_, b_, s, p, op, groups, d),
          lambda x_, w_, b_: torch.nn.functional.conv_transpose2d(x_, w_, b_, s, p, op, groups, d),
          [x, wt, b], rng)


@pytest.mark.parametrize("seed", range(12))
def test_max_pool2d_parity(seed, path):
    rng = np.random.default_rng(200 + seed)
    k = tuple(int(v) for v in rng.integers(1, 5, size=2))
    s = tuple(int(v) for v in rng.integers(1, 4, size=2))
    d = tuple(int(v) for v in rng.integers(1, 3, size=2))
    p = tuple(int(rng.integers(0, k[i] // 2 + 1)) for i in range(2))
    ceil_mode = bool(seed % 2)
    h = int(rng.integers(d[0] * (k[0] - 1) + 1, 14))
    w = int(rng.integers(d[1] * (k[1] - 1) + 1, 14))
    x = np.round(rng.standard_normal((2, 3, h, w)) * 4) / 4         # ties
    _both(lambda x_: max_pool2d(x_, k, s, p, d, ceil_mode),
          lambda x_: torch.nn.functional.max_pool2d(x_, k, s, p, d, ceil_mode),
          [x], rng)


def test_resnet_shapes_float32():
    """The shapes Mask R-CNN uses, in float32, against torch (fwd and all gradients)."""
    rng = np.random.default_rng(7)
    tol = dict(rtol=2e-4, atol=2e-4)
    x = rng.standard_normal((1, 3, 37, 45)).astype(np.float32)
    w = (rng.standard_normal((8, 3, 7, 7)) / 12).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    _both(lambda *a: conv2d(*a, stride=2, padding=3),
          lambda *a: torch.nn.functional.conv2d(*a, stride=2, padding=3), [x, w, b], rng, tol)
    x = rng.standard_normal((2, 8, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((8, 4, 2, 2)) / 4).astype(np.float32)
    _both(lambda *a: conv_transpose2d(*a, stride=2),
          lambda *a: torch.nn.functional.conv_transpose2d(*a, stride=2), [x, w, b[:4]], rng, tol)
    _both(lambda a: max_pool2d(a, 3, 2, 1), lambda a: torch.nn.functional.max_pool2d(a, 3, 2, 1),
          [x], rng, tol)
