r"""RoI feature extraction from one or several feature maps (torchvision's MultiScaleRoIAlign).

The second stage of Mask R-CNN looks at every RoI through a small fixed-size feature map cut out
of the backbone's features: 7x7 for the box head, 14x14 for the mask and keypoint heads. The
pooler does two things.

1. **Pick the feature map.** With one map (C4, C5) every RoI reads it. With an FPN pyramid an
   RoI of width $w$ and height $h$ (in input-image pixels) reads level (FPN paper, eq. 1)

   $$k = \left\lfloor k_0 + \log_2\!\left(\sqrt{wh} / 224\right) + 10^{-6} \right\rfloor,
     \qquad k \leftarrow \min(\max(k, k_{min}), k_{max})$$

   with $k_0$ = ``canonical_level`` = 4 and 224 = ``canonical_scale``: an ImageNet-sized RoI
   reads P4, one half its side reads P3, twice its side P5. $k_{min}, k_{max}$ are the levels
   of the first and last map given (P2..P5: 2 and 5). The $10^{-6}$ keeps boxes of exactly
   112, 224, 448 pixels on levels 3, 4, 5 despite rounding in the logarithm.

2. **Cut out the RoI** with ``method``: ``"roi_align"`` (Section 3; the default),
   ``"roi_pool"`` (Fast R-CNN's quantized max) or ``"roi_warp"`` (MNC's quantized box,
   bilinear) -- the three rows of Table 2c -- and ``mode``: ``"avg"`` or ``"max"`` over each
   bin's bilinear samples (RoIAlign and RoIWarp; RoIPool is a max by definition). RoIWarp gets
   the pooler's ``sampling_ratio`` too, so that it differs from RoIAlign by the quantized box
   alone. Each map's ``spatial_scale`` (feature size / image
   size) is inferred as torchvision does: $2^{\mathrm{round}(\log_2(H_{feat} / H_{img}))}$, with
   $H_{img}$ the largest image height of the batch (before padding).

The output is (K, C, PH, PW) with K = the total number of RoIs, in the order of the input:
image 0's boxes first, then image 1's, and so on. It is differentiable in the features (the
RoIs are constants, as in torchvision): each level's RoIs are pooled separately, concatenated,
and put back in input order by indexing, all differentiable ops.
"""
import math

import numpy as np

from .. import nn
from .. import ops
from .. import functional as F
from ..autograd.tensor import as_array
from ..backend import as_numpy, get_array_module
from ..checks import int_pair, is_int
from ..ops.checks import check_pool_mode

__all__ = ["MultiScaleRoIPooler", "LevelMapper", "infer_scale", "convert_to_roi_format"]

_METHODS = ("roi_align", "roi_pool", "roi_warp")


# ---- helpers ------------------------------------------------------------------------------------

def convert_to_roi_format(boxes, dtype=None):
    """A list of per-image (K_i, 4) boxes -> one (K, 5) array [batch_index, x1, y1, x2, y2].

    The batch index is stored in the boxes' dtype (as torchvision does), on the boxes' device.
    """
    boxes = [as_array(b) for b in boxes]
    xp = get_array_module(*boxes) if boxes else np
    dtype = dtype or (boxes[0].dtype if boxes else np.float32)
    rows = [xp.concatenate([xp.full((b.shape[0], 1), i, dtype=dtype), b.astype(dtype, copy=False)], axis=1)
            for i, b in enumerate(boxes)]
    return xp.concatenate(rows, axis=0) if rows else xp.zeros((0, 5), dtype=dtype)


def infer_scale(feature_size, image_size):
    """The spatial scale of a feature map: $2^{\\mathrm{round}(\\log_2(H_{feat}/H_{img}))}$.

    feature_size, image_size: (H, W). As torchvision, the ratio's logarithm is taken in float32,
    rounded half to even, and the height decides (the width gives the same power of two when the
    network downsamples by powers of two).
    """
    approx_scale = float(feature_size[0]) / float(image_size[0])
    return 2.0 ** float(np.round(np.log2(np.float32(approx_scale))))


class LevelMapper:
    r"""Which pyramid level each RoI reads (FPN eq. 1, torchvision's LevelMapper).

    ``LevelMapper(k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6)``;
    calling it with a list of per-image (K_i, 4) boxes returns (K,) int64 indices in
    [0, k_max - k_min] into the list of feature maps:

    $$\mathrm{idx} = \mathrm{clamp}\left(\left\lfloor k_0 + \log_2(\sqrt{\mathrm{area}} / s_0)
      + \epsilon \right\rfloor, k_{min}, k_{max}\right) - k_{min}$$

    computed in the boxes' precision (float32 for float32 boxes), as torchvision.
    """

    def __init__(self, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
        if k_min > k_max:
            raise ValueError(f"LevelMapper: k_min ({k_min}) must be <= k_max ({k_max})")
        self.k_min, self.k_max = int(k_min), int(k_max)
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __repr__(self):
        return (f"LevelMapper(k_min={self.k_min}, k_max={self.k_max}, canonical_scale={self.s0}, "
                f"canonical_level={self.lvl0})")

    def __call__(self, boxlists):
        boxes = [as_array(b) for b in boxlists]
        xp = get_array_module(*boxes)
        boxes = xp.concatenate(boxes, axis=0)
        if boxes.dtype.kind != "f":
            boxes = boxes.astype(np.float32)
        dt = boxes.dtype.type
        s = xp.sqrt(ops.box_area(boxes))                                          # (K,)
        with np.errstate(divide="ignore"):                                         # area 0 -> -inf -> k_min
            target_lvls = xp.floor(dt(self.lvl0) + xp.log2(s / dt(self.s0)) + dt(self.eps))
        target_lvls = xp.clip(target_lvls, self.k_min, self.k_max)
        return target_lvls.astype(np.int64) - self.k_min


# ---- the pooler ---------------------------------------------------------------------------------

class MultiScaleRoIPooler(nn.Module):
    """RoI features from one or several feature maps (torchvision's ``MultiScaleRoIAlign``,
    with Table 2c's choice of RoI operation).

    Args:
        featmap_names: names of the maps to pool from, e.g. ["0", "1", "2", "3"] for P2..P5
            (the FPN's "pool" level P6 is not used by the heads) or ["0"] for C4 / C5. They are
            taken in the order of the features dict, as torchvision does.
        output_size: int or (PH, PW): 7 for the box head, 14 for mask and keypoint heads.
        sampling_ratio: RoIAlign / RoIWarp samples per bin along each axis (2; <= 0: adaptive).
        method: "roi_align" | "roi_pool" | "roi_warp".
        mode: "avg" | "max" over a bin's samples, for roi_align and roi_warp (Table 2c's
            max / avg rows); roi_pool ignores it (it is a max by definition).
        aligned: RoIAlign's half-pixel shift (False in torchvision's Mask R-CNN and Detectron).
        canonical_scale, canonical_level: $s_0$ = 224 and $k_0$ = 4 of the level mapping.

    ``forward(features, proposals, image_shapes)``: features a dict name -> Tensor
    (N, C, H_l, W_l); proposals a list of N (K_i, 4) arrays (x1, y1, x2, y2 in input-image
    pixels); image_shapes N (h, w) before padding. Returns a Tensor (sum K_i, C, PH, PW).
    ``aligned`` matters for RoIAlign only; ``sampling_ratio`` and ``mode`` for RoIAlign and
    RoIWarp.
    """

    def __init__(self, featmap_names, output_size, sampling_ratio, method="roi_align", aligned=False,
                 canonical_scale=224, canonical_level=4, mode="avg"):
        super().__init__()
        if isinstance(featmap_names, str) or not featmap_names:
            raise ValueError(f"MultiScaleRoIPooler: featmap_names must be a non-empty list of names, "
                             f"got {featmap_names!r}")
        if method not in _METHODS:
            raise ValueError(f"MultiScaleRoIPooler: method must be one of {_METHODS}, got {method!r}")
        if not is_int(sampling_ratio):
            raise ValueError(f"MultiScaleRoIPooler: sampling_ratio must be an int, got {sampling_ratio!r}")
        self.mode = check_pool_mode("MultiScaleRoIPooler", mode)
        self.featmap_names = [str(n) for n in featmap_names]
        self.output_size = int_pair(output_size, "output_size", "MultiScaleRoIPooler", minimum=1)
        self.sampling_ratio = int(sampling_ratio)
        self.method = method
        self.aligned = bool(aligned)
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.scales = None        # set by forward: spatial scale of each map used
        self.map_levels = None    # set by forward: the LevelMapper

    def extra_repr(self):
        s = (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
             f"sampling_ratio={self.sampling_ratio}, method={self.method!r}")
        return s + (", aligned=True" if self.aligned else "") + (", mode='max'" if self.mode == "max" else "")

    # ---- pieces -------------------------------------------------------------------------
    def _filter_input(self, features):
        if not hasattr(features, "items"):
            raise TypeError(f"MultiScaleRoIPooler: features must be a dict name -> Tensor, got "
                            f"{type(features).__name__}")
        missing = [n for n in self.featmap_names if n not in features]
        if missing:
            raise KeyError(f"MultiScaleRoIPooler: feature maps {missing} are missing; the features "
                           f"dict has {list(features.keys())}")
        return [v for k, v in features.items() if k in self.featmap_names]

    def setup_scales(self, features, image_shapes):
        """(scales, LevelMapper) of the maps ``features`` (list) for images of ``image_shapes``."""
        if not image_shapes:
            raise ValueError("MultiScaleRoIPooler: image_shapes is empty")
        max_h = max(int(s[0]) for s in image_shapes)
        max_w = max(int(s[1]) for s in image_shapes)
        scales = [infer_scale(f.shape[-2:], (max_h, max_w)) for f in features]
        lvl_min = -math.log2(scales[0])
        lvl_max = -math.log2(scales[-1])
        mapper = LevelMapper(int(lvl_min), int(lvl_max), self.canonical_scale, self.canonical_level)
        return scales, mapper

    def _pool(self, feature, rois, scale):
        if self.method == "roi_align":
            return ops.roi_align(feature, rois, self.output_size, spatial_scale=scale,
                                 sampling_ratio=self.sampling_ratio, aligned=self.aligned,
                                 mode=self.mode)
        if self.method == "roi_pool":
            return ops.roi_pool(feature, rois, self.output_size, spatial_scale=scale)
        return ops.roi_warp(feature, rois, self.output_size, spatial_scale=scale,
                            sampling_ratio=self.sampling_ratio, mode=self.mode)

    # ---- forward ------------------------------------------------------------------------
    def forward(self, features, proposals, image_shapes):
        x_filtered = self._filter_input(features)
        _check_proposals(proposals, image_shapes, num_images=x_filtered[0].shape[0])
        self.scales, self.map_levels = self.setup_scales(x_filtered, image_shapes)
        rois = convert_to_roi_format(proposals, dtype=x_filtered[0].dtype)      # (K, 5)

        if len(x_filtered) == 1:
            return self._pool(x_filtered[0], rois, self.scales[0])

        levels = as_numpy(self.map_levels(proposals))                            # (K,)
        xp = get_array_module(rois)
        idx_per_level, results = [], []
        for level, (feature, scale) in enumerate(zip(x_filtered, self.scales)):
            idx_in_level = np.nonzero(levels == level)[0]
            idx_per_level.append(idx_in_level)
            results.append(self._pool(feature, rois[xp.asarray(idx_in_level)], scale))   # (K_l, C, PH, PW)
        # rows of the concatenation are the RoIs idx_per_level[0], then idx_per_level[1], ...;
        # indexing with the inverse permutation puts them back in input order
        order = np.concatenate(idx_per_level)
        return F.concat(results, dim=0)[xp.asarray(np.argsort(order))]


# ---- the checks at the door ---------------------------------------------------------------------

def _check_proposals(proposals, image_shapes, num_images):
    if not isinstance(proposals, (list, tuple)):
        raise TypeError(f"MultiScaleRoIPooler: proposals must be a list of (K_i, 4) arrays, one per "
                        f"image, got {type(proposals).__name__}")
    if len(proposals) != num_images or len(image_shapes) != num_images:
        raise ValueError(f"MultiScaleRoIPooler: the features hold {num_images} images but "
                         f"{len(proposals)} proposal lists and {len(image_shapes)} image shapes "
                         f"were given")
    for i, p in enumerate(proposals):
        p = as_array(p)
        if p.ndim != 2 or p.shape[1] != 4:
            raise ValueError(f"MultiScaleRoIPooler: proposals[{i}] must have shape (K, 4), got "
                             f"{tuple(p.shape)}")
