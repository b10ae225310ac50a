"""The public face of ``minimrcnn.modeling``: build a model from a config.

    from minimrcnn.config import get_config
    from minimrcnn.models import build_model

    model = build_model(get_config("tv_r50_fpn"))          # torchvision's maskrcnn_resnet50_fpn
    model.load_torchvision_state_dict(state_dict)           # COCO weights, old or new key names
    detections = model.predict([image])                     # list of dicts of ndarrays

One builder serves all the paper's variants through config values: Faster R-CNN when
``cfg.mask_on`` is False (Table 3), Keypoint R-CNN when ``cfg.keypoint_on`` (Section 5), the
C4 / C5 / FPN backbones (Table 2d), RoIAlign / RoIPool / RoIWarp (Table 2c), and so on.
"""
from .modeling.backbone import build_backbone
from .modeling.mask_rcnn import MaskRCNN, build_rpn, build_transform

__all__ = ["build_model", "MaskRCNN"]

def build_model(cfg):
    """The :class:`MaskRCNN` described by ``cfg`` (a :class:`minimrcnn.config.Config`).

    backbone = ``build_backbone(cfg)``; rpn on its ``out_channels`` with ``cfg``'s anchors;
    roi_heads = ``build_roi_heads(cfg, backbone.out_channels, featmap_names)`` (the maps the
    RoI poolers read: P2..P5 with FPN, "0" for C4 / C5) (box head, plus
    the mask head if ``cfg.mask_on`` and the keypoint head if ``cfg.keypoint_on``); transform
    with ``cfg.min_size`` / ``cfg.max_size``. The model starts in training mode, as torch's.
    FrozenBatchNorm2d layers use ``cfg.frozen_bn_eps`` (0.0 in the torchvision presets).
    """
    from .modeling.roi_heads import build_roi_heads

    _check_config(cfg)
    backbone = build_backbone(cfg)
    rpn = build_rpn(cfg, backbone.out_channels)
    # the RoI poolers read P2..P5 ("0".."3"), not the RPN-only P6 ("pool"), as torchvision
    featmap_names = [name for name in backbone.feature_strides if name != "pool"]
    roi_heads = build_roi_heads(cfg, backbone.out_channels, featmap_names)
    return MaskRCNN(backbone, rpn, roi_heads, build_transform(cfg), cfg=cfg)


def _check_config(cfg):
    from .config import Config
    if isinstance(cfg, Config):
        return
    if isinstance(cfg, str):
        raise TypeError(f"build_model takes a Config, got the string {cfg!r}; for a preset use "
                        f"build_model(get_config({cfg!r}))")
    if isinstance(cfg, dict):
        raise TypeError("build_model takes a Config, got a dict; use build_model(Config(**d)) or "
                        "get_config(preset, **overrides)")
    raise TypeError(f"build_model takes a minimrcnn.config.Config, got {type(cfg).__name__}")
