"""Parity of the core ops with torch (float64): forward values and the gradient of every
floating input under a random upstream gradient.

Each test builds both sides from the same NumPy arrays with :func:`check`: floating arrays
become leaves that require grad (ours keep the array as given, so non-contiguous views reach
our ops as views; torch gets a contiguous copy), integer and boolean arrays are passed through
unchanged to both lambdas.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minimrcnn as mr  # noqa: E402
from minimrcnn import functional as F  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12


# ---- harness -------------------------------------------------------------------------------
def _outs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(ours, theirs, *arrays, seed=0, rtol=RTOL, atol=ATOL):
    """Run ``ours`` on mr.Tensors and ``theirs`` on torch tensors built from ``arrays``;
    compare outputs, then the gradients of every floating input for a random upstream grad."""
    floating = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    before = [a.copy() if f else None for a, f in zip(arrays, floating)]
    ours_in = [mr.Tensor(a, requires_grad=True) if f else a for a, f in zip(arrays, floating)]
    torch_in = [torch.tensor(np.array(a, order="C"), requires_grad=True) if f else a
                for a, f in zip(arrays, floating)]

    out_o, out_t = _outs(ours(*ours_in)), _outs(theirs(*torch_in))
    assert len(out_o) == len(out_t), f"{len(out_o)} outputs vs torch's {len(out_t)}"
    for k, (o, t) in enumerate(zip(out_o, out_t)):
        assert isinstance(o, mr.Tensor), f"output {k} is a {type(o).__name__}, not a Tensor"
        assert o.shape == tuple(t.shape), f"output {k}: shape {o.shape} vs torch {tuple(t.shape)}"
        assert o.dtype == np.float64, f"output {k}: dtype {o.dtype}, expected float64"
        np.testing.assert_allclose(o.data, t.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"forward output {k}")
    for a, b in zip(arrays, before):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg="forward modified its input in place")

    rng = np.random.default_rng(1000 + seed)
    grads = [rng.standard_normal(tuple(t.shape)) for t in out_t]
    if len(out_o) == 1:
        out_o[0].backward(grads[0])
    else:
        total = None
        for o, g in zip(out_o, grads):
            term = F.sum(o * mr.Tensor(g))
            total = term if total is None else total + term
        total.backward()
    torch.autograd.backward(out_t, [torch.tensor(g) for g in grads])

    for i, f in enumerate(floating):
        if not f:
            continue
        xo, xt = ours_in[i], torch_in[i]
        expected = xt.grad.numpy() if xt.grad is not None else np.zeros(arrays[i].shape)
        assert xo.grad is not None, f"input {i}: no gradient (torch has one)"
        assert xo.grad.shape == arrays[i].shape, f"input {i}: grad shape {xo.grad.shape} vs {arrays[i].shape}"
        assert xo.grad.dtype == np.float64, f"input {i}: grad dtype {xo.grad.dtype}"
        np.testing.assert_allclose(xo.grad, expected, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")


def rn(*shape, seed=0):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape))


def positive(*shape, seed=0):
    return np.asarray(np.random.default_rng(seed).uniform(0.5, 2.0, shape))


def away_from_zero(*shape, seed=0):
    r = np.random.default_rng(seed)
    return np.asarray(r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape))


def noncontig(*shape, seed=0):
    """A non-contiguous (strided, transposed) view of the given shape."""
    if len(shape) == 1:
        return rn(2 * shape[0], seed=seed)[::2]
    # big has shape (reversed(shape[:-1])..., 2*last): reverse the leading axes, stride the last
    big = rn(*reversed(shape[:-1]), 2 * shape[-1], seed=seed)
    v = np.moveaxis(big, tuple(range(len(shape) - 1)), tuple(reversed(range(len(shape) - 1))))
    v = v[..., ::2]
    assert v.shape == shape and not v.flags.c_contiguous
    return v


def ties(*shape, seed=0, levels=3):
    """Small integers as floats: many exact ties."""
    return np.random.default_rng(seed).integers(0, levels, shape).astype(np.float64)


# ---- binary elementwise ops ----------------------------------------------------------------
BINARY = {
    "add": (F.add, torch.add),
    "sub": (F.sub, torch.sub),
    "mul": (F.mul, torch.mul),
    "div": (F.div, torch.div),
    "maximum": (F.maximum, torch.maximum),
    "minimum": (F.minimum, torch.minimum),
    "op+": (lambda a, b: a + b, lambda a, b: a + b),
    "op-": (lambda a, b: a - b, lambda a, b: a - b),
    "op*": (lambda a, b: a * b, lambda a, b: a * b),
    "op/": (lambda a, b: a / b, lambda a, b: a / b),
}
BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (3, 4)), ((2, 1, 4), (3, 1)),
                 ((2, 3, 4), (2, 1, 4)), ((), (3, 2)), ((5,), ()), ((1,), (2, 3))]


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcast(name, shapes):
    ours, theirs = BINARY[name]
    a = rn(*shapes[0], seed=1)
    b = away_from_zero(*shapes[1], seed=2) if "div" in name or name == "op/" else rn(*shapes[1], seed=2)
    check(ours, theirs, a, b)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_noncontiguous(name):
    ours, theirs = BINARY[name]
    a = noncontig(3, 4, seed=3)
    make = away_from_zero if "div" in name or name == "op/" else rn
    b = make(8, 3, seed=4)[::2].T        # (3, 4), strided and transposed
    check(ours, theirs, a, b)


SCALAR_OPS = {
    "x*2": (lambda x: x * 2.0, lambda x: x * 2.0),
    "2*x": (lambda x: 2.0 * x, lambda x: 2.0 * x),
    "x+1.5": (lambda x: x + 1.5, lambda x: x + 1.5),
    "1.5+x": (lambda x: 1.5 + x, lambda x: 1.5 + x),
    "x-0.5": (lambda x: x - 0.5, lambda x: x - 0.5),
    "2-x": (lambda x: 2.0 - x, lambda x: 2.0 - x),
    "x/3": (lambda x: x / 3.0, lambda x: x / 3.0),
    "1/x": (lambda x: 1 / x, lambda x: 1 / x),
    "x*int": (lambda x: x * 3, lambda x: x * 3),
    "-x": (lambda x: -x, lambda x: -x),
    "x**2": (lambda x: x ** 2, lambda x: x ** 2),
    "x**3": (lambda x: x ** 3, lambda x: x ** 3),
    "x**-1.5": (lambda x: abs_(x) ** -1.5, lambda x: x.abs() ** -1.5),
    "x**0.5": (lambda x: abs_(x) ** 0.5, lambda x: x.abs() ** 0.5),
    "pow(x,1)": (lambda x: F.pow(x, 1), lambda x: torch.pow(x, 1)),
    "max(x,0.3)": (lambda x: F.maximum(x, 0.3), lambda x: torch.clamp(x, min=0.3)),
    "min(0.3,x)": (lambda x: F.minimum(0.3, x), lambda x: torch.clamp(x, max=0.3)),
    "add(1,x)": (lambda x: F.add(1.0, x), lambda x: 1.0 + x),
    "sub(1,x)": (lambda x: F.sub(1.0, x), lambda x: 1.0 - x),
    "div(x,4)": (lambda x: F.div(x, 4.0), lambda x: x / 4.0),
    "div(4,x)": (lambda x: F.div(4.0, x), lambda x: 4.0 / x),
}


def abs_(x):
    return F.abs(x)


@pytest.mark.parametrize("name", list(SCALAR_OPS))
def test_scalar_operand(name):
    ours, theirs = SCALAR_OPS[name]
    check(ours, theirs, away_from_zero(3, 4, seed=5))


def test_scalar_operand_noncontiguous_and_0d():
    check(lambda x: 2.0 - x * 3.0, lambda x: 2.0 - x * 3.0, noncontig(2, 3, 4))
    check(lambda x: 1 / x + x ** 2, lambda x: 1 / x + x ** 2, away_from_zero(seed=7))


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_gradient(fn):
    # torch gives each side half of the gradient where a == b
    a = ties(4, 5, seed=1)
    b = ties(4, 5, seed=2)
    assert (a == b).any() and (a != b).any()
    check(getattr(F, fn), getattr(torch, fn), a, b)
    # ties under broadcasting: a row against a matrix (gradients of the row are sums)
    check(getattr(F, fn), getattr(torch, fn), ties(3, 4, seed=3), ties(4, seed=4))
    # ties against itself: both gradients get exactly half
    x = rn(3, 3)
    ours_x = mr.Tensor(x, requires_grad=True)
    out = getattr(F, fn)(ours_x, ours_x)
    out.backward(np.ones((3, 3)))
    np.testing.assert_allclose(ours_x.grad, np.ones((3, 3)))


def test_maximum_tie_half_explicit():
    a = mr.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = mr.Tensor(np.array([1.0, 1.0, 4.0]), requires_grad=True)
    F.maximum(a, b).backward(np.array([2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(a.grad, [1.0, 2.0, 0.0])
    np.testing.assert_array_equal(b.grad, [1.0, 0.0, 2.0])


# ---- unary elementwise ops -----------------------------------------------------------------
UNARY = {
    "exp": (F.exp, torch.exp, rn),
    "log": (F.log, torch.log, positive),
    "sqrt": (F.sqrt, torch.sqrt, positive),
    "abs": (F.abs, torch.abs, away_from_zero),
    "neg": (F.neg, torch.neg, rn),
    "relu": (F.relu, torch.relu, rn),
    "sigmoid": (F.sigmoid, torch.sigmoid, lambda *s, seed=0: np.asarray(rn(*s, seed=seed) * 6)),
    "tanh": (F.tanh, torch.tanh, lambda *s, seed=0: np.asarray(rn(*s, seed=seed) * 3)),
    "x.exp()": (lambda x: x.exp(), lambda x: x.exp(), rn),
    "x.log()": (lambda x: x.log(), lambda x: x.log(), positive),
    "x.sqrt()": (lambda x: x.sqrt(), lambda x: x.sqrt(), positive),
    "x.abs()": (lambda x: x.abs(), lambda x: x.abs(), away_from_zero),
    "x.relu()": (lambda x: x.relu(), lambda x: x.relu(), rn),
    "x.sigmoid()": (lambda x: x.sigmoid(), lambda x: x.sigmoid(), rn),
    "x.tanh()": (lambda x: x.tanh(), lambda x: x.tanh(), rn),
}


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, shape):
    ours, theirs, make = UNARY[name]
    check(ours, theirs, make(*shape, seed=11))


@pytest.mark.parametrize("name", ["exp", "neg", "relu", "sigmoid", "tanh"])
def test_unary_noncontiguous(name):
    ours, theirs, _ = UNARY[name]
    check(ours, theirs, noncontig(3, 2, 4, seed=12))


def test_relu_and_abs_at_zero():
    # torch: relu'(0) = 0 and abs'(0) = sgn(0) = 0
    x = np.array([-1.0, 0.0, 0.0, 2.0, -0.0])
    check(F.relu, torch.relu, x)
    check(F.abs, torch.abs, x)


def test_sigmoid_wide_range():
    x = np.linspace(-30, 30, 41)
    check(F.sigmoid, torch.sigmoid, x)


def test_log_sqrt_values_close_to_zero():
    x = np.array([1e-6, 1e-3, 0.5, 10.0, 1e6])
    check(F.log, torch.log, x)
    check(F.sqrt, torch.sqrt, x)


@pytest.mark.parametrize("p", [2, 3, -1, 0.5, 2.5, -0.5, 1])
def test_pow_exponents(p):
    x = positive(3, 4, seed=13)
    check(lambda t: F.pow(t, p), lambda t: torch.pow(t, p), x)
    check(lambda t: t ** p, lambda t: t ** p, x)


@pytest.mark.parametrize("p", [2, 3, -1])
def test_pow_integer_exponent_negative_base(p):
    check(lambda t: t ** p, lambda t: t ** p, away_from_zero(3, 4, seed=14))


def test_pow_zero_exponent_is_constant():
    # d/dx x**0 = 0 everywhere in torch, also at x = 0 (not 0 * 0**-1 = nan)
    check(lambda t: t ** 0, lambda t: t ** 0, np.array([0.0, 1.0, -2.0, 3.5]))


# ---- clamp / where -------------------------------------------------------------------------
@pytest.mark.parametrize("bounds", [(-0.5, 0.7), (-0.5, None), (None, 0.7), (0.0, 0.0)], ids=str)
def test_clamp(bounds):
    lo, hi = bounds
    x = rn(4, 5, seed=15)
    check(lambda t: F.clamp(t, lo, hi), lambda t: torch.clamp(t, lo, hi), x)
    check(lambda t: t.clamp(min=lo, max=hi), lambda t: t.clamp(min=lo, max=hi), noncontig(4, 5, seed=16))


def test_clamp_values_on_the_bounds():
    """At x == min or x == max the gradient is 0 (the minimum-norm subgradient): clamp(x, lo, hi)
    is hardtanh(x, lo, hi) and clamp(x, min=lo) is relu(x - lo) + lo, and torch's hardtanh and
    relu (like our own relu) give 0 at the kink. torch >= 2.15's clamp does the same (older
    torch returned 1 there), so the references here are hardtanh and relu, stable across
    versions."""
    tnf = torch.nn.functional
    x = np.array([-1.0, -0.5, 0.0, 0.7, 1.0, 0.7, -0.5])
    check(lambda t: F.clamp(t, -0.5, 0.7), lambda t: tnf.hardtanh(t, -0.5, 0.7), x)
    check(lambda t: F.clamp(t, min=-0.5), lambda t: torch.relu(t + 0.5) - 0.5, x)
    check(lambda t: F.clamp(t, max=0.7), lambda t: 0.7 - torch.relu(0.7 - t), x)


def test_clamp_min_zero_matches_relu():
    x = np.array([-1.0, 0.0, 2.0])
    a, b = mr.Tensor(x, requires_grad=True), mr.Tensor(x, requires_grad=True)
    F.clamp(a, min=0.0).backward(np.ones(3))
    F.relu(b).backward(np.ones(3))
    np.testing.assert_array_equal(a.grad, b.grad)


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), (3, 1)),
                                    ((2, 1, 4), (3, 4), ()), ((4,), (3, 4), (3, 4))], ids=str)
def test_where(shapes):
    cs, sa, sb = shapes
    cond = np.random.default_rng(17).random(cs) < 0.5
    a, b = rn(*sa, seed=18), rn(*sb, seed=19)
    check(lambda x, y: F.where(cond, x, y), lambda x, y: torch.where(torch.tensor(cond), x, y), a, b)


def test_where_scalar_operand():
    cond = np.random.default_rng(20).random((3, 4)) < 0.5
    check(lambda x: F.where(cond, x, 0.0), lambda x: torch.where(torch.tensor(cond), x, 0.0), rn(3, 4))
    check(lambda x: F.where(cond, 1.5, x), lambda x: torch.where(torch.tensor(cond), 1.5, x), rn(3, 4))


# ---- softmax / log_softmax -----------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1, -2])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax(fn, dim):
    ours = lambda x: getattr(F, fn)(x, dim=dim)  # noqa: E731
    theirs = lambda x: getattr(torch, fn)(x, dim=dim)  # noqa: E731
    check(ours, theirs, rn(3, 4, 5, seed=21))
    check(ours, theirs, noncontig(3, 4, 5, seed=22))


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_large_logits(fn):
    x = rn(4, 6, seed=23) * 1000.0
    x[0, :] = 1e4          # a row with all ties
    x[1, 2] = -1e5
    check(lambda t: getattr(F, fn)(t, dim=1), lambda t: getattr(torch, fn)(t, dim=1), x, rtol=1e-9)
    check(lambda t: getattr(t, fn)(-1), lambda t: getattr(t, fn)(-1), x, rtol=1e-9)


def test_log_softmax_default_dim_is_last():
    check(F.log_softmax, lambda t: torch.log_softmax(t, dim=-1), rn(2, 3, 4))
    check(F.softmax, lambda t: torch.softmax(t, dim=-1), rn(2, 3, 4))


# ---- cast ----------------------------------------------------------------------------------
def test_cast_roundtrip():
    x = rn(3, 4, seed=24)
    # float64 -> float32 -> float64: forward rounds, the gradient passes through and is cast back
    check(lambda t: F.cast(F.cast(t, np.float32), np.float64) * t,
          lambda t: t.to(torch.float32).to(torch.float64) * t, x)
    check(lambda t: t.astype(np.float32).astype(np.float64),
          lambda t: t.to(torch.float32).to(torch.float64), x)


def test_cast_gradient_dtype():
    x = mr.Tensor(rn(3), requires_grad=True)
    y = F.cast(x, np.float32)
    assert y.dtype == np.float32 and y.requires_grad
    y.backward(np.ones(3, np.float32))
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, np.ones(3))


# ---- reductions ----------------------------------------------------------------------------
REDUCE_DIMS = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


def _torch_reduce(name, t, dim, keepdim):
    if dim is None:
        out = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax, "min": torch.amin}[name](t)
        if keepdim:
            out = out.reshape((1,) * t.ndim)
        return out
    fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax, "min": torch.amin}[name]
    return fn(t, dim=dim, keepdim=keepdim)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", REDUCE_DIMS, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reduction(name, dim, keepdim):
    ours = lambda x: getattr(F, name)(x, dim=dim, keepdim=keepdim)  # noqa: E731
    theirs = lambda x: _torch_reduce(name, x, dim, keepdim)  # noqa: E731
    check(ours, theirs, rn(2, 3, 4, seed=25))
    check(ours, theirs, noncontig(2, 3, 4, seed=26))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 1)], ids=str)
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_ties_split_evenly(name, dim, keepdim):
    # like torch.amax / amin: the gradient is shared equally among the tied extremes
    x = ties(4, 5, seed=27, levels=3)
    ours = lambda t: getattr(F, name)(t, dim=dim, keepdim=keepdim)  # noqa: E731
    theirs = lambda t: _torch_reduce(name, t, dim, keepdim)  # noqa: E731
    check(ours, theirs, x)


def test_max_full_reduction_all_equal():
    x = np.full((3, 4), 2.0)
    check(F.max, torch.amax, x)
    check(F.min, torch.amin, x)
    check(F.max, lambda t: t.max(), x)   # torch.max(x) without dim also splits evenly


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reduction_methods(name):
    x = rn(3, 4, 5, seed=28)
    check(lambda t: getattr(t, name)(), lambda t: _torch_reduce(name, t, None, False), x)
    check(lambda t: getattr(t, name)(1), lambda t: _torch_reduce(name, t, 1, False), x)
    check(lambda t: getattr(t, name)(-1, keepdim=True), lambda t: _torch_reduce(name, t, -1, True), x)
    check(lambda t: getattr(t, name)(dim=(0, -1)), lambda t: _torch_reduce(name, t, (0, -1), False), x)


def test_reduction_1d_and_0d():
    check(F.sum, torch.sum, rn(7))
    check(lambda t: F.mean(t, dim=0), lambda t: torch.mean(t, dim=0), rn(7))
    check(lambda t: F.max(t, dim=0, keepdim=True), lambda t: torch.amax(t, dim=0, keepdim=True), rn(7))
    check(F.sum, torch.sum, rn())


# ---- shape ops -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 6), (24,), (2, -1), (-1, 3, 2), (1, 2, 1, 12)], ids=str)
def test_reshape(shape):
    check(lambda t: F.reshape(t, shape), lambda t: t.reshape(shape), rn(2, 3, 4))
    check(lambda t: t.reshape(*shape), lambda t: t.reshape(*shape), noncontig(2, 3, 4))
    check(lambda t: t.view(shape), lambda t: t.reshape(shape), rn(2, 3, 4))


@pytest.mark.parametrize("se", [(0, -1), (1, -1), (0, 1), (1, 2), (-2, -1), (2, 2)], ids=str)
def test_flatten(se):
    s, e = se
    check(lambda t: F.flatten(t, s, e), lambda t: torch.flatten(t, s, e), rn(2, 3, 4, 2))
    check(lambda t: t.flatten(s, e), lambda t: t.flatten(s, e), noncontig(2, 3, 4, 2))


def test_flatten_default():
    check(F.flatten, torch.flatten, rn(2, 3, 4))
    check(lambda t: t.flatten(1), lambda t: t.flatten(1), rn(2, 3, 4))


@pytest.mark.parametrize("dims", [(0, 1), (1, 2), (-1, 0), (-2, -1), (2, 2)], ids=str)
def test_transpose(dims):
    check(lambda t: F.transpose(t, *dims), lambda t: torch.transpose(t, *dims), rn(2, 3, 4))
    check(lambda t: t.transpose(*dims), lambda t: t.transpose(*dims), noncontig(2, 3, 4))


@pytest.mark.parametrize("dims", [(2, 0, 1), (0, 1, 2), (1, 2, 0), (-1, 0, -2), (2, 1, 0)], ids=str)
def test_permute(dims):
    check(lambda t: F.permute(t, dims), lambda t: t.permute(dims), rn(2, 3, 4))
    check(lambda t: t.permute(*dims), lambda t: t.permute(*dims), noncontig(2, 3, 4))


def test_T_property():
    check(lambda t: t.T, lambda t: t.permute(2, 1, 0), rn(2, 3, 4))
    check(lambda t: t.T, lambda t: t.T, rn(3, 5))


@pytest.mark.parametrize("dim", [0, 2, -1, -3])
def test_squeeze(dim):
    x = rn(1, 3, 1, 1, seed=29)
    d = {0: 0, 2: 2, -1: -1, -3: -2}[dim]     # a dim of size 1 for each case
    check(lambda t: F.squeeze(t, d), lambda t: torch.squeeze(t, d), x)
    check(lambda t: t.squeeze(d), lambda t: t.squeeze(d), x)


@pytest.mark.parametrize("dim", [0, 1, 3, -1, -4, -2])
def test_unsqueeze(dim):
    check(lambda t: F.unsqueeze(t, dim), lambda t: torch.unsqueeze(t, dim), rn(2, 3, 4))
    check(lambda t: t.unsqueeze(dim), lambda t: t.unsqueeze(dim), noncontig(2, 3, 4))


@pytest.mark.parametrize("shapes", [((3, 1), (2, 3, 4)), ((1,), (5,)), ((2, 1, 4), (2, 3, 4)),
                                    ((), (2, 3)), ((3, 4), (3, 4)), ((4,), (2, 3, 4))], ids=str)
def test_expand(shapes):
    src, dst = shapes
    check(lambda t: F.expand(t, dst), lambda t: t.expand(dst), rn(*src))
    check(lambda t: t.expand(*dst), lambda t: t.expand(*dst), rn(*src))


def test_expand_minus_one_keeps_size():
    # torch.Tensor.expand: -1 means "keep this dimension's size"
    check(lambda t: t.expand(2, -1, 4), lambda t: t.expand(2, -1, 4), rn(3, 1))
    check(lambda t: F.expand(t, (-1, 5)), lambda t: t.expand(-1, 5), rn(3, 1))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_concat(dim):
    sizes = [1, 4, 2]
    shapes = []
    for s in sizes:
        shape = [2, 3, 5]
        shape[dim] = s
        shapes.append(tuple(shape))
    arrays = [rn(*sh, seed=30 + k) for k, sh in enumerate(shapes)]
    arrays[1] = noncontig(*shapes[1], seed=40)
    check(lambda *ts: F.concat(list(ts), dim=dim), lambda *ts: torch.cat(ts, dim=dim), *arrays)
    check(lambda *ts: F.cat(ts, dim), lambda *ts: torch.cat(ts, dim), *arrays)


def test_concat_single_and_reused():
    check(lambda t: F.concat([t], dim=0), lambda t: torch.cat([t], dim=0), rn(2, 3))
    check(lambda t: F.concat([t, t * 2.0, t], dim=1), lambda t: torch.cat([t, t * 2.0, t], dim=1), rn(2, 3))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_stack(dim):
    arrays = [rn(3, 4, seed=50), noncontig(3, 4, seed=51), rn(3, 4, seed=52)]
    check(lambda *ts: F.stack(list(ts), dim=dim), lambda *ts: torch.stack(ts, dim=dim), *arrays)


@pytest.mark.parametrize("spec", [(2, 1), (3, 0), (1, -1), ([1, 3, 1], 1), ([2, 0, 3], -2), (5, 1), (10, 1)],
                         ids=str)
def test_split(spec):
    sizes, dim = spec
    x = rn(3, 5, 4, seed=53)
    check(lambda t: F.split(t, sizes, dim=dim), lambda t: torch.split(t, sizes, dim=dim), x)


def test_split_one_chunk_used():
    # only one output feeds the loss: the others' gradient is zero
    x = rn(4, 6)
    check(lambda t: F.split(t, 4, dim=1)[1] * 2.0, lambda t: torch.split(t, 4, dim=1)[1] * 2.0, x)


# ---- getitem -------------------------------------------------------------------------------
def _to_torch_index(index):
    def conv(i):
        if isinstance(i, np.ndarray):
            return torch.from_numpy(i)
        if isinstance(i, list):
            return torch.tensor(i)
        return i
    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


_rng_masks = np.random.default_rng(60)
MASK_2D = _rng_masks.random((4, 5)) < 0.5
MASK_ROWS = np.array([True, False, True, True])
MASK_COLS = np.array([False, True, True, False, True])

GETITEM = {
    "int": 1,
    "neg_int": -1,
    "slice": slice(1, 3),
    "slice_step": (slice(None), slice(1, 5, 2)),
    "int_and_slice": (2, slice(0, None, 2)),
    "ellipsis": (Ellipsis, 0),
    "newaxis": (None, slice(1, 3)),
    "newaxis_middle": (slice(None), None, 1),
    "int_array_repeats": np.array([0, 2, 2, 1, 0, 3]),
    "list_repeats": [3, 3, 0],
    "neg_index_array": np.array([-1, 0, -1]),
    "two_arrays_repeats": (np.array([0, 1, 1, 3]), np.array([2, 2, 2, 0])),
    "array_2d": np.array([[0, 1], [1, 1], [3, 0]]),
    "array_and_slice": (np.array([0, 2, 2]), slice(1, 4)),
    "int_and_array": (1, np.array([0, 0, 4, 2])),
    "bool_mask_2d": MASK_2D,
    "bool_mask_rows": MASK_ROWS,
    "bool_mask_cols": (slice(None), MASK_COLS),
    "empty_mask": np.zeros((4, 5), bool),
}


@pytest.mark.parametrize("name", list(GETITEM))
def test_getitem(name):
    index = GETITEM[name]
    tindex = _to_torch_index(index)
    check(lambda t: t[index], lambda t: t[tindex], rn(4, 5, seed=61))
    check(lambda t: F.getitem(t, index), lambda t: t[tindex], noncontig(4, 5, seed=62))


def test_getitem_3d_mixed():
    x = rn(3, 4, 5, seed=63)
    idx = (slice(None), np.array([1, 1, 3]), slice(None, None, 2))
    check(lambda t: t[idx], lambda t: t[_to_torch_index(idx)], x)
    idx = (Ellipsis, np.array([4, 0, 4]))
    check(lambda t: t[idx], lambda t: t[_to_torch_index(idx)], x)
    m = x[..., 0] > 0
    check(lambda t: t[m], lambda t: t[torch.from_numpy(m)], x)


@pytest.mark.parametrize("case", ["rows", "cols", "both", "step2"])
def test_getitem_negative_steps(case):
    # numpy allows negative steps; torch expresses them with flip
    x = rn(4, 5, seed=64)
    ours = {"rows": lambda t: t[::-1], "cols": lambda t: t[:, ::-1], "both": lambda t: t[::-1, ::-1],
            "step2": lambda t: t[:, ::-2]}[case]
    theirs = {"rows": lambda t: t.flip(0), "cols": lambda t: t.flip(1), "both": lambda t: t.flip(0, 1),
              "step2": lambda t: t.flip(1)[:, ::2]}[case]
    check(ours, theirs, x)
    check(ours, theirs, noncontig(4, 5, seed=65))


def test_getitem_tensor_index():
    idx = np.array([2, 0, 2])
    check(lambda t: t[mr.Tensor(idx)], lambda t: t[torch.from_numpy(idx)], rn(3, 4))
    check(lambda t: t[mr.Tensor(MASK_ROWS[:3])], lambda t: t[torch.from_numpy(MASK_ROWS[:3])], rn(3, 4))
    check(lambda t: t[mr.Tensor(idx), 1], lambda t: t[torch.from_numpy(idx), 1], rn(3, 4))


# ---- gather --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dim1_repeats", "dim0", "dim_neg1_3d", "dim1_3d", "wider_index"])
def test_gather(case):
    r = np.random.default_rng(70)
    if case == "dim1_repeats":
        x, dim, idx = rn(3, 4), 1, np.array([[0, 0, 2], [1, 3, 3], [2, 1, 0]])
    elif case == "dim0":
        x, dim, idx = rn(3, 4), 0, r.integers(0, 3, (5, 4))
    elif case == "dim_neg1_3d":
        x, dim, idx = noncontig(2, 3, 4), -1, r.integers(0, 4, (2, 3, 6))
    elif case == "dim1_3d":
        x, dim, idx = rn(2, 3, 4), 1, r.integers(0, 3, (2, 2, 4))
    else:
        x, dim, idx = rn(2, 3), 1, r.integers(0, 3, (2, 7))
    check(lambda t, i: F.gather(t, dim, i), lambda t, i: torch.gather(t, dim, torch.from_numpy(i)), x, idx)


def test_gather_index_smaller_than_input():
    # torch.gather only needs index.size(d) <= input.size(d) for d != dim
    x = rn(3, 4)
    idx = np.array([[0, 1, 2], [1, 1, 0]])
    check(lambda t, i: F.gather(t, 1, i), lambda t, i: torch.gather(t, 1, torch.from_numpy(i)), x, idx)


# ---- pad -----------------------------------------------------------------------------------
@pytest.mark.parametrize("padding,shape", [((1, 2), (3, 4)), ((1, 2, 0, 1), (2, 2, 3, 3)),
                                           ((0, 0, 2, 1), (2, 3, 4)), ((1, 1, 1, 1, 1, 1), (2, 3, 4)),
                                           ((3, 0), (5,)), ((0, 0), (2, 3))], ids=str)
@pytest.mark.parametrize("value", [0.0, 0.5])
def test_pad(padding, shape, value):
    tnf = torch.nn.functional
    check(lambda t: F.pad(t, padding, value=value), lambda t: tnf.pad(t, padding, value=value), rn(*shape))
    check(lambda t: F.pad(t, padding, "constant", value), lambda t: tnf.pad(t, padding, "constant", value),
          noncontig(*shape) if len(shape) > 1 else rn(*shape))


# ---- matmul / linear -----------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
                                    ((3, 4), (2, 4, 5)), ((4, 1, 3, 4), (2, 4, 5)), ((1, 1), (1, 1))],
                         ids=str)
def test_matmul(shapes):
    sa, sb = shapes
    check(F.matmul, torch.matmul, rn(*sa, seed=80), rn(*sb, seed=81))
    check(lambda a, b: a @ b, lambda a, b: a @ b, rn(*sa, seed=82), rn(*sb, seed=83))
    check(lambda a, b: a.matmul(b), lambda a, b: a.matmul(b), rn(*sa, seed=84), rn(*sb, seed=85))


def test_matmul_noncontiguous():
    a = rn(4, 3, seed=86).T          # (3, 4), transposed view
    b = noncontig(4, 5, seed=87)
    check(F.matmul, torch.matmul, a, b)
    check(lambda a, b: a @ b, lambda a, b: a @ b, noncontig(2, 3, 4, seed=88), rn(5, 4, seed=89).T)


def test_matmul_same_operand():
    check(lambda a: a @ a.T, lambda a: a @ a.T, rn(3, 4))


@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (4,), (2, 1, 3, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape, bias):
    tnf = torch.nn.functional
    x, w, b = rn(*x_shape, seed=90), rn(3, 4, seed=91), rn(3, seed=92)
    if bias:
        check(F.linear, tnf.linear, x, w, b)
    else:
        check(F.linear, tnf.linear, x, w)


def test_linear_noncontiguous():
    tnf = torch.nn.functional
    check(F.linear, tnf.linear, noncontig(2, 3, 4, seed=93), rn(6, 4, seed=94), rn(6, seed=95))
    check(F.linear, tnf.linear, rn(5, 4), rn(4, 3, seed=96).T, rn(6, seed=97)[::2])


# ---- compositions --------------------------------------------------------------------------
def test_composite_graph():
    """A small network-like graph reusing nodes: softmax cross-entropy over a linear layer."""
    tnf = torch.nn.functional
    labels = np.array([0, 2, 1, 2, 0])

    def ours(x, w, b):
        h = F.relu(F.linear(x, w, b))
        logp = F.log_softmax(h * 2.0 - h.mean(dim=0, keepdim=True), dim=1)
        picked = F.gather(logp, 1, labels[:, None])
        return -picked.mean() + 0.1 * (w * w).sum() + F.max(h, dim=1).sum() / 3.0

    def theirs(x, w, b):
        h = torch.relu(tnf.linear(x, w, b))
        logp = torch.log_softmax(h * 2.0 - h.mean(dim=0, keepdim=True), dim=1)
        picked = torch.gather(logp, 1, torch.from_numpy(labels[:, None]))
        return -picked.mean() + 0.1 * (w * w).sum() + torch.amax(h, dim=1).sum() / 3.0

    check(ours, theirs, rn(5, 4, seed=100), rn(3, 4, seed=101), rn(3, seed=102))
