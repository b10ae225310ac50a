"""Layers and models as torch.nn: Module, Parameter, containers, layers, and ``nn.init``.

    from minimrcnn import nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    net.state_dict().keys()   # '0.weight', '0.bias', '1.weight', ..., '1.num_batches_tracked'
"""
from .. import functional  # noqa: F401  (nn.functional, as in torch)
from . import init  # noqa: F401
from .module import IncompatibleKeys, Module, Parameter  # noqa: F401
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all

__all__ = ["Module", "Parameter", "IncompatibleKeys", "init", "functional"] + list(_layers_all)
