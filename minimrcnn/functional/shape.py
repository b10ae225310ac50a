"""Shape ops: reshape, transpose / permute, concat, stack, split, indexing, gather, pad, device moves.

None of these changes a value, so each backward only moves the gradient back into the input's
layout: reshape it, transpose it back, slice it, or scatter-add it (indexing with repeats).
"""
import numpy as np

from ..autograd.registry import register_case
from ..autograd.tensor import Function, Tensor, as_tensor, sum_to
from ..backend import device_of, get_array_module, to_device as _move

__all__ = ["reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze", "expand",
           "concat", "cat", "stack", "split", "getitem", "gather", "pad", "to_device"]


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view shape {x.shape} ({x.size} elements) as {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Permute(Function):
    """$y = x$ with axes reordered by ``dims``; backward applies the inverse permutation."""
    def __init__(self, dims):
        self.dims = tuple(dims)

    def forward(self, x):
        if sorted(d % x.ndim for d in self.dims) != list(range(x.ndim)):
            raise ValueError(f"permute: dims {self.dims} is not a permutation of the {x.ndim} axes")
        return x.transpose(self.dims)

    def backward(self, gy):
        return gy.transpose(tuple(np.argsort([d % gy.ndim for d in self.dims])))


class Expand(Function):
    """Broadcast to ``shape`` (a view); backward sums over the broadcast axes."""
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        lead = len(self.shape) - x.ndim
        if lead < 0:
            raise ValueError(f"expand: shape {self.shape} has fewer dims than the input's {x.shape}")
        # -1 keeps the input's size in that dim (torch)
        shape = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(self.shape))
        return get_array_module(x).broadcast_to(x, shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


class Concat(Function):
    """$y = [x_1; x_2; \\dots]$ along ``dim``; backward splits $g$ at the same offsets."""
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        if not xs:
            raise ValueError("concat: needs at least one tensor")
        self.sizes = [x.shape[self.dim] for x in xs]
        for i, x in enumerate(xs):
            if x.ndim != xs[0].ndim or any(a != b for k, (a, b) in enumerate(zip(x.shape, xs[0].shape))
                                           if k != self.dim % x.ndim):
                raise ValueError(f"concat: tensor {i} has shape {x.shape}, incompatible with tensor 0's "
                                 f"{xs[0].shape} along dim {self.dim}")
        return get_array_module(*xs).concatenate(xs, axis=self.dim)

    def backward(self, gy):
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(get_array_module(gy).split(gy, cuts, axis=self.dim))


class Stack(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
        return get_array_module(*xs).stack(xs, axis=self.dim)

    def backward(self, gy):
        xp = get_array_module(gy)
        return tuple(xp.take(gy, i, axis=self.dim) for i in range(gy.shape[self.dim]))


class GetItem(Function):
    """$y = x[\\text{index}]$ (basic or advanced NumPy indexing); backward scatter-adds
    $g$ into zeros, so repeated indices accumulate.

    The scatter-add (``add.at``) is slow; where every element of x is picked at most once -- a
    boolean mask, slices and integers, or one integer array of distinct rows (the poolers put
    RoIs back in order with a permutation) -- assigning $g$ is the same sum, and that is done.
    """
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        try:
            return x[self.index]
        except IndexError as e:
            raise IndexError(f"index {self.index!r} is invalid for a tensor of shape {x.shape}: {e}") from None

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, self.dtype)
        if _picks_once(self.index, self.shape):
            gx[self.index] = gy
        else:
            xp.add.at(gx, self.index, gy)
        return gx


def _picks_once(index, shape):
    """True if ``x[index]`` (x of ``shape``) reads no element twice: basic indices only (ints,
    slices, None), a boolean mask, or basic indices and one 1-D integer array of distinct
    positions along the axis it indexes. Anything else (lists, several arrays, Ellipsis
    before an array) answers False: the general scatter-add."""
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, list) for p in parts):
        return False
    arrays = [k for k, p in enumerate(parts) if getattr(p, "ndim", 0) > 0]
    if not arrays:
        return True
    if len(arrays) > 1:
        return False
    k = arrays[0]
    a = parts[k]
    if a.dtype == bool:
        return True
    if a.dtype.kind not in "iu" or a.ndim != 1 or any(p is Ellipsis for p in parts[:k]):
        return False
    axis = sum(1 for p in parts[:k] if p is not None)      # ints and slices before it use an axis
    xp = get_array_module(a)
    return int(xp.unique(a % shape[axis]).size) == int(a.size)


class Gather(Function):
    """torch.gather: $y[i][j] = x[i][\\text{index}[i][j]]$ along ``dim`` (for 2-D, dim=1).

    ``index`` has x's number of dims; in the other dims it may be smaller than x (only its
    leading part of x is read), as in torch.
    """
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x, index):
        if index.dtype.kind not in "iu":
            raise TypeError(f"gather: index must be an integer array, got {index.dtype}")
        if index.ndim != x.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims but input has {x.ndim}")
        d = self.dim % x.ndim
        if any(index.shape[k] > x.shape[k] for k in range(x.ndim) if k != d):
            raise ValueError(f"gather: index shape {index.shape} exceeds input shape {x.shape} outside dim {d}")
        n = x.shape[d]
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"gather: index values must be in [0, {n}) along dim {self.dim}, "
                             f"got range [{int(index.min())}, {int(index.max())}]")
        # the part of x that index addresses: full along dim, index-sized elsewhere
        self.region = tuple(slice(None) if k == d else slice(0, index.shape[k]) for k in range(x.ndim))
        self.shape, self.index, self.d = x.shape, index, d
        return get_array_module(x).take_along_axis(x[self.region], index, axis=d)

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, gy.dtype)
        idx = list(xp.indices(self.index.shape, sparse=True))
        idx[self.d] = self.index
        xp.add.at(gx, tuple(idx), gy)      # index-sized region, so the sparse grid addresses gx directly
        return gx, None


class Pad(Function):
    """torch.nn.functional.pad with a constant: ``pad`` lists (left, right) pairs starting
    from the LAST dimension, e.g. (1, 1, 2, 0) pads W by 1/1 and H by 2/0."""
    def __init__(self, pad, value=0.0):
        if len(pad) % 2:
            raise ValueError(f"pad: needs (left, right) pairs, got {pad}")
        self.pad, self.value = tuple(int(p) for p in pad), value

    def forward(self, x):
        k = len(self.pad) // 2
        if k > x.ndim:
            raise ValueError(f"pad: {len(self.pad)} values pad {k} dims but the input has {x.ndim}")
        if any(p < 0 for p in self.pad):
            raise ValueError(f"pad: negative padding {self.pad} is not supported")
        widths = [(0, 0)] * (x.ndim - k) + [(self.pad[2 * i], self.pad[2 * i + 1]) for i in reversed(range(k))]
        self.slices = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return get_array_module(x).pad(x, widths, mode="constant", constant_values=self.value)

    def backward(self, gy):
        return gy[self.slices]


class ToDevice(Function):
    """Move between CPU (NumPy) and GPU (CuPy); the gradient moves back."""
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.src = device_of(x)
        return _move(x, self.device)

    def backward(self, gy):
        return _move(gy, self.src)


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape(shape)(x)


def flatten(x, start_dim=0, end_dim=-1):
    shape = as_tensor(x).shape
    n = len(shape)
    s, e = start_dim % n, end_dim % n
    inner = int(np.prod(shape[s:e + 1]))
    return Reshape(shape[:s] + (inner,) + shape[e + 1:])(x)


def transpose(x, dim0, dim1):
    n = as_tensor(x).ndim
    dims = list(range(n))
    dims[dim0 % n], dims[dim1 % n] = dims[dim1 % n], dims[dim0 % n]
    return Permute(dims)(x)


def permute(x, *dims):
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    return Permute(dims)(x)


def squeeze(x, dim):
    shape = as_tensor(x).shape
    if shape[dim] != 1:
        raise ValueError(f"squeeze: dim {dim} has size {shape[dim]}, not 1")
    return Reshape(shape[:dim % len(shape)] + shape[dim % len(shape) + 1:])(x)


def unsqueeze(x, dim):
    shape = as_tensor(x).shape
    d = dim % (len(shape) + 1)
    return Reshape(shape[:d] + (1,) + shape[d:])(x)


def expand(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Expand(shape)(x)


def concat(tensors, dim=0):
    return Concat(dim)(*tensors)


cat = concat


def stack(tensors, dim=0):
    return Stack(dim)(*tensors)


def split(x, split_size_or_sections, dim=0):
    """torch.split: chunks of ``split_size`` (the last may be smaller) or explicit sizes."""
    n = as_tensor(x).shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {sum(sizes)}, not the dim size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * (dim % as_tensor(x).ndim) + (slice(start, start + s),)
        out.append(getitem(x, index))
        start += s
    return tuple(out)


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def gather(x, dim, index):
    return Gather(dim)(x, index)


def pad(x, pad, mode="constant", value=0.0):
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is implemented, got {mode!r}")
    return Pad(pad, value)(x)


def to_device(x, device):
    return ToDevice(device)(x)


register_case("reshape", "merge_split", lambda x: reshape(x, (4, 6)), lambda r: [r.standard_normal((2, 3, 4))])
register_case("permute", "noncontiguous", lambda x: permute(x, (2, 0, 1)),
              lambda r: [r.standard_normal((3, 4, 10))[..., ::2]])
register_case("expand", "broadcast", lambda x: expand(x, (2, 3, 4)), lambda r: [r.standard_normal((3, 1))])
register_case("concat", "dim1_three", lambda a, b, c: concat([a, b, c], dim=1),
              lambda r: [r.standard_normal((2, 1, 3)), r.standard_normal((2, 4, 3)), r.standard_normal((2, 2, 3))])
register_case("stack", "dim_last", lambda a, b: stack([a, b], dim=-1),
              lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))])
register_case("split", "uneven", lambda x: split(x, 2, dim=1), lambda r: [r.standard_normal((2, 5, 3))])
register_case("getitem", "basic_slices", lambda x: getitem(x, (slice(None), 1, slice(0, None, 2))),
              lambda r: [r.standard_normal((2, 3, 5))])
register_case("getitem", "repeated_indices", lambda x: getitem(x, np.array([0, 2, 2, 1, 0])),
              lambda r: [r.standard_normal((3, 4))])
register_case("getitem", "distinct_rows", lambda x: getitem(x, np.array([2, 0, -2])),
              lambda r: [r.standard_normal((4, 3))])
register_case("getitem", "boolean_mask", lambda x: getitem(x, np.arange(12).reshape(3, 4) % 5 < 2),
              lambda r: [r.standard_normal((3, 4))])
register_case("gather", "dim1_repeats", lambda x: gather(x, 1, np.array([[0, 0, 2], [1, 3, 3], [2, 1, 0]])),
              lambda r: [r.standard_normal((3, 4))])
register_case("pad", "last_two_dims", lambda x: pad(x, (1, 2, 0, 1), value=0.5),
              lambda r: [r.standard_normal((2, 2, 3, 3))])
register_case("to_device", "cpu_roundtrip", lambda x: to_device(x, "cpu"), lambda r: [r.standard_normal((2, 3))])
