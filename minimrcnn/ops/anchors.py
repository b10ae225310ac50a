"""Anchors: the reference boxes the RPN classifies and regresses (Faster R-CNN, Sec. 3.1).

At every location of every FPN level there are ``A = len(sizes[l]) * len(aspect_ratios[l])``
anchors centred on the location's top-left pixel in image coordinates. Conventions are
torchvision's ``AnchorGenerator`` (``torchvision/models/detection/anchor_utils.py``), so that a
torchvision RPN head's deltas refer to the same anchors:

* aspect ratio = height / width; for size $s$ and ratio $r$ the anchor is
  $h = s\\sqrt{r}$ tall and $w = s / \\sqrt{r}$ wide (area $s^2$), computed in float32;
* the zero-centred base ("cell") anchor is ``round([-w, -h, w, h] / 2)`` (round half to even);
* the stride of a level is ``image_size // grid_size`` per axis, where ``image_size`` is the
  size of the padded batch;
* the anchor at grid cell (y, x) is the base anchor shifted by ``(x * stride_w, y * stride_h)``;
* ordering is (H, W, A): all A anchors of location 0, then of location 1, ... with locations in
  row-major order, matching the RPN head's ``(N, A*4, H, W) -> (N, H, W, A, 4)`` flattening.
"""
import numbers

import numpy as np

__all__ = ["AnchorGenerator", "generate_anchors", "anchors_at"]


def generate_anchors(scales, aspect_ratios, dtype=np.float32):
    """Zero-centred base anchors, (len(aspect_ratios) * len(scales), 4) xyxy.

    Row ``i * len(scales) + j`` is the anchor of ratio ``aspect_ratios[i]`` and size ``scales[j]``
    (torchvision's ``AnchorGenerator.generate_anchors``, float32 arithmetic throughout).
    """
    scales = np.asarray(scales, dtype=np.float32)
    aspect_ratios = np.asarray(aspect_ratios, dtype=np.float32)
    ### BEGIN SOLUTION anchors
    h_ratios = np.sqrt(aspect_ratios)
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base_anchors = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)
    ### END SOLUTION
    return np.round(base_anchors).astype(dtype)


def _is_seq(x):
    return isinstance(x, (list, tuple))


class AnchorGenerator:
    """Anchors for a set of feature-map levels.

    sizes: one tuple of sizes (pixels, square root of the area) per level;
    aspect_ratios: one tuple of height/width ratios per level.
    Like torchvision, a flat ``sizes`` (e.g. ``(32, 64)``) means one size per level and a flat
    ``aspect_ratios`` is used for every level.

    ``gen(image_size, feature_sizes)`` returns one float32 (H*W*A, 4) array per level.
    """

    def __init__(self, sizes=((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios=((0.5, 1.0, 2.0),) * 5):
        if not _is_seq(sizes) or len(sizes) == 0:
            raise ValueError(f"sizes must be a non-empty tuple (of tuples), got {sizes!r}")
        if not _is_seq(sizes[0]):
            sizes = tuple((s,) for s in sizes)
        if not _is_seq(aspect_ratios) or len(aspect_ratios) == 0:
            raise ValueError(f"aspect_ratios must be a non-empty tuple (of tuples), got {aspect_ratios!r}")
        if not _is_seq(aspect_ratios[0]):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes and aspect_ratios must have one entry per level, got "
                             f"{len(sizes)} and {len(aspect_ratios)}")
        for name, groups in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
            for level, group in enumerate(groups):
                if not _is_seq(group) or len(group) == 0 or not all(
                        isinstance(v, numbers.Real) and v > 0 and np.isfinite(v) for v in group):
                    raise ValueError(f"{name}[{level}] must be a non-empty tuple of positive "
                                     f"numbers, got {group!r}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
        # (A, 4) zero-centred anchors per level, float32
        self.cell_anchors = [generate_anchors(s, a) for s, a in zip(self.sizes, self.aspect_ratios)]
        self._cache = {}

    def __repr__(self):
        return f"AnchorGenerator(sizes={self.sizes}, aspect_ratios={self.aspect_ratios})"

    @property
    def num_levels(self):
        return len(self.sizes)

    def num_anchors_per_location(self):
        """A per level: ``len(sizes[l]) * len(aspect_ratios[l])``."""
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def strides(self, image_size, feature_sizes):
        """(stride_h, stride_w) per level: ``image_size // grid_size``."""
        image_size, grid_sizes = self._check(image_size, feature_sizes)
        return [(image_size[0] // h, image_size[1] // w) for h, w in grid_sizes]

    def grid_anchors(self, level, grid_size, stride, dtype=np.float32):
        """Anchors of one level: (H*W*A, 4), ordered (H, W, A)."""
        grid_h, grid_w = grid_size
        stride_h, stride_w = stride
        key = (level, grid_h, grid_w, stride_h, stride_w, np.dtype(dtype).str)
        anchors = self._cache.get(key)
        if anchors is None:
            ### BEGIN SOLUTION anchors
            shifts_x = np.arange(grid_w, dtype=np.int32) * np.int32(stride_w)
            shifts_y = np.arange(grid_h, dtype=np.int32) * np.int32(stride_h)
            shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")   # (H, W)
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = np.stack((shift_x, shift_y, shift_x, shift_y), axis=1).astype(dtype)  # (H*W, 4)
            base = self.cell_anchors[level].astype(dtype)                               # (A, 4)
            anchors = (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)             # (H*W*A, 4)
            ### END SOLUTION
            anchors.setflags(write=False)
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[key] = anchors
        return anchors

    def __call__(self, image_size, feature_sizes, dtype=np.float32, device="cpu"):
        """Anchors for every level.

        image_size: (H, W) of the padded image batch; feature_sizes: one (h, w) per level (or
        the feature maps themselves: arrays / Tensors whose last two dims are taken).
        Returns a list of (h*w*A, 4) arrays (read-only NumPy arrays on the CPU, CuPy arrays with
        ``device="cuda"``), one per level.
        """
        image_size, grid_sizes = self._check(image_size, feature_sizes)
        out = []
        for level, (h, w) in enumerate(grid_sizes):
            stride = (image_size[0] // h, image_size[1] // w)
            anchors = self.grid_anchors(level, (h, w), stride, dtype)
            if str(device).startswith("cuda"):
                from ..backend import to_device
                anchors = to_device(anchors, "cuda")
            elif device != "cpu":
                raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
            out.append(anchors)
        return out

    def _check(self, image_size, feature_sizes):
        try:
            image_size = tuple(int(v) for v in image_size)
            bad = len(image_size) != 2 or min(image_size) <= 0
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise ValueError(f"image_size must be (height, width) with positive integers, got {image_size!r}")
        if not _is_seq(feature_sizes):
            raise ValueError(f"feature_sizes must be a list with one (h, w) per level, got {feature_sizes!r}")
        if len(feature_sizes) != self.num_levels:
            raise ValueError(f"feature_sizes has {len(feature_sizes)} levels but the generator has "
                             f"{self.num_levels} (sizes={self.sizes})")
        grid_sizes = []
        for level, fs in enumerate(feature_sizes):
            if hasattr(fs, "shape"):
                fs = tuple(fs.shape[-2:])
            try:
                h, w = (int(v) for v in fs)
            except (TypeError, ValueError):
                raise ValueError(f"feature_sizes[{level}] must be (h, w), got {fs!r}") from None
            if not (0 < h <= image_size[0] and 0 < w <= image_size[1]):
                raise ValueError(f"feature_sizes[{level}] = {(h, w)} must be positive and no larger "
                                 f"than image_size {image_size}")
            grid_sizes.append((h, w))
        return image_size, grid_sizes


def anchors_at(anchors, grid_size, y, x, num_anchors):
    """The ``num_anchors`` anchors of grid cell (y, x) in one level's (H*W*A, 4) array."""
    h, w = grid_size
    if not (0 <= y < h and 0 <= x < w):
        raise IndexError(f"cell (y={y}, x={x}) is outside the grid {grid_size}")
    start = (y * w + x) * num_anchors
    return anchors[start:start + num_anchors]
