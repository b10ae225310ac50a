"""2-D max pooling (torch.nn.functional.max_pool2d semantics).

    y[n, c, ho, wo] = max_{i < kh, j < kw} x[n, c, ho*sh - ph + i*dh, wo*sw - pw + j*dw]

where positions outside the image count as -inf (they never win). The output size is

    Ho = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1          (ceil_mode=False)
    Ho = ceil(...) + 1, minus one if the last window would start in the right padding  (ceil_mode=True)

The gradient goes to the position of the maximum of each window (its "argmax"): the first
maximum in row-major window order on ties, a NaN over any number, as in torch. Overlapping
windows that share a maximum add their gradients there.

Shapes: x (N, C, H, W) or (C, H, W); y (N, C, Ho, Wo) or (C, Ho, Wo).

NumPy float32/float64 arrays use a compiled kernel (ext/pooling.pyx, one plane per OpenMP
thread); other arrays (CuPy) a loop over the kh*kw window offsets with strided slices.
"""
import numpy as np

from .._ext import cpu_module
from ..autograd.registry import register_case
from ..autograd.tensor import Function, as_array
from ..backend import get_array_module
from ..checks import int_pair

__all__ = ["max_pool2d"]


def _pool_out_size(size, k, s, p, d, ceil_mode):
    """torch's pooling_output_shape."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:   # the last window must start inside the input
        out -= 1
    return out


def _use_cpu(a):
    """NumPy float32/float64 arrays take the compiled kernel (where it is built)."""
    return isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) \
        and cpu_module("pooling") is not None


class MaxPool2d(Function):
    """$y = \\max$ over each window; the gradient flows to the argmax. Input: x (P, H, W) planes."""

    def __init__(self, kernel_size, stride, padding, dilation, out_size):
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation, self.out_size = padding, dilation, out_size

    def forward(self, x):
        self.x_shape = x.shape
        if _use_cpu(x):
            return self._forward_cpu(x)
        return self._forward_reference(x)

    def backward(self, gy):
        if _use_cpu(gy):
            return (self._backward_cpu(gy),)
        return (self._backward_reference(gy),)

    # ---- compiled kernel (NumPy) --------------------------------------------------------
    def _forward_cpu(self, x):
        kernels = cpu_module("pooling")                         # ext/pooling.pyx
        *lead, H, W = x.shape
        planes = np.ascontiguousarray(x).reshape(-1, H, W)
        Ho, Wo = self.out_size
        y = np.empty((planes.shape[0], Ho, Wo), dtype=x.dtype)
        self.argmax = np.empty((planes.shape[0], Ho, Wo), dtype=np.int32)   # flat index h*W + w
        kernels.max_pool2d_forward(planes, y, self.argmax, *self.kernel_size, *self.stride,
                                   *self.padding, *self.dilation)
        return y.reshape(*lead, Ho, Wo)

    def _backward_cpu(self, gy):
        kernels = cpu_module("pooling")
        *lead, H, W = self.x_shape
        Ho, Wo = self.out_size
        gx = np.zeros((self.argmax.shape[0], H, W), dtype=gy.dtype)
        kernels.max_pool2d_backward(np.ascontiguousarray(gy).reshape(-1, Ho, Wo), self.argmax, gx)
        return gx.reshape(self.x_shape)

    # ---- reference (any array module): one pass per window offset ------------------------
    def _windows(self):
        """(i, j, slice_h, slice_w) of each window offset into the padded input."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        Ho, Wo = self.out_size
        for i in range(kh):
            for j in range(kw):
                yield (i, j, slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh),
                       slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw))

    def _padded_shape(self, H, W):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph, pw = self.padding
        Ho, Wo = self.out_size
        # ceil_mode windows may reach past the right padding: pad enough for every slice
        return (max(H + 2 * ph, dh * (kh - 1) + sh * (Ho - 1) + 1),
                max(W + 2 * pw, dw * (kw - 1) + sw * (Wo - 1) + 1))

    def _forward_reference(self, x):
        xp = get_array_module(x)
        *lead, H, W = x.shape
        (ph, pw), kw = self.padding, self.kernel_size[1]
        Hp, Wp = self._padded_shape(H, W)
        xpad = xp.full((*lead, Hp, Wp), -xp.inf, dtype=x.dtype)
        xpad[..., ph: ph + H, pw: pw + W] = x
        inside = xp.zeros((Hp, Wp), dtype=bool)              # real pixels, not padding
        inside[ph: ph + H, pw: pw + W] = True
        best = arg = None
        for i, j, rows, cols in self._windows():
            v, valid = xpad[..., rows, cols], inside[rows, cols]
            if best is None:
                best = v.copy()
                arg = xp.broadcast_to(xp.where(valid, 0, -1), v.shape).astype(xp.int32)
                continue
            # strictly greater keeps the first maximum; a NaN wins (and stays unless another follows)
            better = ((v > best) | xp.isnan(v) | (arg < 0)) & valid
            best = xp.where(better, v, best)
            arg = xp.where(better, i * kw + j, arg)
        self.tap = arg                                        # window offset i*kw + j of the max
        return best

    def _backward_reference(self, gy):
        xp = get_array_module(gy)
        *lead, H, W = self.x_shape
        (ph, pw), kw = self.padding, self.kernel_size[1]
        gxpad = xp.zeros((*lead, *self._padded_shape(H, W)), dtype=gy.dtype)
        ### BEGIN SOLUTION max_pool2d_backward
        for i, j, rows, cols in self._windows():
            gxpad[..., rows, cols] += xp.where(self.tap == i * kw + j, gy, 0)
        ### END SOLUTION
        return gxpad[..., ph: ph + H, pw: pw + W]


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling over (kh, kw) windows; x (N, C, H, W) or (C, H, W).

    stride defaults to kernel_size; padding (at most half the kernel) counts as -inf.
    torch.nn.functional.max_pool2d semantics (return_indices is not supported).
    """
    kernel_size, stride, padding, dilation, out_size = _check_max_pool2d(x, kernel_size, stride, padding,
                                                                         dilation, ceil_mode)
    return MaxPool2d(kernel_size, stride, padding, dilation, out_size)(x)


# ---------------------------------------------------------------------------------------
# the checks at the door (messages name the argument and the value)
# ---------------------------------------------------------------------------------------
def _check_max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode):
    """max_pool2d's arguments -> (kernel_size, stride, padding, dilation) pairs and (Ho, Wo)."""
    op = "max_pool2d"
    xa = as_array(x)
    if xa.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating array, got dtype {xa.dtype}")
    if xa.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), "
                         f"got shape {tuple(xa.shape)}")
    kernel_size = int_pair(kernel_size, "kernel_size", op, 1)
    stride = kernel_size if stride is None else int_pair(stride, "stride", op, 1)
    padding, dilation = int_pair(padding, "padding", op, 0), int_pair(dilation, "dilation", op, 1)
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel_size}")
    H, W = xa.shape[-2:]
    out_size = (_pool_out_size(H, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode),
                _pool_out_size(W, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode))
    if min(out_size) < 1:
        raise ValueError(f"{op}: output size would be {out_size[0]}x{out_size[1]} for input {H}x{W}, "
                         f"kernel_size {kernel_size}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}")
    return kernel_size, stride, padding, dilation, out_size


# ---------------------------------------------------------------------------------------
# gradient checks: distinct values 0.1 apart, so no tie or kink lies within eps of a sample
# ---------------------------------------------------------------------------------------
def _distinct(shape):
    return lambda rng: [rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + 0.0]


register_case("max_pool2d", "3x3_stride2_pad1_batch2",
              lambda x: max_pool2d(x, 3, 2, 1), _distinct((2, 2, 7, 8)))
register_case("max_pool2d", "2x2_ceil_mode_noncontiguous",
              lambda x: max_pool2d(x, 2, ceil_mode=True),
              lambda rng: [(rng.permutation(2 * 3 * 5 * 14).reshape(2, 3, 5, 14) * 0.1)[..., ::2]])
register_case("max_pool2d", "1x1_stride2_p6",
              lambda x: max_pool2d(x, 1, 2), _distinct((1, 3, 5, 6)))
register_case("max_pool2d", "2x3_dilation2_stride_hw_pad",
              lambda x: max_pool2d(x, (2, 3), stride=(1, 2), padding=(1, 1), dilation=2),
              _distinct((3, 6, 7)))
