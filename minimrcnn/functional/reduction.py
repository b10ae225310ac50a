"""Reductions: sum, mean, max over axes (torch's ``dim`` / ``keepdim`` names)."""
import builtins

from ..autograd.registry import register_case
from ..autograd.tensor import Function
from ..backend import get_array_module

__all__ = ["sum", "mean", "max", "min"]


def _axes(dim, ndim):
    """Normalize ``dim`` (None, int or tuple, negatives allowed) to a sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < builtins.max(ndim, 1):
            raise ValueError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
        out.append(d % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def _expand_back(gy, axes, keepdim, shape):
    """Undo the reduction's shape: reinsert the reduced axes and broadcast to ``shape``."""
    xp = get_array_module(gy)
    if not keepdim:
        gy = xp.expand_dims(gy, axes) if axes else gy
    return xp.broadcast_to(gy, shape)


class Sum(Function):
    """$y = \\sum_{i \\in dims} x_i$; backward broadcasts $g$ back over the summed axes."""
    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.shape, self.axes = x.shape, _axes(self.dim, x.ndim)
        return get_array_module(x).asarray(x.sum(axis=self.axes, keepdims=self.keepdim))

    def backward(self, gy):
        return _expand_back(gy, self.axes, self.keepdim, self.shape).copy()


class Mean(Function):
    """$y = \\frac{1}{n} \\sum_{i \\in dims} x_i$."""
    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.shape, self.axes = x.shape, _axes(self.dim, x.ndim)
        self.n = 1
        for a in self.axes:
            self.n *= x.shape[a]
        return get_array_module(x).asarray(x.mean(axis=self.axes, keepdims=self.keepdim))

    def backward(self, gy):
        return _expand_back(gy / self.n, self.axes, self.keepdim, self.shape).copy()


class Max(Function):
    """$y = \\max_{i \\in dims} x_i$; the gradient goes to the maximal entries, split evenly
    among ties (torch's ``amax`` rule)."""
    def __init__(self, dim=None, keepdim=False, take_max=True):
        self.dim, self.keepdim, self.take_max = dim, keepdim, take_max

    def forward(self, x):
        self.x, self.axes = x, _axes(self.dim, x.ndim)
        if x.size == 0:
            raise ValueError(f"max/min of an empty tensor of shape {x.shape}")
        y = x.max(axis=self.axes, keepdims=True) if self.take_max else x.min(axis=self.axes, keepdims=True)
        self.y_keep = y
        return get_array_module(x).asarray(y if self.keepdim else y.squeeze(self.axes))

    def backward(self, gy):
        hit = self.x == self.y_keep
        count = hit.sum(axis=self.axes, keepdims=True)
        g = _expand_back(gy, self.axes, self.keepdim, self.x.shape)
        return (g * hit / count).astype(gy.dtype, copy=False)


def sum(x, dim=None, keepdim=False):  # noqa: A001 - torch's name
    return Sum(dim, keepdim)(x)


def mean(x, dim=None, keepdim=False):
    return Mean(dim, keepdim)(x)


def max(x, dim=None, keepdim=False):  # noqa: A001
    """Maximum values over ``dim`` (all axes by default). Unlike ``torch.max(x, dim)`` this
    returns only the values (like ``torch.amax``); use ``x.data.argmax(dim)`` for indices."""
    return Max(dim, keepdim)(x)


def min(x, dim=None, keepdim=False):  # noqa: A001
    return Max(dim, keepdim, take_max=False)(x)


def _distinct(rng, shape):
    """Values with gaps of at least 0.1 between them, so max/min never tie under eps."""
    import numpy as np
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape) - n * 0.05


register_case("sum", "all", sum, lambda r: [r.standard_normal((3, 4))])
register_case("sum", "dims_keepdim", lambda x: sum(x, dim=(0, 2), keepdim=True), lambda r: [r.standard_normal((2, 3, 4))])
register_case("sum", "negative_dim_noncontiguous", lambda x: sum(x, dim=-1),
              lambda r: [r.standard_normal((4, 3, 6)).transpose(1, 0, 2)[..., ::2]])
register_case("mean", "all", mean, lambda r: [r.standard_normal((3, 4))])
register_case("mean", "dim1", lambda x: mean(x, dim=1), lambda r: [r.standard_normal((2, 5, 3))])
register_case("max", "all", max, lambda r: [_distinct(r, (3, 4))])
register_case("max", "dim0_keepdim", lambda x: max(x, dim=0, keepdim=True), lambda r: [_distinct(r, (4, 3, 2))])
register_case("min", "dim_last", lambda x: min(x, dim=-1), lambda r: [_distinct(r, (3, 5))])
