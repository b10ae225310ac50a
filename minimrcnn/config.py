"""Typed model configs and the named presets.

One flat dataclass holds every choice the paper's ablations vary, so that two rows of a table
are one override apart::

    cfg = get_config("classroom_fpn", num_classes=4, pooler="roi_pool")   # Table 2c's RoIPool row

An unknown key or a bad value raises ``ConfigError`` naming the key. Presets:

- ``tv_r50_fpn`` / ``tv_keypoint_r50_fpn``: torchvision's maskrcnn_resnet50_fpn /
  keypointrcnn_resnet50_fpn conventions exactly (91 COCO classes incl. background; 2 for the
  keypoint model), so imported weights reproduce torchvision's detections.
- ``paper_r50_c4``, ``paper_r50_fpn``, ``paper_r101_fpn``, ``paper_x101_fpn``: the paper's
  Section 3.1 models (81 classes, RoIAlign with the half-pixel alignment off as in Detectron).
- ``classroom_fpn``, ``classroom_c4``, ``classroom_c5``: a thin, shallow ResNet that trains in
  minutes on a CPU at 256-pixel images.
"""
import dataclasses
import difflib
import math
from dataclasses import dataclass, fields

__all__ = ["Config", "ConfigError", "get_config", "PRESETS"]


class ConfigError(ValueError):
    """A config key is unknown or its value is out of range; the message names the key."""


@dataclass
class Config:
    name: str = "custom"
    # ---- input transform (torchvision's GeneralizedRCNNTransform) -------------------------
    min_size: int = 800                     # shorter side after resize
    max_size: int = 1333                    # cap on the longer side
    image_mean: tuple = (0.485, 0.456, 0.406)
    image_std: tuple = (0.229, 0.224, 0.225)
    size_divisible: int = 32                # zero-pad H and W to a multiple of this
    # ---- backbone ------------------------------------------------------------------------
    backbone: str = "resnet"                # "resnet" | "classroom"
    depth: int = 50                         # ResNet depth: 50 | 101
    groups: int = 1                         # ResNeXt cardinality (32 for X-101-32x8d)
    width_per_group: int = 64               # ResNeXt bottleneck width (8 for 32x8d)
    stride_in_1x1: bool = False             # Detectron/MSRA: stride on the first 1x1, not the 3x3
    norm: str = "frozen_bn"                 # "frozen_bn" | "bn" | "gn"
    frozen_bn_eps: float = 1e-5             # torchvision's COCO weights were trained with 0.0
    trainable_layers: int = 3               # counted from res5 down, as torchvision (0..5)
    features: str = "fpn"                   # "fpn" | "c4" | "c5" (Table 2d)
    classroom_widths: tuple = (16, 32, 64, 128)   # output width / 4 of each stage res2..res5
    classroom_blocks: tuple = (1, 1, 1, 1)        # bottleneck blocks per stage
    fpn_channels: int = 256
    # ---- anchors and RPN -----------------------------------------------------------------
    anchor_sizes: tuple = ((32,), (64,), (128,), (256,), (512,))   # one tuple per level
    aspect_ratios: tuple = (0.5, 1.0, 2.0)  # h / w
    rpn_pre_nms_top_n_train: int = 2000     # per level per image
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000    # per image
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    # ---- RoI heads -------------------------------------------------------------------------
    num_classes: int = 91                   # including background
    pooler: str = "roi_align"               # "roi_align" | "roi_pool" | "roi_warp" (Table 2c)
    pooler_aligned: bool = False            # RoIAlign's half-pixel shift (torchvision: False)
    pooler_sampling_ratio: int = 2          # <= 0: adaptive
    pooler_mode: str = "avg"                # "avg" | "max" over a bin's samples (Table 2c); applies
                                            # to roi_align and roi_warp; RoIPool is a max by
                                            # definition and ignores it
    box_pooler_resolution: int = 7
    box_head: str = "2fc"                   # "2fc" (FPN) | "res5" (C4, Figure 4 left)
    box_head_dim: int = 1024
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    box_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    # ---- mask branch -----------------------------------------------------------------------
    mask_on: bool = True                    # False: Faster R-CNN (Table 3)
    mask_head: str = "fcn"                  # "fcn" | "mlp" (Table 2e)
    mask_pooler_resolution: int = 14
    mask_head_layers: tuple = (256, 256, 256, 256)
    mask_loss: str = "sigmoid"              # "sigmoid" (per-class BCE) | "softmax" (Table 2b)
    mask_class_agnostic: bool = False       # one mask for all classes (Section 4.2)
    # ---- keypoint branch (Section 5) -------------------------------------------------------
    keypoint_on: bool = False
    num_keypoints: int = 17
    keypoint_pooler_resolution: int = 14
    keypoint_head_layers: tuple = (512,) * 8
    # ---- training schedule (Section 3.1: SGD, momentum 0.9, weight decay 1e-4, lr 0.02 for
    #      16 images per batch, divided by 10 at 120k of 160k iterations) ----------------------
    ims_per_batch: int = 16                 # images per SGD step
    base_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4              # not applied to biases and norm parameters
    max_iter: int = 160000
    lr_steps: tuple = (0.75,)               # fractions of max_iter where lr is divided by 10
    warmup_iters: int = 500                 # linear warmup from warmup_factor * base_lr
    warmup_factor: float = 1.0 / 3
    flip_prob: float = 0.5                  # horizontal flips in training
    seed: int = 0                           # weights, sampling and data order

    def __post_init__(self):
        self.validate()

    def validate(self):
        choices = {"backbone": ("resnet", "classroom"), "norm": ("frozen_bn", "bn", "gn"),
                   "features": ("fpn", "c4", "c5"), "pooler": ("roi_align", "roi_pool", "roi_warp"),
                   "pooler_mode": ("avg", "max"),
                   "box_head": ("2fc", "res5"), "mask_head": ("fcn", "mlp"),
                   "mask_loss": ("sigmoid", "softmax")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"config key {key!r} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.backbone == "resnet" and (not _is_int(self.depth) or self.depth not in (50, 101)):
            raise ConfigError(f"config key 'depth' must be 50 or 101 for a ResNet, got {self.depth!r}")
        positive = ["min_size", "max_size", "size_divisible", "num_classes", "fpn_channels",
                    "box_pooler_resolution", "mask_pooler_resolution", "box_head_dim",
                    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img",
                    "groups", "width_per_group", "num_keypoints", "keypoint_pooler_resolution"]
        for key in positive:
            v = getattr(self, key)
            if not _is_int(v) or v <= 0:
                raise ConfigError(f"config key {key!r} must be a positive integer, got {v!r}")
        for key in ["rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction",
                    "box_fg_iou_thresh", "box_bg_iou_thresh", "box_positive_fraction", "box_nms_thresh",
                    "box_score_thresh"]:
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"config key {key!r} must be a number in [0, 1], got {v!r}")
        if self.num_classes < 2:
            raise ConfigError(f"config key 'num_classes' counts the background too: need >= 2, got {self.num_classes}")
        if not _is_int(self.trainable_layers) or not 0 <= self.trainable_layers <= 5:
            raise ConfigError(f"config key 'trainable_layers' must be an integer in 0..5, got "
                              f"{self.trainable_layers!r}")
        for key in ("aspect_ratios", "box_reg_weights"):
            values = getattr(self, key)
            if not isinstance(values, tuple) or not values or not all(_is_positive_number(v) for v in values):
                raise ConfigError(f"config key {key!r} must be a non-empty tuple of positive numbers, "
                                  f"got {values!r}")
        if len(self.box_reg_weights) != 4:
            raise ConfigError(f"config key 'box_reg_weights' needs 4 values (wx, wy, ww, wh), got "
                              f"{self.box_reg_weights!r}")
        if not isinstance(self.anchor_sizes, tuple) or not self.anchor_sizes or not all(
                isinstance(level, tuple) and level and all(_is_positive_number(v) for v in level)
                for level in self.anchor_sizes):
            raise ConfigError(f"config key 'anchor_sizes' must be a non-empty tuple with one non-empty "
                              f"tuple of positive sizes per level, got {self.anchor_sizes!r}")
        for key in ("mask_head_layers", "keypoint_head_layers", "classroom_widths", "classroom_blocks"):
            values = getattr(self, key)
            if not isinstance(values, tuple) or not values or not all(_is_int(v) and v > 0 for v in values):
                raise ConfigError(f"config key {key!r} must be a non-empty tuple of positive integers, "
                                  f"got {values!r}")
        if len(self.classroom_widths) != 4 or len(self.classroom_blocks) != 4:
            raise ConfigError("config keys 'classroom_widths' and 'classroom_blocks' need 4 values (res2..res5), "
                              f"got {self.classroom_widths!r} and {self.classroom_blocks!r}")
        if self.features == "fpn" and len(self.anchor_sizes) != 5:
            raise ConfigError(f"config key 'anchor_sizes' needs one tuple per FPN level (5), got {self.anchor_sizes!r}")
        if self.features == "fpn" and self.box_head == "res5":
            raise ConfigError("config key 'box_head': 'res5' goes with features='c4' (Figure 4 left), not 'fpn'")
        if not isinstance(self.frozen_bn_eps, (int, float)) or self.frozen_bn_eps < 0:
            raise ConfigError(f"config key 'frozen_bn_eps' must be a number >= 0, got {self.frozen_bn_eps!r}")
        self._validate_schedule()
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError(f"config keys 'image_mean'/'image_std' need 3 values, got {self.image_mean!r}, {self.image_std!r}")

    def _validate_schedule(self):
        for key in ("ims_per_batch", "max_iter"):
            v = getattr(self, key)
            if not _is_int(v) or v <= 0:
                raise ConfigError(f"config key {key!r} must be a positive integer, got {v!r}")
        for key in ("warmup_iters", "seed"):
            v = getattr(self, key)
            if not _is_int(v) or v < 0:
                raise ConfigError(f"config key {key!r} must be an integer >= 0, got {v!r}")
        for key in ("base_lr", "momentum", "weight_decay"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ConfigError(f"config key {key!r} must be a number >= 0, got {v!r}")
        if not isinstance(self.warmup_factor, (int, float)) or not 0 < self.warmup_factor <= 1:
            raise ConfigError(f"config key 'warmup_factor' must be in (0, 1], got {self.warmup_factor!r}")
        if not isinstance(self.flip_prob, (int, float)) or not 0 <= self.flip_prob <= 1:
            raise ConfigError(f"config key 'flip_prob' must be in [0, 1], got {self.flip_prob!r}")
        steps = tuple(self.lr_steps)
        if not all(isinstance(f, (int, float)) and 0 < f < 1 for f in steps) or list(steps) != sorted(set(steps)):
            raise ConfigError(f"config key 'lr_steps' must be increasing fractions of max_iter in (0, 1), "
                              f"got {self.lr_steps!r}")

    def lr_milestones(self):
        """The iterations where the learning rate drops: ``lr_steps`` times ``max_iter``."""
        return [int(round(f * self.max_iter)) for f in self.lr_steps]

    def replace(self, **overrides):
        return _apply(self, overrides)

    def to_dict(self):
        return dataclasses.asdict(self)


def _is_int(v):
    # stricter than minimrcnn.checks.is_int: a config travels as JSON inside every checkpoint,
    # and a NumPy integer is not JSON, so only Python ints are config integers
    return isinstance(v, int) and not isinstance(v, bool)


def _is_positive_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _apply(cfg, overrides):
    known = {f.name for f in fields(Config)}
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(sorted(close)[:3])}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
    values = {**cfg.to_dict(), **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}}
    return Config(**values)


# torchvision loads its COCO_V1 weights with FrozenBatchNorm2d eps = 0 (overwrite_eps)
_TV = dict(name="tv_r50_fpn", frozen_bn_eps=0.0)
_PAPER = dict(num_classes=81, min_size=800, max_size=1333, pooler_sampling_ratio=2)
# the classroom schedule: 4 images of 128 px per step, ~5 minutes on 2 CPU cores (the demo)
_CLASSROOM = dict(backbone="classroom", norm="gn", trainable_layers=5, min_size=128, max_size=224,
                  ims_per_batch=4, base_lr=0.02, max_iter=1500, lr_steps=(0.8,), warmup_iters=100,
                  warmup_factor=0.001, keypoint_head_layers=(64,) * 4,
                  fpn_channels=64, box_head_dim=256, mask_head_layers=(64, 64), num_classes=4,
                  rpn_pre_nms_top_n_train=600, rpn_pre_nms_top_n_test=300,
                  rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=150,
                  box_batch_size_per_image=64, rpn_batch_size_per_image=128,
                  anchor_sizes=((16,), (32,), (64,), (128,), (256,)))

PRESETS = {
    "tv_r50_fpn": _TV,
    "tv_keypoint_r50_fpn": dict(_TV, name="tv_keypoint_r50_fpn", num_classes=2, mask_on=False, keypoint_on=True,
                                min_size=800),
    "paper_r50_c4": dict(_PAPER, name="paper_r50_c4", features="c4", box_head="res5", box_pooler_resolution=7,
                         anchor_sizes=((32, 64, 128, 256, 512),), rpn_pre_nms_top_n_train=12000,
                         rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300, box_head_dim=2048,
                         box_batch_size_per_image=64),   # Section 3.1: N = 64 RoIs and 300 test proposals for C4
    "paper_r50_fpn": dict(_PAPER, name="paper_r50_fpn"),
    "paper_r101_fpn": dict(_PAPER, name="paper_r101_fpn", depth=101),
    "paper_x101_fpn": dict(_PAPER, name="paper_x101_fpn", depth=101, groups=32, width_per_group=8,
                           stride_in_1x1=False),
    "classroom_fpn": dict(_CLASSROOM, name="classroom_fpn"),
    "classroom_c4": dict(_CLASSROOM, name="classroom_c4", features="c4", box_head="res5", box_pooler_resolution=7,
                         anchor_sizes=((16, 32, 64, 128, 256),)),
    "classroom_c5": dict(_CLASSROOM, name="classroom_c5", features="c5", box_pooler_resolution=7,
                         anchor_sizes=((16, 32, 64, 128, 256),)),
}


def get_config(name, **overrides):
    """The preset ``name`` with ``overrides`` applied (unknown keys and bad values raise)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown config preset {name!r}; presets: {', '.join(PRESETS)}")
    return _apply(Config(), {**PRESETS[name], **overrides})
