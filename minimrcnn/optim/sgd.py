"""Stochastic gradient descent with momentum and weight decay, exactly as ``torch.optim.SGD``.

For each parameter $p$ with gradient $g$ (parameters whose ``.grad`` is None are skipped):

    g  <- g + weight_decay * p                              (L2 penalty, added to the gradient)
    b  <- g                                  on the first step,
    b  <- momentum * b + (1 - dampening) * g  afterwards       (the momentum buffer)
    g  <- g + momentum * b   if nesterov,   else   g <- b
    p  <- p - lr * g

Mask R-CNN (Section 3.1) trains with lr 0.02, momentum 0.9, weight decay 0.0001.

Parameters can be given as one list or as param groups, each a dict with its own settings
(torch style), e.g. no weight decay on biases::

    optim.SGD([{"params": weights}, {"params": biases, "weight_decay": 0}],
              lr=0.02, momentum=0.9, weight_decay=1e-4)
"""
from ..autograd.tensor import Tensor
from ..backend import as_numpy, device_of, to_device

__all__ = ["Optimizer", "SGD"]


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts with "params" and settings) and
    per-parameter ``state`` (dict keyed by the Parameter)."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor) or isinstance(params, dict):
            raise TypeError(f"params must be an iterable of Parameters or of dicts (param groups), "
                            f"got a single {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list (params)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        """Add a dict ``{"params": [...], setting: value, ...}``; missing settings take the
        optimizer's defaults. A parameter may belong to one group only."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a param group must be a dict with a 'params' entry, got {group!r:.80}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] of group {len(self.param_groups)} is a "
                                f"{type(p).__name__}, not a Parameter/Tensor")
            if not p.is_leaf:
                raise ValueError(f"params[{i}] of group {len(self.param_groups)} is not a leaf "
                                 f"tensor (it was computed by {type(p.creator).__name__}); "
                                 f"optimize the Parameters themselves")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"param group has unknown setting(s) {sorted(unknown)}; known: "
                             f"{sorted(self.defaults)}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group (or twice "
                             "in one)")
        new = {**self.defaults, **group, "params": params}
        self._check_group(new, len(self.param_groups))
        self.param_groups.append(new)

    def _check_group(self, group, index):
        pass

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of all parameters (to None, or zeros with ``set_to_none=False``)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """``{"state": {index: {name: array}}, "param_groups": [settings + "params": indices]}``
        as torch: parameters are numbered across groups in order. Arrays are NumPy copies."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {index[id(p)]: {k: as_numpy(v).copy() if hasattr(v, "shape") else v
                                for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore settings and per-parameter state saved by ``state_dict`` (same groups, same
        sizes); arrays move to each parameter's device and dtype."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, the optimizer "
                             f"has {len(self.param_groups)}")
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(f"parameter group {i}: the loaded state dict has "
                                 f"{len(saved['params'])} parameters, the optimizer has "
                                 f"{len(mine['params'])}")
        params = {}
        for saved, mine in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], mine["params"]):
                params[idx] = p
            mine.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for idx, s in state_dict["state"].items():
            p = params[int(idx)]
            self.state[p] = {k: (to_device(as_numpy(v), device_of(p.data)).astype(p.dtype)
                                 if hasattr(v, "shape") else v) for k, v in s.items()}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0, weight_decay=0, dampening=0, nesterov=False)``; see the
    module docstring for the update."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_group(self, group, index):
        where = f" (param group {index})" if index else ""
        for name in ("lr", "momentum", "weight_decay", "dampening"):
            v = group[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"SGD: {name} must be a number >= 0, got {v!r}{where}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}{where}")

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` (optional) re-computes
        and returns the loss, as in torch."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            dampening, nesterov = group["dampening"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd != 0:
                    g = g + wd * p.data
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= momentum
                        buf += (1 - dampening) * g
                    g = g + momentum * buf if nesterov else buf
                p.data -= lr * g          # in place: the Parameter keeps its array
        return loss
