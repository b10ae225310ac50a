"""Reverse-mode automatic differentiation in one file.

A :class:`Tensor` wraps an array (``numpy.ndarray`` or ``cupy.ndarray``) and remembers the
:class:`Function` that created it. Calling ``loss.backward()`` walks that graph from the loss
back to the leaves in reverse topological order and applies the chain rule:

    dL/dx = sum over the functions f that used x of  f.backward(dL/df(x))

Each ``Function`` computes its ``forward`` on raw arrays and its ``backward`` (the
vector-Jacobian product) on raw arrays, side by side in one class. Gradients reaching a tensor
from several uses are added; gradients of broadcast operands are summed back to their shape.
The graph is freed as backward goes unless ``retain_graph=True``.
"""
import contextlib
import heapq
import itertools
import threading
import weakref

import numpy as np

from ..backend import device_of, get_array_module, to_device

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "as_tensor",
           "as_array", "sum_to"]

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled):
    previous = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: ops inside record no graph (inference, parameter updates)."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)


def as_array(x, like=None):
    """Raw array of ``x``; Python scalars take ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        return x.data
    if like is not None and np.isscalar(x):
        xp = get_array_module(like)
        if like.dtype.kind == "f" or isinstance(x, (int, np.integer)):
            dtype = like.dtype                    # x * 2 keeps x's dtype
        else:
            dtype = np.float32                    # int tensor * 2.5 -> float32, as torch
        return xp.asarray(x, dtype=dtype)
    xp = get_array_module(x)
    return xp.asarray(x)


def as_tensor(x, like=None):
    return x if isinstance(x, Tensor) else Tensor(as_array(x, like))


def sum_to(gx, shape):
    """Sum a broadcast gradient back to ``shape`` (the inverse of NumPy broadcasting)."""
    if gx.shape == tuple(shape):
        return gx
    lead = gx.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and gx.shape[i + lead] != 1)
    gx = gx.sum(axis=axes, keepdims=True)
    return gx.reshape(shape) if lead else gx


class Tensor:
    """An array with an optional gradient.

    ``Tensor(data, requires_grad=False)``: ``data`` is a NumPy/CuPy array (kept as it is) or
    anything ``numpy.asarray`` accepts (Python floats become float32, as in torch).
    """

    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators
    _ids = itertools.count()

    def __init__(self, data, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = get_array_module(data)
        if isinstance(data, np.generic):          # a NumPy scalar keeps its dtype
            data = np.asarray(data)
        elif not isinstance(data, xp.ndarray):     # Python numbers and lists: floats -> float32
            data = np.asarray(data)
            if data.dtype == np.float64:
                data = data.astype(np.float32)
        if data.dtype == object:
            raise TypeError("Tensor data must be numeric, got an array of dtype object")
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require grad, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None        # the Function that made this tensor (None for leaves)
        self.generation = 0        # depth in the graph, for the topological order of backward
        self.name = name
        self._retain_grad = False
        self._freed = False        # set when backward freed the graph that made this tensor
        self._id = next(Tensor._ids)

    # ---- array facts -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = repr(self.data).replace("\n", "\n       ")
        extra = ", requires_grad=True" if self.requires_grad else ""
        extra += f", grad_fn={type(self.creator).__name__}" if self.creator is not None else ""
        return f"Tensor({body}{extra})"

    def numpy(self):
        return to_device(self.data, "cpu")

    def item(self):
        return self.data.item()

    def detach(self):
        return Tensor(self.data)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain_grad = True
        return self

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    def __deepcopy__(self, memo):
        """A leaf copy (data and grad copied) with its own identity: gradients are keyed by
        tensor identity in backward, so a copy must never share it with the original."""
        t = type(self).__new__(type(self))
        Tensor.__init__(t, self.data.copy(), requires_grad=self.requires_grad, name=self.name)
        t.grad = None if self.grad is None else self.grad.copy()
        memo[id(self)] = t
        return t

    def zero_grad(self):
        self.grad = None

    # ---- backward ----------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient (defaults to ones for a scalar). Nodes are visited
        by decreasing generation, so a node's gradient is complete before its backward runs.
        """
        if self._freed:
            raise RuntimeError("backward() through a graph that was already freed by an earlier "
                               "backward(); pass retain_graph=True to the first call")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the graph had requires_grad=True, or no_grad() was on)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without grad needs a scalar, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = as_array(grad)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape} but the tensor has shape {self.shape}")
            grad = grad.astype(self.dtype, copy=False)

        grads = {self._id: grad}
        heap, seen = [], set()

        def push(f):
            if f is not None and id(f) not in seen:
                seen.add(id(f))
                # ties in generation: the node created last goes first (a fixed order, so the
                # sums of gradients that meet at one tensor are the same in every run)
                heapq.heappush(heap, (-f.generation, -f.sequence_nr, f))

        self._store_grad(grad)
        push(self.creator)
        while heap:
            _, _, f = heapq.heappop(heap)
            # gradients of this node's outputs (zeros for an output nobody used)
            gys = [grads.pop(oid, None) for oid, _, _ in f.output_meta]
            if all(g is None for g in gys):
                continue
            gys = [xp.zeros(shape, dtype) if g is None else g
                   for g, (_, shape, dtype) in zip(gys, f.output_meta)]
            gxs = f.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(f.inputs):
                raise RuntimeError(f"{type(f).__name__}.backward returned {len(gxs)} gradients "
                                   f"for {len(f.inputs)} inputs")
            for x, gx in zip(f.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if x._freed:
                    raise RuntimeError("backward() reached a tensor whose graph an earlier backward() "
                                       "freed; pass retain_graph=True to the first call")
                if gx.shape != x.shape:
                    raise RuntimeError(f"{type(f).__name__}.backward gave a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                grads[x._id] = gx if x._id not in grads else grads[x._id] + gx
                if x.creator is None or x._retain_grad:
                    x._store_grad(gx)
                push(x.creator)
            if not retain_graph:
                f.release()

    def _store_grad(self, g):
        if self.creator is not None and not self._retain_grad:
            return
        g = g.astype(self.dtype, copy=False)
        self.grad = g.copy() if self.grad is None else self.grad + g

    # ---- operators and methods that are ops (+ - * / @, .sum(), .to(), .astype(), ...):
    # defined in minimrcnn.functional and bound onto Tensor there (functional/_tensor_methods.py),
    # so that this file needs nothing from the layer above it
    def __hash__(self):
        return id(self)


_sequence = itertools.count(1)     # numbers every graph node in creation order


class Function:
    """One differentiable op: ``forward(*arrays) -> array(s)``, ``backward(*grads) -> grads``.

    Non-array arguments (stride, axis, ...) go to ``__init__``; ``__call__`` takes tensors
    (or arrays / scalars), checks that they share a device and a floating dtype, runs
    ``forward`` on their arrays and, when a gradient is needed, links the outputs to this node.
    ``backward`` returns one gradient per input (``None`` where an input needs none).
    """

    generation = 0
    sequence_nr = 0    # creation order of the graph's nodes: backward's tie-break
    inputs = ()        # the input tensors, or an _Edge for an intermediate one (see below)
    outputs = ()       # weak references: a node does not keep its outputs alive
    output_meta = ()   # (id, shape, dtype) of each output, for backward after they are gone
    needs_input_grad = ()   # per input: does it need a gradient? (forward may skip saving)
    released = False

    def __call__(self, *inputs):
        tensors = [as_tensor(x) for x in inputs]
        self._check_inputs(tensors)
        self.needs_input_grad = tuple(is_grad_enabled() and t.requires_grad for t in tensors)
        ys = self.forward(*[t.data for t in tensors])
        single = not isinstance(ys, tuple)
        ys = (ys,) if single else ys
        needs_grad = any(self.needs_input_grad)
        outputs = [Tensor(y, requires_grad=needs_grad and y.dtype.kind == "f") for y in ys]
        if needs_grad:
            # Leaves are kept (their .grad is filled); an intermediate tensor is remembered only
            # as an _Edge, so its array is freed as soon as nothing else needs it: what backward
            # needs of it, the op saved in forward. This halves a ResNet's training memory.
            self.inputs = [t if t.creator is None or t._retain_grad else _Edge(t) for t in tensors]
            self.generation = max(t.generation for t in tensors)
            self.sequence_nr = next(_sequence)
            for o in outputs:
                o.creator, o.generation = self, self.generation + 1
            self.outputs = [weakref.ref(o) for o in outputs]
            self.output_meta = [(o._id, o.shape, o.dtype) for o in outputs]
        return outputs[0] if single else tuple(outputs)

    def _check_inputs(self, tensors):
        name = type(self).__name__
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            where = ", ".join(f"input {i}: {t.device}" for i, t in enumerate(tensors))
            raise ValueError(f"{name}: inputs are on different devices ({where}); move them with .to()")
        floats = {t.dtype for t in tensors if t.dtype.kind == "f"}
        if len(floats) > 1:
            where = ", ".join(f"input {i}: {t.dtype}" for i, t in enumerate(tensors))
            raise TypeError(f"{name}: floating inputs have different dtypes ({where}); cast one with .astype()")

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def release(self):
        """Free the graph behind this node (saved arrays, links to inputs)."""
        for ref in self.outputs:
            o = ref()
            if o is not None:
                o.creator, o._freed = None, True
        self.__dict__.clear()
        self.released = True


class _Edge:
    """What the graph keeps of an intermediate input tensor: its identity, shape and creator,
    not its array. Backward needs nothing more of it."""

    __slots__ = ("_id", "creator", "generation", "shape")
    requires_grad = True           # an intermediate tensor exists only where grad is recorded
    _retain_grad = False

    def __init__(self, t):
        self._id, self.creator, self.generation, self.shape = t._id, t.creator, t.generation, t.shape

    @property
    def _freed(self):
        return self.creator.released
