"""Give Tensor its operators and the usual methods, all routed through the functional ops.

Bound here rather than defined in autograd/tensor.py, so that autograd imports nothing from
functional (the layer above it).
"""
from ..autograd.tensor import Tensor
from ..backend import device_of
from . import elementwise as E, linalg as L, reduction as R, shape as S


def _rsub(a, b):
    return E.sub(b, a)


def _rdiv(a, b):
    return E.div(b, a)


def _rmatmul(a, b):
    return L.matmul(b, a)


def _pow(x, p):
    return E.pow(x, p)


def _to(x, device):
    """A tensor on ``device`` ('cpu' or 'cuda'); differentiable (the gradient moves back)."""
    if device_of(x.data) == str(device).split(":")[0]:
        return x
    return S.to_device(x, device)


def _cpu(x):
    return _to(x, "cpu")


def _cuda(x):
    return _to(x, "cuda")


_methods = {
    "__add__": E.add, "__radd__": E.add, "__sub__": E.sub, "__rsub__": _rsub,
    "__mul__": E.mul, "__rmul__": E.mul, "__truediv__": E.div, "__rtruediv__": _rdiv,
    "__neg__": E.neg, "__pow__": _pow, "__matmul__": L.matmul, "__rmatmul__": _rmatmul,
    "__getitem__": S.getitem,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "abs": E.abs, "relu": E.relu,
    "sigmoid": E.sigmoid, "tanh": E.tanh, "softmax": E.softmax, "log_softmax": E.log_softmax,
    "clamp": E.clamp, "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min,
    "reshape": S.reshape, "view": S.reshape, "flatten": S.flatten, "transpose": S.transpose,
    "permute": S.permute, "squeeze": S.squeeze, "unsqueeze": S.unsqueeze, "expand": S.expand,
    "matmul": L.matmul, "to": _to, "cpu": _cpu, "cuda": _cuda, "astype": E.cast,
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: S.permute(self, tuple(reversed(range(self.ndim)))))
