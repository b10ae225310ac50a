"""Argument checks shared by the functional ops, the layers, the detection ops and the model.

Each one returns the checked value in its plain Python form or raises a ``ValueError`` that
names the op, the argument and the value::

    stride = int_pair(stride, "stride", "conv2d", minimum=1)     # 2 -> (2, 2); 1.5 -> ValueError

Sizes, strides and paddings end up as C ``int`` (32-bit) in the compiled kernels and in the
CUDA launches, so they must also be at most ``INT32_MAX``.
"""
import math
import numbers

import numpy as np

__all__ = ["INT32_MAX", "is_int", "int_pair", "positive_int", "fraction"]

INT32_MAX = 2 ** 31 - 1


def is_int(value):
    """True for Python and NumPy integers; False for bools (``True`` is not a stride)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def int_pair(value, name, op, minimum=0, maximum=INT32_MAX):
    """An int or a pair of ints -> a pair of Python ints in [minimum, maximum] (torch's ``_pair``).

    value: e.g. a kernel size, a stride, an output size; name: the argument's name; op: the
    function or layer it belongs to (both are printed in the error).
    """
    if is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_int, value)):
        pair = tuple(value)
    else:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    if max(pair) > maximum:
        raise ValueError(f"{op}: {name} must be at most {maximum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def positive_int(value, name, op, maximum=INT32_MAX):
    """``value`` as a Python int in [1, maximum]."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    if value > maximum:
        raise ValueError(f"{op}: {name} must be at most {maximum}, got {value!r}")
    return int(value)


def fraction(value, name, op):
    """``value`` as a Python float in [0, 1] (a threshold, a fraction); bools and NaN are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: {name} must be a number in [0, 1], got {value!r}")
    return float(value)
