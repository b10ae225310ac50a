"""Learning-rate schedules, stepped once per iteration (as Detectron / maskrcnn-benchmark).

``WarmupMultiStepLR`` is the Mask R-CNN schedule: the paper trains at lr 0.02 and divides it
by 10 at given iterations (e.g. 120k and 160k of 180k with 8 GPUs); the reference
implementations start with a short linear warmup:

    lr(it) = base_lr * warmup(it) * gamma ** (number of milestones <= it)
    warmup(it) = warmup_factor * (1 - it / warmup_iters) + it / warmup_iters   for it < warmup_iters
                 (or warmup_factor for warmup_method="constant"), and 1 afterwards.

Use::

    scheduler = WarmupMultiStepLR(optimizer, milestones=[120000, 160000])
    for it in range(max_iter):
        ...; optimizer.step(); scheduler.step()

Like torch's schedulers, the constructor already sets the lr of iteration 0 in the optimizer's
param groups (``last_epoch`` counts iterations here, the name is torch's).
"""
from bisect import bisect_right

__all__ = ["LRScheduler", "WarmupMultiStepLR"]


class LRScheduler:
    """Base: remembers each group's ``initial_lr`` and writes ``get_lr()`` into the groups."""

    def __init__(self, optimizer, last_epoch=-1):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(optimizer.param_groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param group {i} has no 'initial_lr'; last_epoch={last_epoch} "
                                   f"resumes a schedule, which needs it (or pass last_epoch=-1)")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        """Advance one iteration and set each param group's lr."""
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, self._last_lr):
            g["lr"] = lr

    def get_last_lr(self):
        """The lrs set by the latest ``step()`` (one per param group)."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer (plain Python values)."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)
        for g, lr in zip(self.optimizer.param_groups, self._last_lr):
            g["lr"] = lr


class WarmupMultiStepLR(LRScheduler):
    """Multi-step decay with warmup (maskrcnn-benchmark's, same formula as Detectron2's).

    milestones: increasing iteration numbers where lr is multiplied by ``gamma``.
    warmup_factor, warmup_iters: Detectron / maskrcnn-benchmark defaults (1/3, 500);
    Detectron2 and torchvision's reference scripts use 1/1000 and 1000.
    warmup_method: "linear" (ramp from ``warmup_factor`` to 1) or "constant".
    """

    def __init__(self, optimizer, milestones, gamma=0.1, warmup_factor=1.0 / 3, warmup_iters=500,
                 warmup_method="linear", last_epoch=-1):
        milestones = list(milestones)
        if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in milestones):
            raise ValueError(f"WarmupMultiStepLR: milestones must be non-negative ints, got {milestones}")
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"WarmupMultiStepLR: milestones must be strictly increasing, got {milestones}")
        if not gamma > 0:
            raise ValueError(f"WarmupMultiStepLR: gamma must be > 0, got {gamma!r}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"WarmupMultiStepLR: warmup_method must be 'linear' or 'constant', "
                             f"got {warmup_method!r}")
        if not isinstance(warmup_iters, int) or warmup_iters < 0:
            raise ValueError(f"WarmupMultiStepLR: warmup_iters must be an int >= 0, got {warmup_iters!r}")
        if not 0 < warmup_factor <= 1:
            raise ValueError(f"WarmupMultiStepLR: warmup_factor must be in (0, 1], got {warmup_factor!r}")
        for i, g in enumerate(optimizer.param_groups):
            if g["lr"] < 0:
                raise ValueError(f"WarmupMultiStepLR: lr of param group {i} is negative ({g['lr']})")
        self.milestones, self.gamma = milestones, gamma
        self.warmup_factor, self.warmup_iters, self.warmup_method = warmup_factor, warmup_iters, warmup_method
        super().__init__(optimizer, last_epoch)

    def _warmup(self, it):
        if it >= self.warmup_iters:
            return 1.0
        if self.warmup_method == "constant":
            return self.warmup_factor
        alpha = it / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha

    def get_lr(self):
        """lr of iteration ``last_epoch`` for each param group."""
        it = self.last_epoch
        factor = self._warmup(it) * self.gamma ** bisect_right(self.milestones, it)
        return [base_lr * factor for base_lr in self.base_lrs]
