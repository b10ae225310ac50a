"""Layers: Modules that hold parameters/buffers and call one functional op in ``forward``.

Each layer's constructor follows torch.nn's signature and its ``reset_parameters`` (default
initialisation); the math lives in ``minimrcnn.functional``. Parameters are float32 unless
``dtype=`` says otherwise (``np.float64`` for gradient checks).
"""
import math
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..checks import int_pair, is_int, positive_int
from . import init
from .module import Module, Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "Identity", "Linear", "Conv2d",
           "ConvTranspose2d", "FrozenBatchNorm2d", "BatchNorm2d", "GroupNorm", "ReLU", "MaxPool2d",
           "Flatten"]


# ---- argument checks -----------------------------------------------------------------------
def _float_dtype(dtype, layer):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{layer}: dtype must be floating, got {dtype}")
    return dtype


# ---- containers ----------------------------------------------------------------------------
class Sequential(Module):
    """Modules applied in order: ``Sequential(conv, relu, pool)(x) == pool(relu(conv(x)))``.

    Children are named "0", "1", ... or by the keys of an OrderedDict given as the only
    argument (torchvision uses both).
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self), "Sequential")]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


def _index(idx, n, what):
    if not is_int(idx) or not -n <= idx < n:
        raise IndexError(f"{what} index {idx!r} is out of range for length {n}")
    return idx % n


class ModuleList(Module):
    """A list of Modules whose parameters are registered (a plain list would hide them).
    Children are named "0", "1", ...; no forward of its own."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self), "ModuleList"))]

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self), "ModuleList")), module)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    """A dict of Modules whose parameters are registered, in insertion order."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for k, m in (modules.items() if hasattr(modules, "items") else modules):
            self.add_module(k, m)


# ---- simple layers -------------------------------------------------------------------------
class Identity(Module):
    """$y = x$ (a placeholder where a layer is switched off)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(Module):
    """$y = \\max(x, 0)$. ``inplace`` is accepted for torchvision-style code and ignored (the
    autograd here has no in-place ops)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows moved by ``stride`` (default: ``kernel_size``), with
    ``padding`` of -inf: x (N, C, H, W) -> (N, C, Ho, Wo),
    Ho = floor((H + 2p - dilation (k - 1) - 1) / s) + 1 (ceil with ``ceil_mode``)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        name = "MaxPool2d"
        self.kernel_size = int_pair(kernel_size, "kernel_size", name, 1)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", name, 1)
        self.padding = int_pair(padding, "padding", name, 0)
        self.dilation = int_pair(dilation, "dilation", name, 1)
        self.ceil_mode = bool(ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding={padding!r} must be at most half of "
                             f"kernel_size={kernel_size!r}")

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


# ---- layers with parameters ----------------------------------------------------------------
class Linear(Module):
    """$y = x W^T + b$; x (..., in_features) -> (..., out_features).

    W (out_features, in_features) and b (out_features,) start as torch's: $U(-k, k)$ with
    $k = 1/\\sqrt{in\\_features}$ (``kaiming_uniform_(a=sqrt(5))`` for W).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        dtype = _float_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        self.bias = Parameter(np.empty(out_features, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    """Shared constructor checks, initialisation and repr of Conv2d and ConvTranspose2d."""

    def __init__(self, name, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, dtype, weight_shape_fn):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.out_channels = positive_int(out_channels, "out_channels", name)
        self.groups = positive_int(groups, "groups", name)
        if in_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} must be divisible by groups={groups}")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels={out_channels} must be divisible by groups={groups}")
        self.kernel_size = int_pair(kernel_size, "kernel_size", name, 1)
        self.stride = int_pair(stride, "stride", name, 1)
        self.padding = int_pair(padding, "padding", name, 0)
        self.dilation = int_pair(dilation, "dilation", name, 1)
        dtype = _float_dtype(dtype, name)
        self.weight = Parameter(np.empty(weight_shape_fn(), dtype))
        self.bias = Parameter(np.empty(out_channels, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """torch's default: W ~ kaiming_uniform_(a=sqrt(5)), i.e. $U(\\pm 1/\\sqrt{fan\\_in})$,
        and b ~ $U(\\pm 1/\\sqrt{fan\\_in})$."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution: x (N, in_channels, H, W) -> (N, out_channels, Ho, Wo) with
    Ho = floor((H + 2 padding - dilation (k - 1) - 1) / stride) + 1.

    weight (out_channels, in_channels / groups, kh, kw), bias (out_channels,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        k = int_pair(kernel_size, "kernel_size", "Conv2d", 1)
        super().__init__("Conv2d", in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias, dtype,
                         lambda: (out_channels, in_channels // groups) + k)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the mask head's 2x upsampling "deconv"):
    x (N, in_channels, H, W) -> (N, out_channels, Ho, Wo) with
    Ho = (H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1.

    weight (in_channels, out_channels / groups, kh, kw) -- note in before out, as torch.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, dtype=np.float32):
        name = "ConvTranspose2d"
        k = int_pair(kernel_size, "kernel_size", name, 1)
        s = int_pair(stride, "stride", name, 1)
        d = int_pair(dilation, "dilation", name, 1)
        op = int_pair(output_padding, "output_padding", name, 0)
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            raise ValueError(f"{name}: output_padding={output_padding!r} must be smaller than "
                             f"either stride={stride!r} or dilation={dilation!r}")
        super().__init__(name, in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, dtype, lambda: (in_channels, out_channels // groups) + k)
        self.output_padding = op

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


# ---- normalisation -------------------------------------------------------------------------
def _check_4d(x, name):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")


def _check_channels(x, n, name):
    if x.shape[1] != n:
        raise ValueError(f"{name}: expected {n} channels (dim 1), got input of shape {tuple(x.shape)}")


class FrozenBatchNorm2d(Module):
    """BatchNorm2d with fixed statistics and affine parameters (torchvision's detection
    backbones): $y = (x - \\mu) / \\sqrt{\\sigma^2 + eps} \\cdot w + b$ per channel.

    ``weight``, ``bias``, ``running_mean``, ``running_var`` are buffers (saved, never trained);
    a checkpoint's ``num_batches_tracked`` (from a BatchNorm2d) is ignored on load.
    """

    def __init__(self, num_features, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", "FrozenBatchNorm2d")
        if not eps >= 0:
            raise ValueError(f"FrozenBatchNorm2d: eps must be >= 0, got {eps!r}")
        self.eps = eps
        dtype = _float_dtype(dtype, "FrozenBatchNorm2d")
        self.register_buffer("weight", np.ones(num_features, dtype))
        self.register_buffer("bias", np.zeros(num_features, dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))

    def _upgrade_state_dict(self, state_dict, prefix):
        state_dict.pop(prefix + "num_batches_tracked", None)

    def forward(self, x):
        _check_4d(x, "FrozenBatchNorm2d")
        _check_channels(x, self.num_features, "FrozenBatchNorm2d")
        return F.frozen_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                   self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy 2015).

    Training: $y = (x - \\mu_B) / \\sqrt{\\sigma_B^2 + eps} \\cdot w + b$ with the batch's
    statistics, and the running ones updated as torch does:
    ``running = (1 - momentum) running + momentum * batch`` (the unbiased variance for
    ``running_var``); ``momentum=None`` gives the cumulative average ``1/num_batches_tracked``.
    Eval: the running statistics are used instead (unless ``track_running_stats=False``).

    Parameters ``weight`` (ones), ``bias`` (zeros) when ``affine``; buffers ``running_mean``,
    ``running_var``, ``num_batches_tracked`` (int64) when ``track_running_stats``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        name = "BatchNorm2d"
        self.num_features = positive_int(num_features, "num_features", name)
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dtype = _float_dtype(dtype, name)
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(b, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _upgrade_state_dict(self, state_dict, prefix):
        # checkpoints from before torch 0.4.1 (and some converted ones) lack the counter
        key = prefix + "num_batches_tracked"
        if self.track_running_stats and key not in state_dict and prefix + "running_mean" in state_dict:
            state_dict[key] = self.num_batches_tracked.copy()

    def forward(self, x):
        _check_4d(x, "BatchNorm2d")
        _check_channels(x, self.num_features, "BatchNorm2d")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1          # in place: a 0-d int64 array
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        # batch statistics in training, and in eval when there are no running ones
        use_batch_stats = self.training or self.running_mean is None
        update = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if update else None,
                            self.running_var if update else None, self.weight, self.bias,
                            training=use_batch_stats, momentum=factor, eps=self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class GroupNorm(Module):
    """Group normalisation (Wu & He 2018): channels split into ``num_groups`` groups, each
    normalised over (C/G, H, W) per sample, then scaled per channel:
    $y = (x - \\mu_g) / \\sqrt{\\sigma_g^2 + eps} \\cdot w_c + b_c$. Independent of the batch
    size, so it trains the same in train and eval."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        name = "GroupNorm"
        self.num_groups = positive_int(num_groups, "num_groups", name)
        self.num_channels = positive_int(num_channels, "num_channels", name)
        if num_channels % num_groups:
            raise ValueError(f"{name}: num_channels={num_channels} must be divisible by "
                             f"num_groups={num_groups}")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        self.eps, self.affine = eps, bool(affine)
        dtype = _float_dtype(dtype, name)
        if affine:
            self.weight = Parameter(np.ones(num_channels, dtype))
            self.bias = Parameter(np.zeros(num_channels, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected {self.num_channels} channels (dim 1), got input "
                             f"of shape {tuple(x.shape)}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
