"""Module and Parameter: the bookkeeping that turns functions into models.

A :class:`Module` owns three kinds of state, registered by plain attribute assignment as in
torch::

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)         # a sub-Module
            self.scale = nn.Parameter(np.ones(8, np.float32))  # a Parameter (trained)
            self.register_buffer("count", np.zeros((), np.int64))  # a buffer (saved, not trained)

        def forward(self, x):
            return self.conv(x) * self.scale.reshape(1, 8, 1, 1)

- **Parameters** are Tensors with ``requires_grad=True``; ``parameters()`` hands them to the
  optimizer, which updates their ``.data`` in place.
- **Buffers** are plain arrays (NumPy or CuPy), e.g. BatchNorm's running statistics: saved in
  ``state_dict()`` and moved by ``to()``, but never given a gradient.
- **Sub-modules** form a tree; every recursive method (``named_parameters``, ``state_dict``,
  ``train``, ``to``, ...) walks it depth-first, a module's own entries before its children's, so
  names are dotted paths exactly as in torch: ``layer1.0.conv1.weight``.
"""
import copy
from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd.tensor import Tensor, as_array
from ..backend import as_numpy, device_of, get_array_module, to_device

__all__ = ["Module", "Parameter", "IncompatibleKeys"]


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable: ``Parameter(array, requires_grad=True)``.

    The array is kept as it is (no copy, no dtype change); layers create float32 arrays.
    """

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What ``load_state_dict(..., strict=False)`` did not match."


def _as_array(value, name):
    """The raw array of a Tensor/array/number given for buffer or checkpoint entry ``name``."""
    try:
        return as_array(value)
    except Exception as e:  # noqa: BLE001 - reported with the key's name
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from e


class _RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Module:
    """Base class of every layer and model. Subclasses define ``forward`` and call
    ``super().__init__()`` before assigning attributes."""

    training = True

    def __init__(self):
        d = self.__dict__   # bypass __setattr__, which needs these dicts to exist
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["training"] = True

    # ---- registration ----------------------------------------------------------------------
    def _check_ready(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call "
                                 f"(call super().__init__() first in {type(self).__name__})")

    @staticmethod
    def _check_name(name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't be empty or contain \".\", got {name!r}")

    def register_parameter(self, name, param):
        """Add ``param`` (a Parameter, or None for an absent one such as ``bias=False``)."""
        self._check_ready("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} "
                            f"(nn.Parameter or None expected)")
        self._remove_everywhere(name)
        self._parameters[name] = param

    def register_buffer(self, name, array, persistent=True):
        """Add a buffer: an array that is state but not trained (running means, counters).

        ``persistent=False`` keeps it out of ``state_dict()``. A Tensor is stored as its array.
        """
        self._check_ready("buffers")
        self._check_name(name, "buffer")
        self._remove_everywhere(name)
        self._buffers[name] = None if array is None else _as_array(array, name)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Add a sub-module (or None) under ``name``; same as ``self.name = module``."""
        self._check_ready("child modules")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f"module name must be a non-empty string without \".\", got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass (child {name!r})")
        self._remove_everywhere(name)
        self._modules[name] = module

    register_module = add_module

    def _remove_everywhere(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                f"(nn.Parameter or None expected)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"(nn.Module or None expected)")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            self._buffers[name] = None if value is None else _as_array(value, name)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the three registries
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward (e.g. to keep feature maps
        for plotting); a non-None return value replaces the output. Returns a handle with
        ``.remove()``."""
        key = object()
        self._forward_hooks[key] = hook
        return _RemovableHandle(self._forward_hooks, key)

    # ---- walking the tree ------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        """Yield ``(dotted_name, module)`` for this module ("") and all descendants, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """Yield ``(name, module)`` for the direct sub-modules, in assignment order."""
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, get_members, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in get_members(module):
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """Yield ``(dotted_name, Parameter)``; a parameter shared by two modules appears once."""
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        """Yield ``(dotted_name, array)`` for every buffer (persistent or not)."""
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The sub-module at dotted path ``target`` (``""`` is this module)."""
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} "
                                     f"(looking up {target!r})")
            module = module._modules[part]
        return module

    # ---- modes and gradients ---------------------------------------------------------------
    def train(self, mode=True):
        """Set ``.training`` on this module and every descendant (affects BatchNorm and the
        detection heads, which return losses in training and detections in eval)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool, got {mode!r}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        """Same as ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter, e.g. the ResNet stem."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's ``.grad`` (to None, or to zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant, children first, then on self (as torch);
        used for custom initialisation. Returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- device and dtype ------------------------------------------------------------------
    def _map_arrays(self, fn, floating_only=False):
        """Replace every parameter's ``.data``/``.grad`` and every buffer by ``fn(array)``.

        Parameters keep their identity (an optimizer holding them stays valid)."""
        def keep(a):
            return floating_only and a.dtype.kind != "f"
        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name, b in m._buffers.items():
                if b is not None and not keep(b):
                    m._buffers[name] = fn(b)
        return self

    def to(self, device_or_dtype):
        """Move parameters and buffers to a device (``"cpu"``/``"cuda"``) or cast floating ones
        to a dtype (``np.float64``). In place; returns self."""
        if isinstance(device_or_dtype, str):
            return self._map_arrays(lambda a: to_device(a, device_or_dtype))
        return self.astype(device_or_dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def astype(self, dtype):
        """Cast floating parameters and buffers (not integer counters) to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"astype: dtype must be floating, got {dtype}")
        return self._map_arrays(lambda a: a.astype(dtype, copy=False), floating_only=True)

    def double(self):
        """float64 everywhere: for gradient checks."""
        return self.astype(np.float64)

    def float(self):
        return self.astype(np.float32)

    # ---- state dict ------------------------------------------------------------------------
    def _state_entries(self):
        """OrderedDict ``dotted_name -> (module, kind, attr)`` of what ``state_dict`` saves."""
        entries = OrderedDict()
        for prefix, m in self.named_modules():
            pre = f"{prefix}." if prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    entries[pre + name] = (m, "param", name)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent_buffers:
                    entries[pre + name] = (m, "buffer", name)
        return entries

    def state_dict(self):
        """``{dotted_name: array}`` of every parameter and persistent buffer, torch's key names
        and order (a module's parameters, then its buffers, then its children).

        The arrays are copies (torch shares storage instead), so a state dict is a snapshot that
        later training does not change. They stay on the module's device; ``as_numpy`` them to
        save."""
        sd = OrderedDict()
        for key, (m, kind, attr) in self._state_entries().items():
            a = m._parameters[attr].data if kind == "param" else m._buffers[attr]
            sd[key] = a.copy()
        return sd

    def _upgrade_state_dict(self, state_dict, prefix):
        """Hook: edit ``state_dict`` entries under ``prefix`` before loading (old key names,
        keys this module ignores). Default: nothing. See FrozenBatchNorm2d and BatchNorm2d."""

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place (dtype and
        device of the model are kept).

        Every shape must match (an error lists each mismatch with both shapes), and every entry
        must hold real numbers (a string or complex array is refused, never cast). With
        ``strict=True`` the key sets must also match exactly (an error lists the missing and
        unexpected keys); with ``strict=False`` the unmatched keys are returned as
        ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of name -> array, got "
                            f"{type(state_dict).__name__}")
        state_dict = OrderedDict(state_dict)   # a shallow copy: the hooks may edit it
        for prefix, m in self.named_modules():
            m._upgrade_state_dict(state_dict, f"{prefix}." if prefix else "")
        entries = self._state_entries()
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict if k not in entries]

        arrays, mismatched = {}, []
        for key, (m, kind, attr) in entries.items():
            if key not in state_dict:
                continue
            src = _as_array(state_dict[key], key)
            dst = m._parameters[attr].data if kind == "param" else m._buffers[attr]
            if tuple(src.shape) != tuple(dst.shape):
                mismatched.append(f"shape mismatch for {key}: checkpoint {tuple(src.shape)} "
                                  f"vs model {tuple(dst.shape)}")
            if src.dtype.kind not in "biuf":        # never cast strings or complex numbers
                mismatched.append(f"dtype of {key}: checkpoint {src.dtype} cannot be loaded into "
                                  f"{dst.dtype} (real numbers only)")
            arrays[key] = src

        errors = list(mismatched)
        if strict:
            if missing:
                errors.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
            if unexpected:
                errors.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(errors))

        for key, src in arrays.items():
            m, kind, attr = entries[key]
            dst = m._parameters[attr].data if kind == "param" else m._buffers[attr]
            src = to_device(as_numpy(src), device_of(dst)) if device_of(src) != device_of(dst) else src
            dst[...] = src.astype(dst.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ---- printing --------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside the parentheses of this module's repr, e.g. ``3, 8, kernel_size=(3, 3)``."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        lines = [extra] if extra else []
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __deepcopy__(self, memo):
        # the default deepcopy, spelled out so that no __getattr__ runs on a half-built object
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new
