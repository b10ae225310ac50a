"""Optimizers and schedules as torch.optim: SGD (momentum, weight decay, nesterov) and the
Mask R-CNN warmup + multi-step learning-rate schedule."""
from .sgd import SGD, Optimizer  # noqa: F401
from . import lr_scheduler  # noqa: F401
from .lr_scheduler import LRScheduler, WarmupMultiStepLR  # noqa: F401

__all__ = ["Optimizer", "SGD", "lr_scheduler", "LRScheduler", "WarmupMultiStepLR"]
