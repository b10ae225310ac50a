"""Normalization layers: batch norm, frozen batch norm (torchvision's) and group norm.

All three normalize a channel-first input x (N, C, *) and apply a per-channel affine map::

    x_hat = (x - mean) / sqrt(var + eps)          y = weight[c] * x_hat + bias[c]

They differ in where mean and var come from:

* batch_norm, training: per channel, over the batch and the spatial axes (biased variance);
  the running buffers are then updated in place with the unbiased variance, as torch does.
* batch_norm, eval: the running buffers.
* frozen_batch_norm: the running buffers, folded into one scale and shift (torchvision's
  FrozenBatchNorm2d, the normalization of the detection backbones).
* group_norm: per sample and per group of C / G channels, over those channels and the spatial
  axes; it does not depend on the batch size, which is why detection heads trained with small
  batches use it.

When mean and var are statistics of x itself (batch norm in training, group norm), the
gradient flows through them too. With $\\hat g = \\partial L / \\partial \\hat x$ and the means
taken over the normalized axes, the classic result is

    dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sqrt(var + eps)
"""
import numpy as np

from ..autograd.registry import register_case
from ..autograd.tensor import Function, Tensor, as_array
from ..backend import device_of, get_array_module, to_device

__all__ = ["batch_norm", "frozen_batch_norm", "group_norm"]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _channel_shape(x):
    """(1, C, 1, ..., 1): a per-channel vector broadcast against x (N, C, *)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _normalize_backward(g_hat, x_hat, inv_std, axes):
    """dx from dL/dx_hat when mean and var are statistics of x over ``axes`` (see the top)."""
    return inv_std * (g_hat - g_hat.mean(axis=axes, keepdims=True)
                      - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True))


class _Affine:
    """Which optional inputs (weight, bias) a Function got, to unpack ``*arrays`` by name."""

    def __init__(self, has_weight, has_bias):
        self.has_weight, self.has_bias = has_weight, has_bias

    def split(self, arrays):
        arrays = list(arrays)
        x = arrays.pop(0)
        w = arrays.pop(0) if self.has_weight else None
        b = arrays.pop(0) if self.has_bias else None
        return x, w, b

    def grads(self, gx, gw, gb):
        return (gx,) + ((gw,) if self.has_weight else ()) + ((gb,) if self.has_bias else ())


# ---------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------
class BatchNorm(Function):
    """$y = w \\hat x + b$, $\\hat x = (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}$, per channel.

    Training: $\\mu, \\sigma^2$ are the batch mean and biased variance over (N, *), and the
    backward goes through them. Eval: ``mean``/``var`` are given (running buffers), constant.
    Inputs: x (N, C, *), then weight (C,) and bias (C,) when present.
    """

    def __init__(self, training, eps, has_weight, has_bias, mean=None, var=None):
        self.training, self.eps = training, eps
        self.affine = _Affine(has_weight, has_bias)
        self.mean, self.var = mean, var

    def forward(self, *arrays):
        x, w, b = self.affine.split(arrays)
        xp = get_array_module(x)
        shape = _channel_shape(x)
        self.axes = (0,) + tuple(range(2, x.ndim))            # every axis but the channels
        if self.training:
            mean = x.mean(axis=self.axes, keepdims=True)
            centered = x - mean
            var = (centered * centered).mean(axis=self.axes, keepdims=True)   # biased
            self.batch_mean, self.batch_var = mean.reshape(-1), var.reshape(-1)
        else:
            mean, var = self.mean.reshape(shape), self.var.reshape(shape)
            centered = x - mean
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x_hat = centered * self.inv_std
        self.w = w
        y = self.x_hat if w is None else self.x_hat * w.reshape(shape)
        return y if b is None else y + b.reshape(shape)

    def backward(self, gy):
        shape = _channel_shape(gy)
        g_hat = gy if self.w is None else gy * self.w.reshape(shape)
        if self.training:
            gx = _normalize_backward(g_hat, self.x_hat, self.inv_std, self.axes)
        else:
            gx = g_hat * self.inv_std
        gw = (gy * self.x_hat).sum(axis=self.axes) if self.affine.has_weight else None
        gb = gy.sum(axis=self.axes) if self.affine.has_bias else None
        return self.affine.grads(gx, gw, gb)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization (torch.nn.functional.batch_norm).

    x: (N, C, *). running_mean, running_var: (C,) buffers (arrays or Tensors), or None
    (training only). weight, bias: (C,) or None.

    training=True: normalize with the batch statistics over (N, *), $\\mu$ and the biased
    $\\sigma^2$, and update the buffers in place (when given), with n values per channel:

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * sigma^2 * n / (n - 1)

    training=False: normalize with running_mean and running_var.
    Returns y with x's shape; differentiable in x, weight and bias.
    """
    name = "batch_norm"
    _check_x(name, x)
    channels = x.shape[1]
    for arg, v in (("weight", weight), ("bias", bias)):
        _check_vector(name, arg, v, channels)
    if eps <= 0:
        raise ValueError(f"{name}: eps must be positive, got {eps!r}")
    has_weight, has_bias = weight is not None, bias is not None
    inputs = [x] + [v for v in (weight, bias) if v is not None]
    if training:
        count = x.shape[0] * int(np.prod(x.shape[2:]))
        if count <= 1:
            raise ValueError(f"{name}: training needs more than 1 value per channel to compute a "
                             f"variance, got x of shape {tuple(x.shape)}")
        if not np.isscalar(momentum) or isinstance(momentum, (bool, str)) or not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be a number in [0, 1], got {momentum!r}")
        rm = _buffer(name, "running_mean", running_mean, x, channels, writable=True)
        rv = _buffer(name, "running_var", running_var, x, channels, writable=True)
        fn = BatchNorm(True, eps, has_weight, has_bias)
        y = fn(*inputs)
        # side effect, as in torch: blend the batch statistics into the buffers, in place
        if rm is not None:
            rm[...] = momentum * fn.batch_mean + (1 - momentum) * rm
        if rv is not None:
            rv[...] = momentum * fn.batch_var * (count / (count - 1)) + (1 - momentum) * rv
        return y
    if running_mean is None or running_var is None:
        raise ValueError(f"{name}: eval mode (training=False) needs running_mean and running_var, "
                         f"got running_mean={type(running_mean).__name__}, "
                         f"running_var={type(running_var).__name__}")
    data = as_array(x)
    rm = _buffer(name, "running_mean", running_mean, data, channels, writable=False)
    rv = _buffer(name, "running_var", running_var, data, channels, writable=False)
    fn = BatchNorm(False, eps, has_weight, has_bias, rm.astype(data.dtype, copy=False),
                   rv.astype(data.dtype, copy=False))
    return fn(*inputs)


# ---------------------------------------------------------------------------------------
# frozen batch norm
# ---------------------------------------------------------------------------------------
class FrozenBatchNorm(Function):
    """torchvision's FrozenBatchNorm2d: $y = x \\cdot s + t$ per channel, with

        s = w / sqrt(rv + eps),        t = b - rm * s.

    Inputs x (N, C, *), weight, bias, running_mean, running_var (C,); every one gets a
    gradient (in torchvision the four vectors are buffers and need none, and then only the
    cheap ones are computed):

        dx = g s     db = sum g     drm = -s sum g
        dw = u / sqrt(rv + eps)     drv = -u w / (2 (rv + eps)^{3/2}),   u = sum g (x - rm)
    """

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x, weight, bias, running_mean, running_var):
        xp = get_array_module(x)
        shape = _channel_shape(x)
        self.inv_std = 1 / xp.sqrt(running_var + self.eps)     # torchvision: rsqrt(rv + eps)
        self.scale = weight * self.inv_std
        shift = bias - running_mean * self.scale
        # x is needed only for the gradients of weight and running_var (buffers in torchvision)
        self.need_weight, self.need_var = self.needs_input_grad[1], self.needs_input_grad[4]
        if self.need_weight or self.need_var:
            self.x, self.weight, self.running_mean = x, weight, running_mean
        y = x * self.scale.reshape(shape)
        y += shift.reshape(shape)                               # in place: one temporary less
        return y

    def backward(self, gy):
        shape = _channel_shape(gy)
        axes = (0,) + tuple(range(2, gy.ndim))
        gx = gy * self.scale.reshape(shape)
        g_sum = gy.sum(axis=axes)
        g_bias, g_mean = g_sum, -self.scale * g_sum
        g_weight = g_var = None
        if self.need_weight or self.need_var:                            # one more pass over x
            u = (gy * (self.x - self.running_mean.reshape(shape))).sum(axis=axes)
            g_weight = u * self.inv_std
            g_var = -0.5 * u * self.weight * self.inv_std ** 3
        return gx, g_weight, g_bias, g_mean, g_var


def frozen_batch_norm(x, weight, bias, running_mean, running_var, eps=1e-5):
    """Batch norm with fixed statistics, as torchvision's FrozenBatchNorm2d computes it.

    $y = x \\cdot s + (b - rm \\cdot s)$ with $s = w / \\sqrt{rv + \\epsilon}$, per channel.
    x: (N, C, *); weight, bias, running_mean, running_var: (C,).

    eps: torchvision's FrozenBatchNorm2d defaults to 1e-5 (since 0.9; 0 before), but its
    ``maskrcnn_resnet50_fpn`` (and the other v1 detection models) resets eps to 0.0 when it
    loads the COCO weights; pass eps=0.0 to reproduce those detections exactly.
    """
    name = "frozen_batch_norm"
    _check_x(name, x)
    channels = x.shape[1]
    for arg, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                   ("running_var", running_var)):
        if v is None:
            raise ValueError(f"{name}: {arg} is required (a ({channels},) vector), got None")
        _check_vector(name, arg, v, channels)
    if eps < 0:
        raise ValueError(f"{name}: eps must be >= 0, got {eps!r}")
    return FrozenBatchNorm(eps)(x, weight, bias, running_mean, running_var)


# ---------------------------------------------------------------------------------------
# group norm
# ---------------------------------------------------------------------------------------
class GroupNorm(Function):
    """$y = w \\hat x + b$ with $\\hat x$ normalized per sample over each group of channels.

    x (N, C, *) is viewed as (N, G, C/G * prod(*)); mean and biased variance are taken over
    the last axis. Inputs: x, then weight (C,) and bias (C,) when present.
    """

    def __init__(self, num_groups, eps, has_weight, has_bias):
        self.num_groups, self.eps = num_groups, eps
        self.affine = _Affine(has_weight, has_bias)

    def forward(self, *arrays):
        x, w, b = self.affine.split(arrays)
        xp = get_array_module(x)
        shape = _channel_shape(x)
        grouped = x.reshape(x.shape[0], self.num_groups, -1)          # (N, G, C/G * prod(*))
        mean = grouped.mean(axis=2, keepdims=True)
        centered = grouped - mean
        var = (centered * centered).mean(axis=2, keepdims=True)
        self.inv_std = 1 / xp.sqrt(var + self.eps)                     # (N, G, 1)
        self.x_hat = (centered * self.inv_std).reshape(x.shape)
        self.w = w
        y = self.x_hat if w is None else self.x_hat * w.reshape(shape)
        return y if b is None else y + b.reshape(shape)

    def backward(self, gy):
        shape = _channel_shape(gy)
        axes = (0,) + tuple(range(2, gy.ndim))
        n = gy.shape[0]
        g_hat = gy if self.w is None else gy * self.w.reshape(shape)
        gx = _normalize_backward(g_hat.reshape(n, self.num_groups, -1),
                                 self.x_hat.reshape(n, self.num_groups, -1), self.inv_std, axes=2)
        gw = (gy * self.x_hat).sum(axis=axes) if self.affine.has_weight else None
        gb = gy.sum(axis=axes) if self.affine.has_bias else None
        return self.affine.grads(gx.reshape(gy.shape), gw, gb)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalization (torch.nn.functional.group_norm; Wu & He, 2018).

    x: (N, C, *) with C divisible by num_groups; weight, bias: (C,) or None.
    For sample n and group g (channels g*C/G ... (g+1)*C/G - 1), $\\mu_{ng}$ and the biased
    $\\sigma^2_{ng}$ are taken over those channels and all spatial positions; then
    $y = w_c (x - \\mu_{ng}) / \\sqrt{\\sigma^2_{ng} + \\epsilon} + b_c$.
    Returns y with x's shape; differentiable in x, weight and bias.
    """
    name = "group_norm"
    _check_x(name, x)
    channels = x.shape[1]
    is_int = isinstance(num_groups, (int, np.integer)) and not isinstance(num_groups, bool)
    if not is_int or num_groups < 1:
        raise ValueError(f"{name}: num_groups must be a positive int, got {num_groups!r}")
    if channels % num_groups:
        raise ValueError(f"{name}: x has {channels} channels, not divisible by "
                         f"num_groups={num_groups}")
    for arg, v in (("weight", weight), ("bias", bias)):
        _check_vector(name, arg, v, channels)
    if eps <= 0:
        raise ValueError(f"{name}: eps must be positive, got {eps!r}")
    inputs = [x] + [v for v in (weight, bias) if v is not None]
    return GroupNorm(int(num_groups), eps, weight is not None, bias is not None)(*inputs)


# ---------------------------------------------------------------------------------------
# the checks at the door (messages name the argument and the value)
# ---------------------------------------------------------------------------------------
def _check_x(name, x):
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name}: x must be (N, C, *) with at least 2 dimensions, "
                         f"got shape {shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: x must be floating, got dtype {x.dtype}")


def _check_vector(name, arg, v, channels):
    """A per-channel vector must have shape (C,)."""
    if v is not None and tuple(v.shape) != (channels,):
        raise ValueError(f"{name}: {arg} has shape {tuple(v.shape)} but x has {channels} channels; "
                         f"expected ({channels},)")


def _buffer(name, arg, buf, x, channels, writable):
    """The raw array of a running buffer, checked (shape, floating, and device when written)."""
    if buf is None:
        return None
    arr = as_array(buf)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: {arg} must be floating, got dtype {arr.dtype}")
    _check_vector(name, arg, arr, channels)
    if device_of(arr) != device_of(x):
        if writable:
            raise ValueError(f"{name}: {arg} is on {device_of(arr)} but x is on {device_of(x)}; "
                             f"the running statistics are updated in place, so move them first")
        arr = to_device(arr, device_of(x))
    return arr


# ---------------------------------------------------------------------------------------
# gradient checks
# ---------------------------------------------------------------------------------------
def _vec(r, c, low=None, high=None):
    return r.standard_normal(c) if low is None else r.uniform(low, high, c)


_RUNNING = (np.array([0.3, -0.5, 1.0]), np.array([0.5, 2.0, 1.3]))   # eval-mode statistics


def _running_like(x):
    """The eval-mode statistics on x's device (the registry runs every case on every backend)."""
    return tuple(Tensor(to_device(a, x.device)) for a in _RUNNING)


register_case("batch_norm", "train_affine_4d",
              lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
              lambda r: [r.standard_normal((3, 3, 4, 5)) * 2 + 1, _vec(r, 3), _vec(r, 3)])
register_case("batch_norm", "train_no_affine_2d_noncontiguous",
              lambda x: batch_norm(x, None, None, training=True),
              lambda r: [r.standard_normal((6, 8))[:, ::2]])
register_case("batch_norm", "train_weight_only_3d",
              lambda x, w: batch_norm(x, None, None, w, training=True, eps=1e-3),
              lambda r: [r.standard_normal((2, 4, 7)), _vec(r, 4)])
register_case("batch_norm", "eval_affine",
              lambda x, w, b: batch_norm(x, *_running_like(x), w, b, training=False),
              lambda r: [r.standard_normal((2, 3, 4, 4)), _vec(r, 3), _vec(r, 3)])
register_case("frozen_batch_norm", "all_inputs",
              lambda x, w, b, rm, rv: frozen_batch_norm(x, w, b, rm, rv),
              lambda r: [r.standard_normal((2, 3, 4, 5)), _vec(r, 3), _vec(r, 3), _vec(r, 3),
                         _vec(r, 3, 0.5, 2.0)])
register_case("frozen_batch_norm", "eps0_noncontiguous",
              lambda x, w, b, rm, rv: frozen_batch_norm(x, w, b, rm, rv, eps=0.0),
              lambda r: [r.standard_normal((2, 4, 3, 10))[..., ::3], _vec(r, 4), _vec(r, 4),
                         _vec(r, 4), _vec(r, 4, 0.5, 2.0)])
register_case("group_norm", "affine_4d_groups2",
              lambda x, w, b: group_norm(x, 2, w, b),
              lambda r: [r.standard_normal((2, 4, 3, 5)) * 3 - 1, _vec(r, 4), _vec(r, 4)])
register_case("group_norm", "one_group_no_affine_3d",
              lambda x: group_norm(x, 1),
              lambda r: [r.standard_normal((3, 4, 6))])
register_case("group_norm", "instance_norm_noncontiguous",
              lambda x, w, b: group_norm(x, 3, w, b, eps=1e-3),
              lambda r: [r.standard_normal((2, 3, 4, 10))[..., ::2], _vec(r, 3), _vec(r, 3)])
