"""Losses, with torch.nn.functional's signatures, defaults and reductions.

Every loss computes per-element values $\\ell_i$ and then reduces them:

    reduction="none"   the per-element losses (shape of the target)
    reduction="sum"    $\\sum_i \\ell_i$
    reduction="mean"   $\\frac{1}{n} \\sum_i \\ell_i$   (cross_entropy: a weighted mean, see there)

Empty inputs behave as in torch: "sum" gives 0 and "mean" gives nan (0 / 0), with zero
gradients. Detection code meets this when an image has no positive anchors or proposals, and
does what torchvision does: reduce with "sum" and divide by max(count, 1) (or by the number
of sampled anchors), so that the loss is 0, not nan, when there is nothing to learn from.

Every float input gets a gradient (the target too, and cross_entropy's and
binary_cross_entropy_with_logits's ``weight`` / ``pos_weight``, which torch treats as
constants); integer class targets get none.
"""
import numpy as np

from ..autograd.registry import register_case
from ..autograd.tensor import Function, as_array, sum_to
from ..backend import get_array_module

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "smooth_l1_loss", "l1_loss"]

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------
def _reduce(losses, reduction):
    """Reduce per-element losses; returns an array (0-d for "mean"/"sum")."""
    xp = get_array_module(losses)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):     # empty: 0 / 0 = nan, as torch
            total = total / losses.size
    return xp.asarray(total, dtype=losses.dtype)


def _expand_grad(gy, shape, reduction):
    """The upstream gradient of the reduced loss, as a gradient of each per-element loss."""
    xp = get_array_module(gy)
    if reduction == "none":
        return gy
    n = int(np.prod(shape))
    g = gy / n if reduction == "mean" and n else gy
    return xp.broadcast_to(g, shape)


# ---------------------------------------------------------------------------------------
# cross entropy
# ---------------------------------------------------------------------------------------
class CrossEntropy(Function):
    """$\\ell_i = -w_{t_i} \\log \\mathrm{softmax}(x_i)_{t_i}$ over the class axis 1.

    Inputs: x (N, C, *) float logits, target (N, *) integer classes, then weight (C,) if
    given. Targets equal to ``ignore_index`` contribute nothing (and count for nothing in the
    mean). log-softmax is computed stably: $x - m - \\log \\sum_c e^{x_c - m}$, $m = \\max_c x_c$.

    Backward, with $p = \\mathrm{softmax}(x)$ and $\\gamma_i$ the upstream gradient of
    $\\ell_i$ (for "mean": $g / \\sum_j w_{t_j}$):

        dx_i = gamma_i w_{t_i} (p_i - onehot(t_i))
        dw_c = sum over i with t_i = c of gamma_i (nll_i - L)     ("mean"; L the loss)
        dw_c = sum over i with t_i = c of gamma_i nll_i            ("sum", "none")
    """

    def __init__(self, ignore_index, reduction, has_weight, unbatched=False):
        self.ignore_index, self.reduction, self.has_weight = ignore_index, reduction, has_weight
        self.unbatched = unbatched          # x (C,), target (): run as a batch of one

    def forward(self, x, target, weight=None):
        xp = get_array_module(x)
        if self.unbatched:
            x, target = x.reshape(1, -1), target.reshape(1)
        shifted = x - x.max(axis=1, keepdims=True)
        self.log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))   # (N, C, *)
        self.valid = target != self.ignore_index                                       # (N, *)
        self.target = xp.where(self.valid, target, 0)           # ignored -> any class, masked
        picked = xp.take_along_axis(self.log_p, self.target[:, None], axis=1)[:, 0]
        self.nll = -picked                                                              # (N, *)
        w = weight[self.target] if weight is not None else xp.ones_like(self.nll)
        self.w = xp.where(self.valid, w, 0).astype(x.dtype)     # per-element weight, 0 if ignored
        losses = self.w * self.nll
        if self.reduction == "none":
            return losses.reshape(()) if self.unbatched else losses
        total = losses.sum()
        if self.reduction == "sum":
            return xp.asarray(total, dtype=x.dtype)
        self.weight_sum = self.w.sum()
        with np.errstate(invalid="ignore", divide="ignore"):   # nothing counted: 0 / 0 = nan
            self.loss = total / self.weight_sum
        return xp.asarray(self.loss, dtype=x.dtype)

    def backward(self, gy):
        xp = get_array_module(gy)
        # "mean" with nothing counted (all ignored, or empty) divides by 0; nan as in torch
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.reduction == "none":
                gamma = gy.reshape(self.nll.shape)
            elif self.reduction == "sum":
                gamma = xp.broadcast_to(gy, self.nll.shape)
            else:
                gamma = xp.broadcast_to(gy / self.weight_sum, self.nll.shape)
            num_classes, extra = self.log_p.shape[1], self.log_p.ndim - 2
            classes = xp.arange(num_classes).reshape((1, num_classes) + (1,) * extra)
            onehot = self.target[:, None] == classes                                # (N, C, *)
            coef = xp.where(self.valid, gamma * self.w, 0)[:, None]
            gx = coef * (xp.exp(self.log_p) - onehot)
            if self.unbatched:
                gx = gx.reshape(-1)
            if not self.has_weight:
                return gx, None
            per_sample = self.nll - self.loss if self.reduction == "mean" else self.nll
            contrib = xp.where(self.valid, gamma * per_sample, 0)
            gw = xp.zeros(self.log_p.shape[1], dtype=gx.dtype)
            xp.add.at(gw, self.target[self.valid], contrib[self.valid])
            return gx, None, gw


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Cross-entropy of logits against class indices (torch.nn.functional.cross_entropy).

    input: (N, C) or (N, C, d1, ...) logits, or (C,) for one sample.
    target: integer class indices, (N,) or (N, d1, ...) (or () for one sample), each in
        [0, C) or equal to ignore_index.
    weight: (C,) per-class weights, or None.

    $\\ell_i = -w_{t_i} \\log \\frac{e^{x_{i,t_i}}}{\\sum_c e^{x_{i,c}}}$ ($w = 1$ without weights,
    $\\ell_i = 0$ where $t_i$ = ignore_index). "mean" is the weighted mean
    $\\sum_i \\ell_i / \\sum_i w_{t_i}$ over the non-ignored targets (nan when there are none, as
    in torch). Probability ("soft") targets and label smoothing are not supported.
    """
    name = "cross_entropy"
    _check_reduction(name, reduction)
    _check_float(name, "input", input)
    tdtype = getattr(target, "dtype", None)
    if tdtype is None or tdtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class indices, got dtype {tdtype} "
                        f"(probability targets are not supported; cast class indices with "
                        f".astype('int64'))")
    if input.ndim == 0 or input.shape[input.ndim > 1] == 0:
        raise ValueError(f"{name}: input must be (N, C, *) or (C,) with C >= 1 classes, got shape "
                         f"{tuple(input.shape)}")
    unbatched = input.ndim == 1
    if unbatched:
        expected, num_classes = (), input.shape[0]
    else:
        expected, num_classes = (input.shape[0],) + tuple(input.shape[2:]), input.shape[1]
    if tuple(target.shape) != expected:
        where = "" if unbatched else f" (batch size {input.shape[0]}, classes on axis 1)"
        raise ValueError(f"{name}: target has shape {tuple(target.shape)} but input of shape "
                         f"{tuple(input.shape)} needs a target of shape {expected}{where}")
    if weight is not None:
        _check_float(name, "weight", weight)
        if tuple(weight.shape) != (num_classes,):
            raise ValueError(f"{name}: weight has shape {tuple(weight.shape)} but input has "
                             f"{num_classes} classes; expected ({num_classes},)")
    t = as_array(target)
    bad = (t != ignore_index) & ((t < 0) | (t >= num_classes))
    if bool(bad.any()):
        value = int(t[bad].reshape(-1)[0])
        raise ValueError(f"{name}: target value {value} is out of range for {num_classes} classes "
                         f"(valid: 0..{num_classes - 1}, or ignore_index={ignore_index})")
    inputs = [input, target] + ([weight] if weight is not None else [])
    return CrossEntropy(ignore_index, reduction, weight is not None, unbatched)(*inputs)


# ---------------------------------------------------------------------------------------
# binary cross entropy with logits
# ---------------------------------------------------------------------------------------
class BCEWithLogits(Function):
    """$\\ell = w [\\mathrm{sp}(x) - x t + (p - 1)\\, t\\, \\mathrm{sp}(-x)]$ with the softplus
    $\\mathrm{sp}(z) = \\log(1 + e^z)$.

    That is $-w [p\\, t \\log \\sigma(x) + (1 - t) \\log(1 - \\sigma(x))]$ written without
    logs of probabilities: $\\mathrm{sp}(x) = \\max(x, 0) + \\log(1 + e^{-|x|})$ never
    overflows, and with $p = 1$ it is $\\max(x, 0) - x t + \\log(1 + e^{-|x|})$.
    Inputs: x, target (same shape), then weight and pos_weight (broadcastable) when given.

        dl/dx = w [sigma(x) - t - (p - 1) t sigma(-x)]      dl/dt = w [-x + (p - 1) sp(-x)]
        dl/dw = l / w  (the unweighted loss)                 dl/dp = w t sp(-x)
    """

    def __init__(self, reduction, has_weight, has_pos_weight):
        self.reduction, self.has_weight, self.has_pos_weight = reduction, has_weight, has_pos_weight

    def forward(self, x, t, *extra):
        xp = get_array_module(x)
        extra = list(extra)
        self.weight = extra.pop(0) if self.has_weight else None
        self.pos_weight = extra.pop(0) if self.has_pos_weight else None
        self.x, self.t = x, t
        ### BEGIN SOLUTION bce_with_logits
        log1p_exp = xp.log1p(xp.exp(-xp.abs(x)))
        self.sp_pos = xp.maximum(x, 0) + log1p_exp          # sp(x)  = log(1 + e^x)
        self.sp_neg = xp.maximum(-x, 0) + log1p_exp         # sp(-x) = log(1 + e^-x)
        losses = self.sp_pos - x * t
        if self.pos_weight is not None:
            losses = losses + (self.pos_weight - 1) * t * self.sp_neg
        ### END SOLUTION
        self.unweighted = losses
        if self.weight is not None:
            losses = losses * self.weight
        return _reduce(losses, self.reduction)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _expand_grad(gy, self.x.shape, self.reduction)
        ### BEGIN SOLUTION bce_with_logits
        sig_pos, sig_neg = xp.exp(-self.sp_neg), xp.exp(-self.sp_pos)    # sigma(x), sigma(-x)
        gx = sig_pos - self.t
        gt = -self.x
        if self.pos_weight is not None:
            gx = gx - (self.pos_weight - 1) * self.t * sig_neg
            gt = gt + (self.pos_weight - 1) * self.sp_neg
        ### END SOLUTION
        g_w = g if self.weight is None else g * self.weight              # upstream times w
        grads = [g_w * gx, g_w * gt]
        if self.weight is not None:
            grads.append(sum_to(g * self.unweighted, self.weight.shape))
        if self.pos_weight is not None:
            grads.append(sum_to(g_w * self.t * self.sp_neg, self.pos_weight.shape))
        return tuple(grads)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable step (torch.nn.functional's).

    input: logits x of any shape; target t: probabilities in [0, 1], same shape, floating.
    weight: rescales each element's loss, broadcastable to input (e.g. (C,)), or None.
    pos_weight: weight of the positive term, broadcastable to input (usually (C,)), or None.

    $\\ell = -w [p\\, t \\log \\sigma(x) + (1 - t) \\log(1 - \\sigma(x))]$, computed as
    $w [\\max(x, 0) - x t + \\log(1 + e^{-|x|}) + (p - 1)\\, t \\log(1 + e^{-x})]$.
    """
    name = "binary_cross_entropy_with_logits"
    _check_reduction(name, reduction)
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_same_shape(name, input, target)
    inputs = [input, target]
    for arg, v in (("weight", weight), ("pos_weight", pos_weight)):
        if v is None:
            continue
        _check_float(name, arg, v)
        try:
            ok = np.broadcast_shapes(tuple(v.shape), tuple(input.shape)) == tuple(input.shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name}: {arg} of shape {tuple(v.shape)} does not broadcast to the "
                             f"input's shape {tuple(input.shape)}")
        inputs.append(v)
    return BCEWithLogits(reduction, weight is not None, pos_weight is not None)(*inputs)


# ---------------------------------------------------------------------------------------
# smooth L1 and L1
# ---------------------------------------------------------------------------------------
class SmoothL1(Function):
    """$\\ell = 0.5 d^2 / \\beta$ if $|d| < \\beta$ else $|d| - 0.5 \\beta$, $d = x - t$.

    (Huber's loss divided by beta; beta = 0 is the L1 loss.) $d\\ell/dd$ is $d / \\beta$ inside,
    $\\mathrm{sign}(d)$ outside; $d\\ell/dt = -d\\ell/dx$.
    """

    def __init__(self, beta, reduction):
        self.beta, self.reduction = beta, reduction

    def forward(self, x, t):
        xp = get_array_module(x)
        self.d = x - t
        abs_d = xp.abs(self.d)
        if self.beta == 0:
            self.inside = xp.zeros(self.d.shape, dtype=bool)
            losses = abs_d
        else:
            self.inside = abs_d < self.beta
            losses = xp.where(self.inside, 0.5 * self.d * self.d / self.beta,
                              abs_d - 0.5 * self.beta)
        return _reduce(losses, self.reduction)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _expand_grad(gy, self.d.shape, self.reduction)
        slope = xp.sign(self.d) if self.beta == 0 else xp.where(self.inside, self.d / self.beta,
                                                                  xp.sign(self.d))
        gx = g * slope
        return gx, -gx


def smooth_l1_loss(input, target, beta=1.0, reduction="mean"):
    """Smooth L1 loss (torch.nn.functional.smooth_l1_loss; Fast R-CNN's box loss).

    input, target: same shape, floating. With $d = x - t$:
    $\\ell = 0.5 d^2 / \\beta$ where $|d| < \\beta$, else $|d| - 0.5 \\beta$; beta = 0 gives
    $|d|$. torchvision's RPN and box head use beta=1/9 and reduction="sum", then divide by
    the number of sampled anchors / proposals.
    """
    name = "smooth_l1_loss"
    _check_reduction(name, reduction)
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_same_shape(name, input, target)
    if not beta >= 0:
        raise ValueError(f"{name}: beta must be >= 0, got {beta!r}")
    return SmoothL1(float(beta), reduction)(input, target)


class L1(Function):
    """$\\ell = |x - t|$; $d\\ell/dx = \\mathrm{sign}(x - t)$ (0 at x = t, as torch), and
    $d\\ell/dt = -d\\ell/dx$."""

    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, x, t):
        xp = get_array_module(x)
        self.d = x - t
        return _reduce(xp.abs(self.d), self.reduction)

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = _expand_grad(gy, self.d.shape, self.reduction) * xp.sign(self.d)
        return gx, -gx


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error (torch.nn.functional.l1_loss): $\\ell = |x - t|$, same shapes."""
    name = "l1_loss"
    _check_reduction(name, reduction)
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_same_shape(name, input, target)
    return L1(reduction)(input, target)


# ---------------------------------------------------------------------------------------
# the checks at the door (messages name the argument and the value)
# ---------------------------------------------------------------------------------------
def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_float(name, arg, x):
    if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
        raise TypeError(f"{name}: {arg} must be a floating array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")


def _check_same_shape(name, input, target):
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{name}: target has shape {tuple(target.shape)} but input has shape "
                         f"{tuple(input.shape)}; they must match")


# ---------------------------------------------------------------------------------------
# gradient checks
# ---------------------------------------------------------------------------------------
def _classes(r, shape, num_classes, ignore=None, ignore_index=-100):
    t = r.integers(0, num_classes, shape)
    if ignore is not None:
        t[ignore] = ignore_index
    return t


register_case("cross_entropy", "mean_2d",
              lambda x, t: cross_entropy(x, t),
              lambda r: [r.standard_normal((5, 4)) * 2, _classes(r, (5,), 4)])
register_case("cross_entropy", "weighted_mean_ignore_noncontiguous",
              lambda x, t, w: cross_entropy(x, t, weight=w),
              lambda r: [r.standard_normal((6, 10))[:, ::2], _classes(r, (6,), 5, ignore=[1, 4]),
                         r.uniform(0.5, 2.0, 5)])
register_case("cross_entropy", "spatial_sum_ignore_index_255",
              lambda x, t, w: cross_entropy(x, t, weight=w, ignore_index=255, reduction="sum"),
              lambda r: [r.standard_normal((2, 3, 4, 5)),
                         _classes(r, (2, 4, 5), 3, ignore=(0, 1), ignore_index=255),
                         r.uniform(0.5, 2.0, 3)])
register_case("cross_entropy", "none_3d",
              lambda x, t: cross_entropy(x, t, reduction="none"),
              lambda r: [r.standard_normal((3, 4, 5)), _classes(r, (3, 5), 4, ignore=(0, 2))])
register_case("cross_entropy", "weighted_none",
              lambda x, t, w: cross_entropy(x, t, weight=w, reduction="none"),
              lambda r: [r.standard_normal((4, 3)), _classes(r, (4,), 3), r.uniform(0.5, 2.0, 3)])
register_case("binary_cross_entropy_with_logits", "mean",
              lambda x, t: binary_cross_entropy_with_logits(x, t),
              lambda r: [r.standard_normal((4, 5)) * 3, r.uniform(0, 1, (4, 5))])
register_case("binary_cross_entropy_with_logits", "sum_weight_pos_weight",
              lambda x, t, w, p: binary_cross_entropy_with_logits(x, t, w, "sum", pos_weight=p),
              lambda r: [r.standard_normal((3, 4)) * 3, r.uniform(0, 1, (3, 4)),
                         r.uniform(0.5, 2, (3, 1)), r.uniform(0.5, 3, (4,))])
register_case("binary_cross_entropy_with_logits", "none_noncontiguous_pos_weight",
              lambda x, t, p: binary_cross_entropy_with_logits(x, t, reduction="none",
                                                               pos_weight=p),
              lambda r: [r.standard_normal((2, 3, 8))[..., ::2] * 4, r.uniform(0, 1, (2, 3, 4)),
                         r.uniform(0.5, 3, (4,))])


def _away_from(beta, d_min=0.05):
    """input, target whose differences stay >= d_min away from the kinks at |d| = beta and 0."""
    def make(r, shape=(4, 5)):
        t = r.standard_normal(shape)
        d = r.uniform(d_min, 3 * max(beta, 0.5), shape) * r.choice([-1, 1], shape)
        d = np.where(np.abs(np.abs(d) - beta) < d_min, d + np.sign(d) * 2 * d_min, d)
        return [t + d, t]
    return make


register_case("smooth_l1_loss", "beta1_mean", lambda x, t: smooth_l1_loss(x, t), _away_from(1.0))
register_case("smooth_l1_loss", "beta_1_9_sum",
              lambda x, t: smooth_l1_loss(x, t, beta=1 / 9, reduction="sum"), _away_from(1 / 9))
register_case("smooth_l1_loss", "beta0_none_is_l1",
              lambda x, t: smooth_l1_loss(x, t, beta=0.0, reduction="none"), _away_from(0.0))
register_case("l1_loss", "mean", lambda x, t: l1_loss(x, t), _away_from(0.0))
register_case("l1_loss", "sum_noncontiguous", lambda x, t: l1_loss(x, t, reduction="sum"),
              lambda r: [a[:, ::2] for a in _away_from(0.0)(r, (3, 8))])
