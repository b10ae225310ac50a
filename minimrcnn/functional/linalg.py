"""Matrix products: matmul and linear."""
from ..autograd.registry import register_case
from ..autograd.tensor import Function, sum_to
from ..backend import get_array_module

__all__ = ["matmul", "linear"]


class MatMul(Function):
    """$Y = A B$ with NumPy's batched matmul rules (1-D operands not supported).

    Backward: $G_A = G B^T$, $G_B = A^T G$, summed over broadcast batch dims.
    """
    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: operands must be at least 2-D, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: a has shape {a.shape} and b has shape {b.shape}: "
                             f"inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = get_array_module(gy)
        ga = gy @ xp.swapaxes(self.b, -1, -2)
        gb = xp.swapaxes(self.a, -1, -2) @ gy
        return sum_to(ga, self.a.shape), sum_to(gb, self.b.shape)


class Linear(Function):
    """$y = x W^T + b$; x (..., in), W (out, in), b (out,).

    Backward: $g_x = g W$, $g_W = g^T x$ (summed over the leading dims), $g_b = \\sum g$.
    """
    def forward(self, x, weight, bias=None):
        if weight.ndim != 2:
            raise ValueError(f"linear: weight must be (out_features, in_features), got shape {weight.shape}")
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}) but weight "
                             f"expects {weight.shape[1]} (shape {weight.shape})")
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        y = x @ weight.T
        return y + bias if bias is not None else y

    def backward(self, gy):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        g2 = gy.reshape(-1, gy.shape[-1])
        gx = gy @ self.weight
        gw = g2.T @ x2
        return (gx, gw, g2.sum(axis=0)) if self.has_bias else (gx, gw)


def matmul(a, b):
    return MatMul()(a, b)


def linear(x, weight, bias=None):
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


register_case("matmul", "2d", matmul, lambda r: [r.standard_normal((3, 4)), r.standard_normal((4, 2))])
register_case("matmul", "batched_broadcast", matmul,
              lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((4, 5))])
register_case("linear", "with_bias", linear,
              lambda r: [r.standard_normal((5, 4)), r.standard_normal((3, 4)), r.standard_normal(3)])
register_case("linear", "3d_input_no_bias_noncontiguous", linear,
              lambda r: [r.standard_normal((2, 3, 8))[..., ::2], r.standard_normal((6, 4))])
