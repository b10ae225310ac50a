"""Numerical gradient checks (float64 central differences).

For an op ``y = f(x_1, ..., x_n)`` and a random upstream gradient ``g`` (same shape as ``y``),
the analytic check value is what backward gives, ``<g, dy/dx_i>``, and the numeric one is

    d/de <g, f(x + e·v)>  ≈  (<g, f(x + eps·v)> − <g, f(x − eps·v)>) / (2·eps)

For small inputs ``v`` runs over every coordinate (a full Jacobian-vector comparison, so the
worst index can be reported); for large ones a few random directions ``v`` are used, as in
Chainer's ``check_backward``: a wrong gradient almost surely shows in a random direction.
"""
from dataclasses import dataclass, field

import numpy as np

from ..backend import as_numpy, get_array_module
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError", "GradcheckResult"]


class GradcheckError(AssertionError):
    """A gradient check failed; the message names the op, the input and the worst index."""


@dataclass
class GradcheckResult:
    """What a check measured over every coordinate (or direction) it compared.

    max_abs_err: the worst $|n - a|$ (numeric n, analytic a). max_rel_err: the worst
    $|n - a| / \\max(|n|, atol/rtol)$: the relative error where the gradient is large, and the
    error measured against $atol/rtol$ where it is near 0 (below that the check is absolute:
    a coordinate passes when $|n - a| \\le atol + rtol |n|$).
    """
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    passed: bool = True
    mode: str = "full"                 # "full" (every coordinate) or "directional"
    worst: dict = field(default_factory=dict)

    def __bool__(self):
        return self.passed


def _scalar_output(fn, tensors, g):
    out = fn(*tensors)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = 0.0
    for o, gi in zip(outs, g):
        if gi is not None:
            total += float((o.data.astype(np.float64) * gi).sum())
    return total


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, max_full=4096, n_directions=3,
              seed=0, raise_exception=True, name=None):
    """Compare ``fn``'s backward with central differences.

    fn: callable taking Tensors, returning a Tensor (or a tuple of Tensors).
    inputs: Tensors (those with ``requires_grad=True`` are checked) or arrays (checked if
        floating). Use float64; float32 is refused since its rounding swamps the differences.
    A coordinate passes when |numeric − analytic| <= atol + rtol·|numeric|.
    Returns a :class:`GradcheckResult`; on failure raises :class:`GradcheckError` (or returns
    the failed result with ``raise_exception=False``).
    """
    name = name or getattr(fn, "__name__", "fn")
    tensors = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor):
            tensors.append(x)
        else:
            xp = get_array_module(x)
            arr = xp.asarray(x)
            tensors.append(Tensor(arr, requires_grad=arr.dtype.kind == "f"))
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError(f"gradcheck({name}): no input requires grad")
    for i in checked:
        if tensors[i].dtype != np.float64:
            raise TypeError(f"gradcheck({name}): input {i} is {tensors[i].dtype}; use float64")

    rng = np.random.default_rng(seed)
    xp = get_array_module(tensors[0].data)

    # analytic: backward with a random upstream gradient
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    g = [xp.asarray(rng.standard_normal(o.shape)) if o.requires_grad else None for o in outs]
    diff = [o for o, gi in zip(outs, g) if gi is not None]
    if not diff:
        raise ValueError(f"gradcheck({name}): no output depends differentiably on the inputs")
    _backward_many(diff, [gi for gi in g if gi is not None])
    analytic = {i: (tensors[i].grad if tensors[i].grad is not None else xp.zeros_like(tensors[i].data))
                for i in checked}

    def f_at():
        return _scalar_output(fn, [t.detach() for t in tensors], g)

    total = sum(tensors[i].size for i in checked)
    result = GradcheckResult(mode="full" if total <= max_full else "directional")
    if result.mode == "full":
        for i in checked:
            x = tensors[i].data                      # perturbed in place (views too)
            a = as_numpy(analytic[i])
            for idx in np.ndindex(*x.shape):
                old = float(x[idx])
                x[idx] = old + eps
                fp = f_at()
                x[idx] = old - eps
                fm = f_at()
                x[idx] = old
                num = (fp - fm) / (2 * eps)
                _update(result, num, float(a[idx]), atol, rtol,
                        dict(input=i, index=idx, numeric=num, analytic=float(a[idx])))
    else:
        for d in range(n_directions):
            vs = {i: xp.asarray(rng.standard_normal(tensors[i].shape)) for i in checked}
            saved = {i: tensors[i].data.copy() for i in checked}
            for i in checked:
                tensors[i].data[...] = saved[i] + eps * vs[i]
            fp = f_at()
            for i in checked:
                tensors[i].data[...] = saved[i] - eps * vs[i]
            fm = f_at()
            for i in checked:
                tensors[i].data[...] = saved[i]
            num = (fp - fm) / (2 * eps)
            ana = sum(float((analytic[i] * vs[i]).sum()) for i in checked)
            _update(result, num, ana, atol, rtol, dict(input="all", index=f"direction {d}",
                                                       numeric=num, analytic=ana))
    if not result.passed and raise_exception:
        w = result.worst
        raise GradcheckError(
            f"gradcheck({name}) failed: input {w['input']} at index {w['index']}: numeric "
            f"{w['numeric']:.8g} vs analytic {w['analytic']:.8g} (abs err {result.max_abs_err:.3g}, "
            f"rel err {result.max_rel_err:.3g}, atol={atol}, rtol={rtol}, mode={result.mode})")
    return result


def _update(result, num, ana, atol, rtol, where):
    err = abs(num - ana)
    rel = err / max(abs(num), atol / rtol if rtol > 0 else 0.0, 1e-300)
    ok = err <= atol + rtol * abs(num)
    if err > result.max_abs_err or (not ok and result.passed):
        result.worst = where
    result.max_abs_err = max(result.max_abs_err, err)
    result.max_rel_err = max(result.max_rel_err, rel)
    result.passed = result.passed and ok


def _backward_many(outputs, grads):
    """d/dx of sum_k <g_k, y_k>: one backward per output, the leaves' .grad adding them up (the
    graph is kept until the last)."""
    for k, (o, g) in enumerate(zip(outputs, grads)):
        o.backward(g, retain_graph=k < len(outputs) - 1)
