"""The gradient-check registry: every differentiable op declares sample inputs here.

Each op family registers its cases beside its code::

    register_case("conv2d", "stride2_pad1_groups2",
                  lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2),
                  lambda rng: [rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3))])

``make_inputs(rng)`` returns float64 NumPy arrays (checked) and integer arrays (passed along,
not checked); a case may return non-contiguous views on purpose. One parametrized test
(tests/test_gradcheck.py) and ``python -m minimrcnn gradcheck`` run every case on every
backend, and a second test fails if some :class:`Function` subclass is reached by no case, so
an op without a gradient check cannot exist silently.
"""
import importlib
import time
from dataclasses import dataclass

import numpy as np

from ..backend import to_device
from .gradcheck import gradcheck
from .tensor import Function, Tensor

__all__ = ["GradCase", "register_case", "all_cases", "run_case", "function_classes",
           "functions_reached"]

# modules whose import registers cases; later families append themselves here
CASE_MODULES = ["minimrcnn.functional", "minimrcnn.ops"]

_CASES = {}


@dataclass(frozen=True)
class GradCase:
    op: str
    case: str
    fn: object
    make_inputs: object
    atol: float = 1e-5
    rtol: float = 1e-3
    eps: float = 1e-6

    @property
    def id(self):
        return f"{self.op}[{self.case}]"

    def inputs(self, xp=np, seed=0):
        """Fresh inputs as Tensors on ``xp``'s device (float ones require grad)."""
        arrays = self.make_inputs(np.random.default_rng(seed))
        out = []
        for a in arrays:
            a = a if xp is np else to_device(a, "cuda")
            out.append(Tensor(a, requires_grad=a.dtype.kind == "f"))
        return out


def register_case(op, case, fn, make_inputs, atol=1e-5, rtol=1e-3, eps=1e-6):
    c = GradCase(op, case, fn, make_inputs, atol, rtol, eps)
    if c.id in _CASES:
        raise ValueError(f"gradcheck case {c.id} is registered twice")
    _CASES[c.id] = c
    return c


def _import_case_modules():
    for m in CASE_MODULES:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            if e.name != m:   # a real import error inside the module
                raise


def all_cases():
    """Every registered case, sorted by op then case name."""
    _import_case_modules()
    return sorted(_CASES.values(), key=lambda c: (c.op, c.case))


def run_case(case, xp=np):
    """Gradcheck one case; returns (GradcheckResult, seconds). Never raises on a mismatch."""
    t0 = time.perf_counter()
    res = gradcheck(case.fn, case.inputs(xp), eps=case.eps, atol=case.atol, rtol=case.rtol,
                    raise_exception=False, name=case.id)
    return res, time.perf_counter() - t0


def function_classes():
    """All concrete Function subclasses defined in minimrcnn (after importing the case modules)."""
    _import_case_modules()
    found, todo = set(), list(Function.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("minimrcnn.") and "forward" in vars(cls):
            found.add(cls)
    return found


def functions_reached(case, xp=np):
    """The Function classes in the graph that ``case`` builds."""
    out = case.fn(*case.inputs(xp))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    seen, reached, todo = set(), set(), [o.creator for o in outs if o.creator is not None]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        reached.add(type(f))
        todo.extend(t.creator for t in f.inputs if t.creator is not None)
    return reached
