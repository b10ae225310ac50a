"""The autograd engine and Tensor basics (no torch needed): accumulation, graph freeing,
no_grad, dtype rules, error messages, and gradcheck itself."""
import re
import sys
import weakref

import numpy as np
import pytest

import minimrcnn as mr
from minimrcnn import Tensor, functional as F
from minimrcnn.autograd import Function, GradcheckError, GradcheckResult, gradcheck


def leaf(values, dtype=np.float64):
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# ---- gradients through the graph ----------------------------------------------------------
def test_reused_node_accumulates():
    x = leaf([1.0, -2.0, 3.5])
    y = x * x + x                      # dy/dx = 2x + 1
    y.backward(np.ones(3))
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_same_tensor_twice_in_one_op():
    x = leaf([1.5, -2.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    z = leaf([0.5, 3.0])
    (z - z).sum().backward()
    np.testing.assert_array_equal(z.grad, [0.0, 0.0])


def test_diamond_graph():
    x = leaf([0.1, -0.4, 0.7])
    a = x * 2.0
    b = a.exp()
    c = a * 3.0
    d = b + c                           # d = exp(2x) + 6x
    d.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(2 * x.data) + 6)


def test_deeper_diamond_order():
    # a node used at very different depths must get its full gradient before its backward runs
    x = leaf([0.3, 1.2])
    a = x.exp()
    long = a
    for _ in range(5):
        long = long * 1.5
    d = (a + long).sum()                # d = a (1 + 1.5^5)
    d.backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data) * (1 + 1.5 ** 5))


@pytest.mark.parametrize("sa,sb", [((3, 1), (4,)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                   ((), (2, 3)), ((1, 1), (5, 2))])
def test_broadcast_gradients_summed_back(sa, sb):
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal(sa)), leaf(rng.standard_normal(sb))
    out = a * b
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert a.grad.shape == sa and b.grad.shape == sb
    full_a = np.broadcast_to(a.data, out.shape)
    full_b = np.broadcast_to(b.data, out.shape)

    def sum_to(x, shape):
        lead = x.ndim - len(shape)
        x = x.sum(axis=tuple(range(lead)))
        return x.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)

    np.testing.assert_allclose(a.grad, sum_to(g * full_b, sa))
    np.testing.assert_allclose(b.grad, sum_to(g * full_a, sb))


def test_leaf_grad_accumulates_across_backward_calls_and_zero_grad():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()          # a fresh graph: adds into x.grad, like torch
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_grad_is_a_copy_not_the_upstream_array():
    x = leaf([1.0, 2.0])
    g = np.array([5.0, 7.0])
    x.backward(g)
    g[:] = 0.0
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])
    y = leaf([1.0, 2.0])
    z = y.reshape(2)
    gz = np.array([1.0, 1.0])
    z.backward(gz)
    y.grad[0] = 100.0
    np.testing.assert_array_equal(gz, [1.0, 1.0])


def test_non_leaf_grad_none_unless_retained():
    x = leaf([1.0, 2.0, 3.0])
    y = x * 2.0
    z = y * y
    w = z.sum()
    assert x.is_leaf and not y.is_leaf and y.requires_grad
    w.backward()
    assert y.grad is None and z.grad is None
    np.testing.assert_allclose(x.grad, 8 * x.data)

    x2 = leaf([1.0, 2.0, 3.0])
    y2 = (x2 * 2.0).retain_grad()
    z2 = (y2 * y2).sum()
    z2.retain_grad()
    z2.backward()
    np.testing.assert_allclose(y2.grad, 2 * y2.data)
    np.testing.assert_allclose(z2.grad, 1.0)
    np.testing.assert_allclose(x2.grad, 8 * x2.data)


def test_retained_non_leaf_used_twice_gets_the_total():
    x = leaf([1.0, -1.0])
    y = (x * 3.0).retain_grad()
    (y * 2.0 + y * 5.0).sum().backward()
    np.testing.assert_allclose(y.grad, [7.0, 7.0])
    np.testing.assert_allclose(x.grad, [21.0, 21.0])


def test_backward_twice_raises_and_retain_graph_allows():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()

    x2 = leaf([1.0, 2.0])
    y2 = (x2.exp() * 2.0).sum()
    y2.backward(retain_graph=True)
    y2.backward()
    np.testing.assert_allclose(x2.grad, 4 * np.exp(x2.data))


def test_backward_through_a_partly_freed_graph_raises():
    """torch raises "Trying to backward through the graph a second time" here; silently
    treating the freed intermediate as a leaf would drop x's gradient."""
    x = leaf([1.0, 2.0])
    y = x.exp()
    y.sum().backward()
    g1 = x.grad.copy()
    with pytest.raises(RuntimeError):
        (y * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, g1)


def test_backward_errors():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2.0
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        y.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="require"):
        Tensor(np.ones(2)).sum().backward()
    # one-element non-scalar outputs may take the implicit grad (like torch)
    z = leaf([2.0])
    (z * 3.0).backward()
    np.testing.assert_array_equal(z.grad, [3.0])


def test_backward_grad_as_tensor_and_list():
    x = leaf([1.0, 2.0])
    (x * 2.0).backward(Tensor(np.array([1.0, 3.0])))
    np.testing.assert_array_equal(x.grad, [2.0, 6.0])
    x.zero_grad()
    (x * 2.0).backward([1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_unused_output_of_multi_output_op():
    x = leaf(np.arange(6.0).reshape(2, 3))
    a, b = F.split(x, [1, 2], dim=1)
    (b * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 2.0, 2.0], [0.0, 2.0, 2.0]])


def test_inputs_without_grad_get_none():
    x = leaf([1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None and not c.requires_grad
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ---- no_grad -------------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with mr.no_grad():
        y = x * 2.0 + 1.0
        z = F.exp(y).sum()
    for t in (y, z):
        assert not t.requires_grad and t.creator is None and t.is_leaf
    np.testing.assert_allclose(y.data, [3.0, 5.0])
    w = x * 2.0
    assert w.requires_grad and w.creator is not None


def test_no_grad_nests_and_restores():
    from minimrcnn.autograd import is_grad_enabled
    assert is_grad_enabled()
    x = leaf([1.0])
    with mr.no_grad():
        assert not is_grad_enabled()
        with mr.no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()
        assert not (x * 2.0).requires_grad
        with mr.enable_grad():
            assert is_grad_enabled()
            assert (x * 2.0).requires_grad
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with pytest.raises(KeyError):
        with mr.no_grad():
            raise KeyError("boom")
    assert is_grad_enabled()
    assert (x * 2.0).requires_grad


# ---- dtypes --------------------------------------------------------------------------------
def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(TypeError):
        Tensor(np.array([1, 2], np.int32)).requires_grad_()
    with pytest.raises(TypeError):
        Tensor(np.array([True])).requires_grad_(True)


def test_mixing_float32_and_float64_raises():
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    b = Tensor(np.ones(3, np.float64))
    with pytest.raises(TypeError) as e:
        a * b
    msg = str(e.value)
    assert "Mul" in msg and "float32" in msg and "float64" in msg
    with pytest.raises(TypeError, match=r"(?s)Add.*float32.*float64"):
        F.add(a, b)
    with pytest.raises(TypeError, match="MatMul"):
        F.matmul(Tensor(np.ones((2, 2), np.float64)), Tensor(np.ones((2, 2), np.float32)))
    with pytest.raises(TypeError):
        a + np.ones(3)                   # a float64 array is not a scalar: no silent promotion


@pytest.mark.parametrize("expr", [
    lambda x: x * 2.5, lambda x: 2.5 * x, lambda x: x + 1, lambda x: 1.5 - x, lambda x: x / 3.0,
    lambda x: 1 / x, lambda x: x ** 2, lambda x: x ** 0.5, lambda x: -x, lambda x: F.maximum(x, 0.5),
    lambda x: F.minimum(0.5, x), lambda x: F.where(np.array([True, False, True]), x, 0.0),
    lambda x: F.clamp(x, 0.1, 0.9), lambda x: x * np.float64(2.0), lambda x: x + np.int64(3),
])
def test_python_scalars_keep_float32(expr):
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = expr(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_pow_with_numpy_scalar_exponent_keeps_float32():
    # x * np.float64(2) stays float32; x ** np.float64(2) must not silently become float64
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    assert (x * np.float64(2.0)).dtype == np.float32
    assert (x ** np.float64(2.0)).dtype == np.float32


def test_tensor_construction_dtypes():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(2.0).dtype == np.float32
    assert Tensor([[1.5]]).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor(np.array([1.0, 2.0])).dtype == np.float64      # arrays keep their dtype
    assert Tensor(np.array([1.0], np.float16)).dtype == np.float16
    # NumPy scalars keep their dtype
    assert Tensor(np.float64(1.5)).dtype == np.float64
    assert Tensor(np.float32(1.5)).dtype == np.float32
    assert Tensor(np.int32(3)).dtype == np.int32
    assert Tensor(np.float64(1.5)).shape == ()


def test_tensor_keeps_array_and_basics():
    a = np.arange(6.0).reshape(2, 3)[:, ::2]
    t = Tensor(a)
    assert t.data is a                   # kept as it is: no copy
    assert t.shape == (2, 2) and t.ndim == 2 and t.size == 4 and len(t) == 2
    assert t.device == "cpu" and t.is_leaf and t.grad is None and not t.requires_grad
    assert Tensor(t).data is a
    assert isinstance(t.numpy(), np.ndarray)
    assert Tensor(np.array(3.0)).item() == 3.0
    d = leaf([1.0]) * 2.0
    dd = d.detach()
    assert not dd.requires_grad and dd.creator is None and dd.data is d.data
    assert "requires_grad=True" in repr(leaf([1.0]))
    with pytest.raises(TypeError):
        Tensor(np.array([object()]))


def test_integer_ops_make_no_graph():
    i = Tensor(np.array([1, 2, 3]))
    x = leaf([1.0, 2.0, 3.0])
    y = x * i
    assert y.dtype == np.float64 and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])
    j = i + i
    assert not j.requires_grad


def test_ndarray_on_the_left_defers_to_tensor():
    x = leaf([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ---- graph lifetime ------------------------------------------------------------------------
def test_graph_is_freed_after_backward():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    z = y.exp()
    w = z.sum()
    refs = [weakref.ref(t.creator) for t in (y, z, w)]
    assert all(r() is not None for r in refs)
    w.backward()
    assert y.creator is None and z.creator is None and w.creator is None
    assert all(r() is None for r in refs), "a Function is still alive after backward"


def test_graph_kept_with_retain_graph():
    x = leaf([1.0, 2.0])
    z = (x * 2.0).exp()
    w = z.sum()
    ref = weakref.ref(z.creator)
    w.backward(retain_graph=True)
    assert z.creator is not None and ref() is not None
    w.backward()
    assert ref() is None


def test_function_does_not_keep_outputs_alive():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    f = y.creator
    ref = weakref.ref(y)
    del y
    assert ref() is None and f is not None


def test_deep_chain_does_not_recurse():
    limit = sys.getrecursionlimit()
    x = leaf([1.0, 2.0])
    y = x
    for _ in range(5000):
        y = y * 1.0 + 0.001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0])
    np.testing.assert_allclose(y.data, x.data + 5.0, rtol=1e-9)
    assert sys.getrecursionlimit() == limit
    # dropping a deep graph that was never backpropagated must not crash either
    z = x
    for _ in range(5000):
        z = z + 1.0
    del z


# ---- gradcheck -----------------------------------------------------------------------------
class _WrongAt(Function):
    """y = a * b with a backward that is wrong at one position of one input."""

    def __init__(self, bad_input, bad_index):
        self.bad_input, self.bad_index = bad_input, bad_index

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga, gb = gy * self.b, gy * self.a
        bad = (ga, gb)[self.bad_input]
        bad[self.bad_index] += 1.0
        return ga, gb


class _WrongSquare(Function):
    """y = x**2 with backward 3x (wrong everywhere)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return 3 * gy * self.x


class _Square(Function):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return 2 * gy * self.x


@pytest.mark.parametrize("bad_input,bad_index", [(0, (1, 2)), (1, (0, 3)), (1, (2, 0))])
def test_gradcheck_names_input_and_worst_index(bad_input, bad_index):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    with pytest.raises(GradcheckError) as e:
        gradcheck(lambda x, y: _WrongAt(bad_input, bad_index)(x, y), [a, b], name="wrong_mul")
    msg = str(e.value)
    assert "wrong_mul" in msg
    assert f"input {bad_input} at index {bad_index}" in msg, msg


def test_gradcheck_wrong_everywhere_and_no_raise():
    x = np.random.default_rng(1).standard_normal((2, 3))
    with pytest.raises(GradcheckError, match=r"input 0 at index \(\d, \d\)"):
        gradcheck(lambda t: _WrongSquare()(t), [x])
    res = gradcheck(lambda t: _WrongSquare()(t), [x], raise_exception=False)
    assert isinstance(res, GradcheckResult) and not res.passed and not bool(res)
    assert res.worst["input"] == 0 and res.max_abs_err > 0.1


def test_gradcheck_passes_correct_ops():
    rng = np.random.default_rng(2)
    res = gradcheck(lambda t: _Square()(t), [rng.standard_normal((3, 4))])
    assert res.passed and res.mode == "full"
    res = gradcheck(lambda a, b: F.log_softmax(a @ b, dim=1),
                    [rng.standard_normal((3, 4)), rng.standard_normal((4, 5))])
    assert res.passed
    # integer inputs are passed along, not checked
    res = gradcheck(lambda x, i: F.gather(x, 1, i), [rng.standard_normal((3, 4)), np.array([[0], [3], [1]])])
    assert res.passed


class _SlightlyWrongSquare(Function):
    """y = x**2 with backward 2x(1 + delta): a relative error of exactly delta everywhere."""

    def __init__(self, delta):
        self.delta = delta

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return 2 * gy * self.x * (1 + self.delta)


@pytest.mark.parametrize("shape,low,delta", [((3, 4), 5e-3, 1e-4), ((50, 100), 1e-3, 1e-5)],
                         ids=["full", "directional"])
def test_gradcheck_records_the_worst_relative_error(shape, low, delta):
    """max_rel_err is measured, not left at 0 when every error is below atol."""
    x = np.random.default_rng(4).uniform(low, 2 * low, shape)
    res = gradcheck(lambda t: _SlightlyWrongSquare(delta)(t), [x])
    assert res.passed and res.max_abs_err < 1e-5                # below atol: it used to read 0.0
    np.testing.assert_allclose(res.max_rel_err, delta, rtol=1e-2)
    res = gradcheck(lambda t: _Square()(t), [x])
    assert 0 < res.max_rel_err < 1e-6                           # rounding only, but not zero


def test_gradcheck_cli_max_rel_column_is_measured(capsys):
    from minimrcnn.__main__ import main
    assert main(["gradcheck", "--op", "exp", "log_softmax", "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.endswith("s")
            and " pass " in line]
    assert rows and all(float(r[5]) > 0 for r in rows), rows    # the "max rel" column


def test_gradcheck_directional_mode():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 100))       # 5000 elements > 4096: random directions
    res = gradcheck(lambda t: _Square()(t), [x])
    assert res.passed and res.mode == "directional"
    with pytest.raises(GradcheckError, match="directional"):
        gradcheck(lambda t: _WrongSquare()(t), [x])
    # a gradient wrong at a single coordinate is still seen in a random direction
    y = rng.standard_normal((50, 100))
    with pytest.raises(GradcheckError, match="directional"):
        gradcheck(lambda a, b: _WrongAt(1, (7, 42))(a, b), [x, y])


def test_gradcheck_refuses_float32_and_no_grad_inputs():
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda t: t * t, [np.ones((2, 2), np.float32)])
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda t: t * t, [Tensor(np.ones(2, np.float32), requires_grad=True)])
    with pytest.raises(ValueError):
        gradcheck(lambda i: i * 2, [np.array([1, 2])])


# ---- error messages name the values --------------------------------------------------------
def test_matmul_shape_error_names_shapes():
    with pytest.raises(ValueError) as e:
        F.matmul(Tensor(np.ones((3, 4))), Tensor(np.ones((5, 2))))
    msg = str(e.value)
    assert "(3, 4)" in msg and "(5, 2)" in msg and "4" in msg and "5" in msg
    with pytest.raises(ValueError, match=r"\(3,\)"):
        F.matmul(Tensor(np.ones(3)), Tensor(np.ones((3, 2))))


def test_linear_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"(?s)\(2, 5\).*\(3, 4\)"):
        F.linear(Tensor(np.ones((2, 5))), Tensor(np.ones((3, 4))))


def test_reshape_error_names_sizes():
    with pytest.raises(ValueError) as e:
        F.reshape(Tensor(np.ones((2, 3))), (4, 2))
    msg = str(e.value)
    assert "(2, 3)" in msg and "(4, 2)" in msg and "6" in msg


def test_concat_error_names_shapes():
    with pytest.raises(ValueError) as e:
        F.concat([Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))], dim=0)
    msg = str(e.value)
    assert "(2, 3)" in msg and "(4, 5)" in msg and "1" in msg
    with pytest.raises(ValueError, match=r"(?s)\(2, 3\).*\(2, 4\)"):
        F.stack([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))])


def test_gather_error_names_index_range():
    x = Tensor(np.ones((3, 4)))
    with pytest.raises((ValueError, IndexError)) as e:
        F.gather(x, 1, np.array([[0, 7], [1, 2], [3, 3]]))
    msg = str(e.value)
    assert "4" in msg and "7" in msg
    with pytest.raises(TypeError, match="float64"):
        F.gather(x, 1, np.array([[0.0]]).repeat(3, 0))


def test_gather_rejects_negative_index():
    # torch.gather raises for index -1 (it does not wrap around); the message says [0, n)
    x = Tensor(np.arange(12.0).reshape(3, 4))
    with pytest.raises((ValueError, IndexError), match="-1"):
        F.gather(x, 1, np.array([[0], [-1], [2]]))


def test_getitem_error_names_shape():
    with pytest.raises(IndexError, match=re.escape("(3, 4)")):
        Tensor(np.ones((3, 4)))[5]


@pytest.mark.parametrize("index, once", [
    (np.array([2, 0, 3, 1]), True),                    # a permutation: the assignment path
    (np.array([-1, 0]), True),                         # distinct rows, one negative
    (np.array([3, -1]), False),                        # row 3 twice (-1 is 3): the scatter-add
    (np.array([1, 1, 0]), False),
    ((slice(None), np.array([4, 0, 2])), True),        # distinct columns
    ((slice(None), np.array([4, -1, 2])), False),      # column 4 twice
    ((1, np.array([0, 0])), False),
    ((np.array([0, 1]), np.array([1, 1])), False),     # two arrays: (0, 1) and (1, 1) (distinct, kept general)
    ((np.array([0, 0]), np.array([1, 1])), False),     # the same element twice
    (np.arange(20).reshape(4, 5) % 3 == 0, True),      # boolean mask
    ((Ellipsis, np.array([1, 1])), False),
    ([0, 0, 2], False),                                # a list
    ((slice(None, None, -1), np.array([2, 2])), False),
    ((slice(1, None), 2), True),                       # basic indices only
], ids=lambda i: repr(i).replace("\n", "")[:40])
def test_getitem_backward_equals_the_scatter_add(index, once):
    # the backward assigns where each element is read at most once, else scatter-adds:
    # both must give np.add.at's gradient exactly, and each case takes the path named
    from minimrcnn.functional.shape import _picks_once
    assert _picks_once(index, (4, 5)) is once
    x = Tensor(np.random.default_rng(0).standard_normal((4, 5)), requires_grad=True)
    y = x[index]
    gy = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(gy)
    expected = np.zeros((4, 5))
    np.add.at(expected, index if not isinstance(index, list) else np.array(index), gy)
    np.testing.assert_array_equal(x.grad, expected)


def test_split_and_squeeze_errors():
    with pytest.raises(ValueError, match=r"(?s)\[2, 2\].*4.*5"):
        F.split(Tensor(np.ones((5, 2))), [2, 2])
    with pytest.raises(ValueError, match="3"):
        F.squeeze(Tensor(np.ones((2, 3))), 1)


def test_reduction_dim_out_of_range():
    with pytest.raises(ValueError, match=r"(?s)3.*2"):
        F.sum(Tensor(np.ones((2, 3))), dim=3)


# ---- float32 stays float32 through forward and backward -----------------------------------
class _Probe(Function):
    """Identity that records the dtype of the gradient flowing back into it."""
    seen = []

    def forward(self, x):
        return x

    def backward(self, gy):
        _Probe.seen.append(gy.dtype)
        return gy


_IDX = np.array([[0, 2], [1, 1], [3, 0]])
FLOAT32_OPS = {
    "add": lambda x: x + x * 2.0, "sub": lambda x: 1.0 - x, "mul": lambda x: x * 0.5,
    "div": lambda x: 1.0 / (x + 3.0), "neg": lambda x: -x, "exp": F.exp, "log": lambda x: F.log(x + 3.0),
    "pow": lambda x: x ** 2, "pow_frac": lambda x: (x + 3.0) ** 1.5, "sqrt": lambda x: F.sqrt(x + 3.0),
    "abs": F.abs, "maximum": lambda x: F.maximum(x, 0.1), "minimum": lambda x: F.minimum(x, x * 0.5),
    "clamp": lambda x: F.clamp(x, -0.5, 0.5), "where": lambda x: F.where(np.eye(3, 4, dtype=bool), x, 0.0),
    "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softmax": F.softmax, "log_softmax": F.log_softmax,
    "sum": lambda x: F.sum(x, dim=1), "mean": lambda x: F.mean(x, dim=0), "max": lambda x: F.max(x, dim=1),
    "min": F.min, "reshape": lambda x: x.reshape(4, 3), "transpose": lambda x: x.T,
    "expand": lambda x: x[:, :1].expand(3, 5), "concat": lambda x: F.concat([x, x], dim=1),
    "stack": lambda x: F.stack([x, x]), "split": lambda x: F.split(x, 3, dim=1)[0],
    "getitem": lambda x: x[np.array([0, 0, 2])], "gather": lambda x: F.gather(x, 1, _IDX),
    "pad": lambda x: F.pad(x, (1, 1, 2, 0), value=0.5),
    "matmul": lambda x: x @ x.T, "linear": lambda x: F.linear(x, x, x[:, 0]),
}


@pytest.mark.parametrize("name", list(FLOAT32_OPS))
def test_float32_forward_and_backward_stay_float32(name):
    x = Tensor(np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    _Probe.seen = []
    y = FLOAT32_OPS[name](_Probe()(x))
    assert y.dtype == np.float32, f"{name}: forward gave {y.dtype}"
    y.backward(np.ones(y.shape, np.float32))
    assert _Probe.seen and all(d == np.float32 for d in _Probe.seen), f"{name}: backward gave {_Probe.seen}"
    assert x.grad.dtype == np.float32
