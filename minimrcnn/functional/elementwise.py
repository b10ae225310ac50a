"""Elementwise ops and activations.

Binary ops broadcast like NumPy; their backward sums the gradient back to each operand's shape
(``sum_to``). Python scalars take the other operand's dtype, so ``x * 2`` stays float32.
"""
import numpy as np

from ..autograd.registry import register_case
from ..autograd.tensor import Function, Tensor, as_array, sum_to
from ..backend import get_array_module

__all__ = ["add", "sub", "mul", "div", "neg", "exp", "log", "pow", "sqrt", "abs", "maximum",
           "minimum", "clamp", "where", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "cast"]


def _operands(a, b):
    """Tensor-or-array operands with scalars matched to the other side's dtype."""
    la, lb = as_array(a) if not np.isscalar(a) else None, as_array(b) if not np.isscalar(b) else None
    a = a if isinstance(a, Tensor) else as_array(a, like=lb)
    b = b if isinstance(b, Tensor) else as_array(b, like=la)
    return a, b


class Add(Function):
    """$y = a + b$ (broadcast)."""
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    """$y = a - b$."""
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


class Mul(Function):
    """$y = a b$; $\\partial y/\\partial a = b$, $\\partial y/\\partial b = a$."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ### BEGIN SOLUTION elementwise_backward
        return sum_to(gy * self.b, self.a.shape), sum_to(gy * self.a, self.b.shape)
        ### END SOLUTION


class Div(Function):
    """$y = a / b$; $\\partial y/\\partial b = -a / b^2$."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        ### BEGIN SOLUTION elementwise_backward
        ga = gy / self.b
        return sum_to(ga, self.a.shape), sum_to(-ga * self.a / self.b, self.b.shape)
        ### END SOLUTION


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    """$y = e^x$, $y' = y$."""
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        ### BEGIN SOLUTION elementwise_backward
        return gy * self.y
        ### END SOLUTION


class Log(Function):
    """$y = \\ln x$, $y' = 1/x$."""
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        ### BEGIN SOLUTION elementwise_backward
        return gy / self.x
        ### END SOLUTION


class Pow(Function):
    """$y = x^p$ for a constant exponent $p$; $y' = p x^{p-1}$."""
    def __init__(self, p):
        self.p = p.item() if hasattr(p, "item") else p   # a Python number keeps x's dtype

    def forward(self, x):
        self.x = x
        return x ** self.p

    def backward(self, gy):
        if self.p == 0:                                   # x^0 = 1 is constant, even at x = 0
            return get_array_module(gy).zeros_like(gy)
        return gy * self.p * self.x ** (self.p - 1)


class Sqrt(Function):
    """$y = \\sqrt x$, $y' = 1 / (2y)$."""
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    """$y = |x|$, $y' = \\mathrm{sign}(x)$ (0 at 0, as torch)."""
    def forward(self, x):
        self.x = x
        return get_array_module(x).abs(x)

    def backward(self, gy):
        return gy * get_array_module(gy).sign(self.x)


class Maximum(Function):
    """$y = \\max(a, b)$ elementwise; on ties the gradient is split in half (as torch)."""
    def __init__(self, take_max=True):
        self.take_max = take_max

    def forward(self, a, b):
        xp = get_array_module(a)
        self.a, self.b = a, b
        return xp.maximum(a, b) if self.take_max else xp.minimum(a, b)

    def backward(self, gy):
        a_wins = (self.a > self.b) if self.take_max else (self.a < self.b)
        tie = self.a == self.b
        wa = a_wins + 0.5 * tie
        wb = 1.0 - wa
        return (sum_to((gy * wa).astype(gy.dtype), self.a.shape),
                sum_to((gy * wb).astype(gy.dtype), self.b.shape))


class Clamp(Function):
    """$y = \\min(\\max(x, lo), hi)$; the gradient passes where $lo < x < hi$ (0 on the bounds,
    as torch's clamp and hardtanh, and as relu at 0)."""
    def __init__(self, lo=None, hi=None):
        if lo is None and hi is None:
            raise ValueError("clamp: give at least one of min and max")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"clamp: min={lo} is greater than max={hi}")
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.x = x
        return get_array_module(x).clip(x, self.lo, self.hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        keep = True
        if self.lo is not None:
            keep = keep & (self.x > self.lo)
        if self.hi is not None:
            keep = keep & (self.x < self.hi)
        return gy * keep


class Where(Function):
    """$y = a$ where ``condition`` else $b$; ``condition`` is a constant boolean array."""
    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return get_array_module(a).where(self.condition, a, b)

    def backward(self, gy):
        c = self.condition
        return sum_to(gy * c, self.shapes[0]), sum_to(gy * ~c, self.shapes[1])


class ReLU(Function):
    """$y = \\max(x, 0)$, $y' = [x > 0] = [y > 0]$. Backward reads the output, which the next
    layer keeps anyway, so no mask is stored."""
    def forward(self, x):
        self.y = get_array_module(x).maximum(x, 0)
        return self.y

    def backward(self, gy):
        return gy * (self.y > 0)


def sigmoid_array(x):
    """$\\sigma(x) = 1 / (1 + e^{-x})$ on a raw array, in its dtype (the one definition: F.sigmoid,
    the RPN's objectness, the mask probabilities). Overflow-safe: where $e^{-x}$ overflows to
    $\\infty$ the result is exactly 0, without a warning. The same form as torch.sigmoid, so
    that scores agree with torchvision's to the ulp."""
    xp = get_array_module(x)
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + xp.exp(-x))


def softmax_array(x, axis=-1):
    """$e^{x_i - m} / \\sum_j e^{x_j - m}$ along ``axis`` on a raw array ($m$ the maximum, so
    that no exponential overflows): F.softmax, the class scores, the softmax mask probabilities."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Sigmoid(Function):
    """$y = 1 / (1 + e^{-x})$ (:func:`sigmoid_array`); $y' = y(1-y)$."""
    def forward(self, x):
        self.y = sigmoid_array(x)
        return self.y

    def backward(self, gy):
        ### BEGIN SOLUTION elementwise_backward
        return gy * self.y * (1 - self.y)
        ### END SOLUTION


class Tanh(Function):
    """$y = \\tanh x$, $y' = 1 - y^2$."""
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Softmax(Function):
    """$y_i = e^{x_i - m} / \\sum_j e^{x_j - m}$ along ``dim`` ($m$ = max, for stability).
    Backward: $g_x = y (g - \\sum_j g_j y_j)$."""
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.y = softmax_array(x, axis=self.dim)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    """$y_i = x_i - m - \\log \\sum_j e^{x_j - m}$; backward $g_x = g - \\mathrm{softmax}(x) \\sum_j g_j$."""
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        z = x - x.max(axis=self.dim, keepdims=True)
        self.y = z - xp.log(xp.exp(z).sum(axis=self.dim, keepdims=True))
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.dim, keepdims=True)


class Cast(Function):
    """Change dtype; the gradient is cast back to the input's dtype."""
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def _check_inputs(self, tensors):   # a cast is the one op meant to see two dtypes
        pass

    def backward(self, gy):
        return gy.astype(self.in_dtype) if self.in_dtype.kind == "f" else None


def add(a, b):
    return Add()(*_operands(a, b))


def sub(a, b):
    return Sub()(*_operands(a, b))


def mul(a, b):
    return Mul()(*_operands(a, b))


def div(a, b):
    return Div()(*_operands(a, b))


def neg(x):
    return Neg()(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def pow(x, p):
    """$x^p$ for a constant Python/NumPy scalar exponent ``p``."""
    if not np.isscalar(p):
        raise TypeError(f"pow: exponent must be a scalar constant, got {type(p).__name__}")
    return Pow(p)(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):  # noqa: A001 - torch's name
    return Abs()(x)


def maximum(a, b):
    return Maximum(True)(*_operands(a, b))


def minimum(a, b):
    return Maximum(False)(*_operands(a, b))


def clamp(x, min=None, max=None):  # noqa: A002 - torch's names
    return Clamp(min, max)(x)


def where(condition, a, b):
    """``a`` where the boolean array ``condition`` holds, else ``b`` (broadcast)."""
    return Where(as_array(condition).astype(bool))(*_operands(a, b))


def relu(x):
    return ReLU()(x)


def sigmoid(x):
    return Sigmoid()(x)


def tanh(x):
    return Tanh()(x)


def softmax(x, dim=-1):
    return Softmax(dim)(x)


def log_softmax(x, dim=-1):
    return LogSoftmax(dim)(x)


def cast(x, dtype):
    return Cast(dtype)(x)


# ---- gradient checks -----------------------------------------------------------------------
def _away_from(values, kinks, margin=0.1):
    """Shift samples that sit within ``margin`` of a kink (relu at 0, clamp at its bounds)."""
    for k in kinks:
        close = np.abs(values - k) < margin
        values = values + close * 2 * margin * (values >= k) - close * 2 * margin * (values < k)
    return values


register_case("add", "broadcast_row", add, lambda r: [r.standard_normal((3, 4)), r.standard_normal((4,))])
register_case("add", "broadcast_both", add, lambda r: [r.standard_normal((2, 1, 4)), r.standard_normal((3, 1))])
register_case("sub", "broadcast_keepdim", sub, lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((2, 1, 4))])
register_case("mul", "noncontiguous", mul, lambda r: [r.standard_normal((3, 8))[:, ::2], r.standard_normal((3, 4))])
register_case("mul", "scalar_array", lambda a, b: mul(a, b), lambda r: [r.standard_normal((3, 4)), r.standard_normal(())])
register_case("div", "broadcast", div, lambda r: [r.standard_normal((3, 4)), r.uniform(0.5, 2, (3, 1))])
register_case("neg", "basic", neg, lambda r: [r.standard_normal((3, 4))])
register_case("exp", "basic", exp, lambda r: [r.standard_normal((3, 4))])
register_case("log", "positive", log, lambda r: [r.uniform(0.5, 3, (3, 4))])
register_case("pow", "cube_and_half", lambda x: add(pow(x, 3), pow(x, 0.5)), lambda r: [r.uniform(0.5, 2, (3, 4))])
register_case("sqrt", "positive", sqrt, lambda r: [r.uniform(0.5, 3, (3, 4))])
register_case("abs", "away_from_zero", abs, lambda r: [_away_from(r.standard_normal((3, 4)), [0])])
register_case("maximum", "broadcast", maximum, lambda r: [r.standard_normal((3, 4)), r.standard_normal((4,)) + 0.05])
register_case("minimum", "basic", minimum, lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)) + 0.05])
register_case("clamp", "both_bounds", lambda x: clamp(x, -0.5, 0.7),
              lambda r: [_away_from(r.standard_normal((4, 5)), [-0.5, 0.7])])
register_case("where", "broadcast", lambda a, b: where(np.arange(12).reshape(3, 4) % 3 == 0, a, b),
              lambda r: [r.standard_normal((3, 4)), r.standard_normal((4,))])
register_case("relu", "away_from_zero", relu, lambda r: [_away_from(r.standard_normal((2, 3, 4)), [0])])
register_case("sigmoid", "wide_range", sigmoid, lambda r: [r.standard_normal((3, 4)) * 4])
register_case("tanh", "basic", tanh, lambda r: [r.standard_normal((3, 4))])
register_case("softmax", "last_dim", softmax, lambda r: [r.standard_normal((3, 5))])
register_case("softmax", "dim1_4d", lambda x: softmax(x, dim=1), lambda r: [r.standard_normal((2, 4, 3, 2))])
register_case("log_softmax", "large_logits", lambda x: log_softmax(x, dim=1), lambda r: [r.standard_normal((3, 5)) * 30])
# through float32 and back: float32 rounding (~1e-7 relative) needs a large eps to stay small
register_case("cast", "through_float32", lambda x: mul(cast(cast(x, np.float32), np.float64), x),
              lambda r: [r.standard_normal((3, 4))], eps=1e-2, atol=1e-4)
