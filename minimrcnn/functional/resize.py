"""Resizing feature maps: ``interpolate`` with torch.nn.functional.interpolate's semantics.

Both modes are *separable*: resizing (N, C, H, W) to (N, C, Ho, Wo) resizes the rows and the
columns independently. Along one axis of length ``n_in`` resized to ``n_out``, output ``o``
reads one or two input positions::

    nearest    y[o] = x[i0[o]]
    bilinear   y[o] = l0[o] * x[i0[o]] + l1[o] * x[i1[o]]          (l0 + l1 = 1)

so resizing one axis is a linear map ``y = A x`` with a sparse (n_out, n_in) matrix ``A``
(one or two non-zeros per row), and the 2-D resize is ``Y = A_h X A_w^T`` per channel.
Its backward is the transposed map, ``dX = A_h^T dY A_w``: each output gradient is added back
onto the input positions it was read from (a scatter-add).

Where output ``o`` reads from (torch's conventions, ``ratio`` = in / out, or 1 / scale_factor
when a scale factor is given):

* nearest (torch's legacy 'nearest', as in OpenCV's INTER_NEAREST and FPN's top-down path):
  ``i0 = min(floor(o * ratio), n_in - 1)``, computed in float32 as torch does.
* bilinear, align_corners=False (half-pixel centres):
  ``src = max((o + 0.5) * ratio - 0.5, 0)``.
* bilinear, align_corners=True (corner pixels aligned; scale_factor only sets the size):
  ``src = o * (n_in - 1) / (n_out - 1)``.
* bilinear then uses ``i0 = floor(src)``, ``i1 = min(i0 + 1, n_in - 1)``, ``l1 = src - i0``.

As in torch, an axis whose size does not change is copied, and nearest with exactly twice the
size repeats every pixel (``i0 = o // 2``), whatever the scale factor.

:func:`resize_bicubic` (torch's bicubic, on raw arrays, without a gradient) serves the keypoint
head's decoding: $Y = A_h X A_w^T$ with Keys' cubic weights in the per-axis matrices.
"""
import math

import numpy as np

from ..autograd.registry import register_case
from ..autograd.tensor import Function, as_array
from ..backend import get_array_module
from ..checks import INT32_MAX, int_pair

__all__ = ["interpolate"]

_MODES = ("nearest", "bilinear")


# ---------------------------------------------------------------------------------------
# where each output position reads from (one axis; small NumPy arrays, built on the host)
# ---------------------------------------------------------------------------------------
def _nearest_source(n_in, n_out, scale):
    """i0 (n_out,) int64: torch's legacy nearest index, ``min(floor(o * ratio), n_in - 1)``.

    torch computes the ratio and the product in float32 (``floorf(o * scale)``); doing the
    same here keeps the indices identical where float64 would round differently.
    """
    out = np.arange(n_out)
    if n_out == n_in:
        return out
    if n_out == 2 * n_in:
        return out // 2
    if scale is not None:
        ratio = np.float32(1.0 / scale)
    else:
        ratio = np.float32(n_in) / np.float32(n_out)
    src = np.floor(out.astype(np.float32) * ratio).astype(np.int64)
    return np.minimum(src, n_in - 1)


def _linear_source(n_in, n_out, scale, align_corners, dtype):
    """i0, i1 (n_out,) int64 and weights l0, l1 (n_out,) of ``dtype`` for linear interpolation.

    The ratio, the source positions and the weights are rounded to ``dtype`` (float32 or
    float64) step by step, like torch's CPU kernels.
    """
    dtype = np.dtype(dtype).type
    out = np.arange(n_out)
    if n_out == n_in:                                     # same size: a copy
        return out, out, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    o = out.astype(dtype)
    if align_corners:
        ratio = dtype(n_in - 1) / dtype(n_out - 1) if n_out > 1 else dtype(0)
        src = ratio * o
    else:
        ratio = dtype(1.0 / scale) if scale is not None else dtype(n_in) / dtype(n_out)
        # src = ratio * (o + 0.5) - 0.5, rounded to dtype after the product and after the
        # difference, as torch's CPU kernel does (measured: one fused rounding is off by up to
        # 7e-3 on 0..255 images at 480x640 -> 800x1066; this is within an ulp)
        src = (ratio * (o + dtype(0.5))).astype(dtype) - dtype(0.5)
        src = np.maximum(src, dtype(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    l1 = np.clip(src - i0.astype(dtype), dtype(0), dtype(1)).astype(dtype)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l0 = (dtype(1) - l1).astype(dtype)
    return i0, i1, l0, l1


def _matrix(n_in, i0, i1=None, l0=None, l1=None, dtype=np.float64):
    """The dense (n_out, n_in) matrix A of one axis' resize: ``y = A @ x`` along that axis."""
    n_out = len(i0)
    rows = np.arange(n_out)
    A = np.zeros((n_out, n_in), dtype)
    if i1 is None:                                        # nearest: one 1 per row
        A[rows, i0] = 1
    else:                                                 # i0 == i1 at the border: add
        np.add.at(A, (rows, i0), l0)
        np.add.at(A, (rows, i1), l1)
    return A


# ---------------------------------------------------------------------------------------
# the op
# ---------------------------------------------------------------------------------------
class Interpolate(Function):
    """Resize (N, C, H, W) -> (N, C, Ho, Wo) by nearest or bilinear interpolation.

    Forward gathers along W, then along H (the order in which torch combines the four
    neighbours; float32 results agree with torch's to about an ulp, the rest being its fused
    multiply-adds). Backward applies the transposed per-axis matrices, ``dX = A_h^T dY A_w``,
    as two matrix products (BLAS / cuBLAS). A is dense here, so the backward costs O(H) + O(W)
    per output element instead of O(1); at feature-pyramid sizes (a few hundred pixels a side)
    that is still faster in NumPy than a scatter-add (``np.add.at``) and needs no atomics.
    """

    def __init__(self, size, scales, mode, align_corners):
        self.size, self.scales, self.mode, self.align_corners = size, scales, mode, align_corners

    def forward(self, x):
        xp = get_array_module(x)
        (h, w), (ho, wo) = x.shape[2:], self.size
        self.in_size = (h, w)
        if self.mode == "nearest":
            self.rows = _nearest_source(h, ho, self.scales[0])
            self.cols = _nearest_source(w, wo, self.scales[1])
            return xp.take(xp.take(x, xp.asarray(self.cols), axis=3), xp.asarray(self.rows), axis=2)
        self.rows = _linear_source(h, ho, self.scales[0], self.align_corners, x.dtype)
        self.cols = _linear_source(w, wo, self.scales[1], self.align_corners, x.dtype)
        c0, c1, cl0, cl1 = (xp.asarray(a) for a in self.cols)
        r0, r1, rl0, rl1 = (xp.asarray(a) for a in self.rows)
        t = xp.take(x, c0, axis=3) * cl0 + xp.take(x, c1, axis=3) * cl1           # (N, C, H, Wo)
        return (xp.take(t, r0, axis=2) * rl0[:, None]
                + xp.take(t, r1, axis=2) * rl1[:, None])                          # (N, C, Ho, Wo)

    def backward(self, gy):
        xp = get_array_module(gy)
        (h, w), dtype = self.in_size, gy.dtype
        if self.mode == "nearest":
            A_h = _matrix(h, self.rows, dtype=dtype)                              # (Ho, H)
            A_w = _matrix(w, self.cols, dtype=dtype)                              # (Wo, W)
        else:
            A_h = _matrix(h, *self.rows, dtype=dtype)
            A_w = _matrix(w, *self.cols, dtype=dtype)
        n, c, ho, wo = gy.shape
        A_hT = xp.asarray(np.ascontiguousarray(A_h.T))  # a transposed view would miss BLAS
        gt = xp.matmul(A_hT, gy)                                                  # (N, C, H, Wo)
        gx = gt.reshape(n * c * h, wo) @ xp.asarray(A_w)                          # one GEMM
        return gx.reshape(n, c, h, w)


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize a batch of feature maps (torch.nn.functional.interpolate for 4-D inputs).

    x: (N, C, H, W). Give exactly one of
      size: int or (Ho, Wo), the output size; or
      scale_factor: float or (sh, sw); the output size is floor(H * sh), floor(W * sw), and
        (as torch does unless ``recompute_scale_factor=True``) the ratio used to place the
        samples is 1 / scale_factor, not H / Ho.
    mode: "nearest" (torch's legacy nearest: $y[o] = x[\\min(\\lfloor o \\cdot ratio \\rfloor,
        n - 1)]$) or "bilinear".
    align_corners: bilinear only (None means False); False places samples at pixel centres,
        $src = (o + 1/2) \\cdot ratio - 1/2$; True maps corner pixels onto corner pixels,
        $src = o (n_{in} - 1) / (n_{out} - 1)$.
    Returns (N, C, Ho, Wo). Differentiable in x.
    """
    out_size, scales = _check_interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
    return Interpolate(out_size, scales, mode, bool(align_corners))(x)


# ---------------------------------------------------------------------------------------
# bicubic resize on raw arrays (no gradient: the keypoint head's decoding)
# ---------------------------------------------------------------------------------------
def _fma(a, b, c):
    """$a b + c$ rounded once to float32 (a fused multiply-add): torch's CPU kernels are built
    with FMA contraction, so its bicubic weights are computed this way. (a, b are float32, so
    their product is exact in float64.)"""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def _cubic_convolution1(x, A):
    """Keys' kernel for $|x| \\le 1$: $((A + 2) x - (A + 3)) x^2 + 1$."""
    u = _fma(A + np.float32(2), x, -(A + np.float32(3)))
    return _fma((u * x).astype(np.float32), x, np.float32(1))


def _cubic_convolution2(x, A):
    """Keys' kernel for $1 < |x| < 2$: $((A x - 5A) x + 8A) x - 4A$."""
    u = _fma(A, x, -np.float32(5) * A)
    u = _fma(u, x, np.float32(8) * A)
    return _fma(u, x, -np.float32(4) * A)


def _bicubic_matrix(n_in, n_out, A=-0.75):
    """(n_out, n_in) float64 matrix of torch's bicubic resize along one axis (align_corners=False).

    Output o reads source position $s = r (o + 1/2) - 1/2$ ($r = n_{in}/n_{out}$, float32 as
    torch), with Keys' cubic weights (a = A = -0.75) at the four inputs
    $\\lfloor s \\rfloor - 1 .. \\lfloor s \\rfloor + 2$, indices clamped to the border (torch's
    ``upsample_get_value_bounded``). With $t = s - \\lfloor s \\rfloor$ the weights are
    $k(t + 1), k(t), k(1 - t), k(2 - t)$.
    """
    A = np.float32(A)
    one = np.float32(1)
    scale = np.float32(n_in) / np.float32(n_out)
    real = _fma(scale, np.arange(n_out, dtype=np.float32) + np.float32(0.5), np.float32(-0.5))
    idx = np.floor(real).astype(np.int64)
    t = real - idx.astype(np.float32)
    coeffs = [_cubic_convolution2(t + one, A), _cubic_convolution1(t, A),
              _cubic_convolution1(one - t, A), _cubic_convolution2((one - t) + one, A)]
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    for j, c in enumerate(coeffs):
        np.add.at(m, (rows, np.clip(idx - 1 + j, 0, n_in - 1)), c.astype(np.float64))
    return m


def resize_bicubic(x, size):
    """Bicubic resize of the last two axes of ``x`` (..., H, W) to ``size`` = (Ho, Wo), as torch's
    ``interpolate(mode="bicubic", align_corners=False)``: $Y = A_h X A_w^T$ with the per-axis
    weight matrices of :func:`_bicubic_matrix`. NumPy or CuPy; not differentiable; keeps the dtype.
    """
    x = as_array(x)
    Ho, Wo = int_pair(size, "size", "resize_bicubic", minimum=1)
    xp = get_array_module(x)
    a_h = xp.asarray(_bicubic_matrix(x.shape[-2], Ho))
    a_w = xp.asarray(_bicubic_matrix(x.shape[-1], Wo))
    y = a_h @ x.astype(np.float64) @ a_w.T
    return y.astype(x.dtype)


# ---------------------------------------------------------------------------------------
# the checks at the door (messages name the argument and the value)
# ---------------------------------------------------------------------------------------
def _check_interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor):
    """interpolate's arguments -> ((Ho, Wo), the scales handed to the op)."""
    name = "interpolate"
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be one of {_MODES}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{name}: align_corners={align_corners!r} can only be set with mode "
                         f"'bilinear' (nearest has no corners to align); leave it None")
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"{name}: x must be 4-D (N, C, H, W), got shape {shape}")
    if mode == "bilinear" and x.dtype.kind != "f":
        raise TypeError(f"{name}: bilinear needs a floating x, got dtype {x.dtype}")
    out_size, scales = _output_size(name, shape, size, scale_factor)
    return out_size, (None, None) if recompute_scale_factor else scales


def _output_size(name, shape, size, scale_factor):
    """(Ho, Wo) and the scales handed to the kernel (None where the ratio is in / out)."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{name}: give exactly one of size and scale_factor, got size={size!r}, "
                         f"scale_factor={scale_factor!r}")
    if size is not None:
        return int_pair(size, "size", name, minimum=1), (None, None)
    scales = ((scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor))
    if len(scales) != 2 or not all(np.isscalar(s) and not isinstance(s, bool) for s in scales):
        raise ValueError(f"{name}: scale_factor must be a number or a pair of numbers, "
                         f"got {scale_factor!r}")
    scales = tuple(float(s) for s in scales)
    if not all(s > 0 and math.isfinite(s) for s in scales):
        raise ValueError(f"{name}: scale_factor must be positive and finite, got {scale_factor!r}")
    out = tuple(int(math.floor(float(n) * s)) for n, s in zip(shape[2:], scales))
    if not 0 < min(out) <= max(out) <= INT32_MAX:
        raise ValueError(f"{name}: scale_factor={scale_factor!r} turns the input size "
                         f"{tuple(shape[2:])} into {out}; every output size must be in [1, {INT32_MAX}]")
    return out, scales


# ---------------------------------------------------------------------------------------
# gradient checks (bilinear and nearest are linear in x, so any input works)
# ---------------------------------------------------------------------------------------
def _x(shape):
    return lambda r: [r.standard_normal(shape)]


register_case("interpolate", "nearest_size_2x", lambda x: interpolate(x, size=(6, 8)),
              _x((2, 3, 3, 4)))
register_case("interpolate", "nearest_scale_nonint_down",
              lambda x: interpolate(x, scale_factor=(0.6, 1.7)), _x((1, 2, 7, 5)))
register_case("interpolate", "nearest_size_odd_noncontiguous",
              lambda x: interpolate(x, size=(5, 7), mode="nearest"),
              lambda r: [r.standard_normal((2, 3, 4, 12))[..., ::2]])
register_case("interpolate", "bilinear_size_up",
              lambda x: interpolate(x, size=(7, 9), mode="bilinear", align_corners=False),
              _x((2, 2, 3, 4)))
register_case("interpolate", "bilinear_scale_nonint_down",
              lambda x: interpolate(x, scale_factor=(0.45, 1.3), mode="bilinear"),
              _x((1, 2, 9, 5)))
register_case("interpolate", "bilinear_align_corners_up_noncontiguous",
              lambda x: interpolate(x, size=(7, 5), mode="bilinear", align_corners=True),
              lambda r: [r.standard_normal((2, 3, 5, 12))[..., ::2]])
register_case("interpolate", "bilinear_align_corners_down_scale",
              lambda x: interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True),
              _x((1, 3, 8, 7)))
