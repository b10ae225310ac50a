"""Weight initialisation, as ``torch.nn.init``: fill a Parameter (or array) in place.

Each function draws on the CPU from a NumPy ``Generator`` and copies the values into the
tensor's array, so it keeps its dtype and device. The generator is ``generator=`` when given,
else this module's global one: ``manual_seed(seed)`` makes every layer's default
initialisation reproducible (it starts seeded with ``0``, so a fresh process is deterministic,
as torch's default generator is).

The variance-preserving schemes (He et al. 2015; Glorot & Bengio 2010) scale by the fans of a
weight of shape ``(out, in, *kernel)``: ``fan_in = in * prod(kernel)``, ``fan_out = out *
prod(kernel)``.
"""
import math

import numpy as np

from ..autograd.tensor import Tensor
from ..backend import get_array_module

__all__ = ["manual_seed", "initial_seed", "get_generator", "calculate_gain", "uniform_", "normal_",
           "constant_", "zeros_", "ones_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
           "kaiming_normal_"]

_seed = 0
_generator = np.random.default_rng(_seed)


def manual_seed(seed):
    """Reseed the global generator that every init function (and layer default) draws from."""
    global _generator, _seed
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _generator


def initial_seed():
    return _seed


def get_generator(generator=None):
    """``generator`` itself, a new Generator for an int seed, or the global one for None."""
    if generator is None:
        return _generator
    if isinstance(generator, (int, np.integer)):
        return np.random.default_rng(int(generator))
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def _array(t):
    arr = t.data if isinstance(t, Tensor) else t
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise TypeError(f"init: expected a Tensor/Parameter or an array, got {type(t).__name__}")
    return arr


def _fill(t, values):
    """Write NumPy ``values`` into ``t``'s array in place (dtype and device kept); return t."""
    arr = _array(t)
    xp = get_array_module(arr)
    arr[...] = xp.asarray(values, dtype=arr.dtype) if xp is not np else values
    return t


def _calculate_fan_in_and_fan_out(t):
    """``(fan_in, fan_out)`` of a weight ``(out, in, *kernel)``: ``in * k`` and ``out * k`` with
    ``k = prod(kernel)`` (as torch; a ConvTranspose2d weight ``(in, out/groups, kh, kw)`` thus
    gets ``fan_in = out/groups * kh * kw``)."""
    shape = _array(t).shape
    if len(shape) < 2:
        raise ValueError(f"Fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(t, mode):
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


def calculate_gain(nonlinearity, param=None):
    """The gain that keeps activations' variance through ``nonlinearity`` (torch's table):

    linear, conv*, sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);  selu: 3/4;
    leaky_relu: sqrt(2 / (1 + slope^2)) with ``slope = param`` (default 0.01).
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid")
    if nonlinearity in linear_fns:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope (param) must be a number, got {param!r}")
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, a=0.0, b=1.0, generator=None):
    """Fill with draws from $U(a, b)$."""
    if not a <= b:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    return _fill(t, get_generator(generator).uniform(a, b, _array(t).shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    """Fill with draws from $N(mean, std^2)$."""
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    return _fill(t, get_generator(generator).normal(mean, std, _array(t).shape))


def constant_(t, val):
    """Fill with ``val``."""
    _array(t)[...] = val
    return t


def zeros_(t):
    return constant_(t, 0)


def ones_(t):
    return constant_(t, 1)


def xavier_uniform_(t, gain=1.0, generator=None):
    """Glorot: $U(-a, a)$ with $a = gain \\sqrt{6 / (fan\\_in + fan\\_out)}$."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t, gain=1.0, generator=None):
    """Glorot: $N(0, std^2)$ with $std = gain \\sqrt{2 / (fan\\_in + fan\\_out)}$."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: $U(-b, b)$ with $b = gain \\sqrt{3 / fan}$, $gain$ = ``calculate_gain(nonlinearity, a)``.

    ``a`` is the negative slope of the rectifier that follows (0 for ReLU). torch's layers call
    it with ``a=sqrt(5)``, which gives $b = 1/\\sqrt{fan\\_in}$.
    """
    fan = _calculate_correct_fan(t, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He: $N(0, std^2)$ with $std = gain / \\sqrt{fan}$ (torchvision's ResNet uses
    ``mode="fan_out", nonlinearity="relu"``; the mask head too)."""
    fan = _calculate_correct_fan(t, mode)
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)
