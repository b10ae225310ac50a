"""The public face of ``minimrcnn.modeling``: build a model from a config.

    from minimrcnn.config import get_config
    from minimrcnn.models import build_model

    model = build_model(get_config("tv_r50_fpn"))          # torchvision's maskrcnn_resnet50_fpn
    model.load_torchvision_state_dict(state_dict)           # COCO weights, old or new key names
    detections = model.predict([image])                     # list of dicts of ndarrays

This page is the one place where config keys meet modules: every stage module (in
``minimrcnn/modeling/``) takes plain arguments, and each builder below reads the keys of its
stage and passes them on. One builder serves all the paper's variants through config values:
Faster R-CNN when ``cfg.mask_on`` is False (Table 3), Keypoint R-CNN when ``cfg.keypoint_on``
(Section 5), the C4 / C5 / FPN backbones (Table 2d), RoIAlign / RoIPool / RoIWarp (Table 2c),
the sigmoid / softmax mask loss (Table 2b), the FCN / MLP mask head (Table 2e), and so on.

    stage       builder              config keys
    transform   build_transform      min_size max_size image_mean image_std size_divisible
    backbone    build_backbone       backbone depth groups width_per_group stride_in_1x1 norm
                                     frozen_bn_eps trainable_layers features classroom_widths
                                     classroom_blocks fpn_channels
    rpn         build_rpn            anchor_sizes aspect_ratios rpn_*
    roi heads   build_roi_heads      num_classes pooler pooler_mode pooler_aligned
                                     pooler_sampling_ratio box_* mask_* keypoint_* num_keypoints
      C4 box    build_res5_head      (res5 of the backbone's ResNet, Figure 4 left)
"""
from .config import Config, ConfigError
from .modeling.backbone import BackboneWithFPN, BackboneWithoutFPN
from .modeling.box_head import FastRCNNPredictor, Res5Head, TwoMLPHead
from .modeling.fpn import LastLevelMaxPool
from .modeling.keypoint_head import KeypointRCNNHeads, KeypointRCNNPredictor
from .modeling.mask_head import MaskMLPHead, MaskMLPPredictor, MaskRCNNHeads, MaskRCNNPredictor
from .modeling.mask_rcnn import MaskRCNN
from .modeling.poolers import MultiScaleRoIPooler
from .modeling.resnet import RESNET_BLOCKS, ResNet, freeze_layers, get_norm_layer, init_weights, make_stage
from .modeling.roi_heads import C4RoIHeads, RoIHeads
from .modeling.rpn import RegionProposalNetwork, RPNHead
from .modeling.transform import GeneralizedRCNNTransform
from .ops import AnchorGenerator

__all__ = ["build_model", "MaskRCNN", "build_transform", "build_backbone", "build_resnet_body",
           "build_res5_head", "build_rpn", "build_roi_heads"]


def build_model(cfg):
    """The :class:`MaskRCNN` described by ``cfg`` (a :class:`minimrcnn.config.Config`).

    transform -> backbone -> rpn (on the backbone's ``out_channels``) -> roi heads (reading the
    maps the RoI poolers use: P2..P5 with FPN, "0" for C4 / C5). The model starts in training
    mode, as torch's. FrozenBatchNorm2d layers use ``cfg.frozen_bn_eps`` (0.0 in the
    torchvision presets).
    """
    _check_config(cfg)
    backbone = build_backbone(cfg)
    rpn = build_rpn(cfg, backbone.out_channels)
    # the RoI poolers read P2..P5 ("0".."3"), not the RPN-only P6 ("pool"), as torchvision
    featmap_names = [name for name in backbone.feature_strides if name != "pool"]
    roi_heads = build_roi_heads(cfg, backbone.out_channels, featmap_names)
    return MaskRCNN(backbone, rpn, roi_heads, build_transform(cfg), cfg=cfg)


# ---- transform ---------------------------------------------------------------------------------

def build_transform(cfg):
    """The input transform of ``cfg``: min/max size, ImageNet mean/std, padding to 32."""
    return GeneralizedRCNNTransform(cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std,
                                    size_divisible=cfg.size_divisible)


# ---- backbone ----------------------------------------------------------------------------------

def _resnet_args(cfg):
    """(blocks per stage, bottleneck widths, stem width) of ``cfg``'s ResNet."""
    if cfg.backbone == "classroom":
        return tuple(cfg.classroom_blocks), tuple(cfg.classroom_widths), cfg.classroom_widths[0]
    return RESNET_BLOCKS[cfg.depth], (64, 128, 256, 512), 64


def build_resnet_body(cfg, num_stages=4, return_layers=None):
    """The ResNet (or ResNeXt, or classroom ResNet) of ``cfg`` with its first ``num_stages``
    stages, frozen as ``cfg.trainable_layers`` says."""
    blocks, widths, stem = _resnet_args(cfg)
    body = ResNet(blocks[:num_stages], planes=widths, stem_channels=stem, groups=cfg.groups,
                  width_per_group=cfg.width_per_group, stride_in_1x1=cfg.stride_in_1x1,
                  norm_layer=get_norm_layer(cfg.norm, cfg.frozen_bn_eps), return_layers=return_layers)
    return freeze_layers(body, cfg.trainable_layers)


def build_backbone(cfg):
    """The backbone of ``cfg.features`` (see :mod:`minimrcnn.modeling.backbone`):

    - "fpn": the 4-stage body returning C2..C5 + an FPN of ``cfg.fpn_channels`` with P6 ("pool");
    - "c4": the body up to res4, {"0": C4} (res5 becomes the box head, :func:`build_res5_head`);
    - "c5": the whole body, {"0": C5}.
    """
    if cfg.features == "fpn":
        return_layers = {f"layer{i + 1}": str(i) for i in range(4)}
        body = build_resnet_body(cfg, 4, return_layers)
        return BackboneWithFPN(body, list(body.stage_channels.values()), cfg.fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    if cfg.features == "c4":
        return BackboneWithoutFPN(build_resnet_body(cfg, 3, {"layer3": "0"}))
    return BackboneWithoutFPN(build_resnet_body(cfg, 4, {"layer4": "0"}))


def build_res5_head(cfg, stride=1):
    """res5 (``layer4``) as the C4 model's box head trunk, Figure 4 (left).

    The paper alters res5 "so that the first conv operates on a 7x7 RoI with stride 1 (instead
    of 14x14 / stride 2)": the first block and its projection shortcut get ``stride`` (1), so
    pooled RoI features (K, C4 channels, 7, 7) -> (K, 4 * res5 width, 7, 7), e.g.
    (K, 1024, 7, 7) -> (K, 2048, 7, 7) for R-50. The box head then averages over the 7x7.

    A Sequential of Bottlenecks with the names of torchvision's ``layer4`` ("0.conv1.weight",
    "0.downsample.0.weight", ...), so ImageNet layer4 weights load into it; ``out_channels``
    and ``in_channels`` are attributes. It trains unless ``cfg.trainable_layers == 0`` (which
    freezes layer4 first).
    """
    blocks, widths, _ = _resnet_args(cfg)
    in_channels = widths[2] * 4
    head = make_stage(in_channels, widths[3], blocks[3], stride, groups=cfg.groups,
                      base_width=cfg.width_per_group, norm_layer=get_norm_layer(cfg.norm, cfg.frozen_bn_eps),
                      stride_in_1x1=cfg.stride_in_1x1)
    init_weights(head)
    head.in_channels, head.out_channels = in_channels, widths[3] * 4
    if cfg.trainable_layers == 0:
        head.requires_grad_(False)
    return head


# ---- RPN ---------------------------------------------------------------------------------------

def build_rpn(cfg, in_channels):
    """The RPN of ``cfg`` on features with ``in_channels`` channels: anchors of
    ``cfg.anchor_sizes`` (one tuple per level) x ``cfg.aspect_ratios`` (every level), a
    3x3 conv head, torchvision's thresholds and top-n values."""
    sizes = tuple(tuple(s) for s in cfg.anchor_sizes)
    anchor_generator = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(set(num_anchors)) != 1:
        raise ConfigError(f"config keys 'anchor_sizes' / 'aspect_ratios': the RPN head is shared by "
                          f"all levels, so every level needs the same number of anchors, got {num_anchors}")
    head = RPNHead(in_channels, num_anchors[0])
    return RegionProposalNetwork(
        anchor_generator, head,
        fg_iou_thresh=cfg.rpn_fg_iou_thresh, bg_iou_thresh=cfg.rpn_bg_iou_thresh,
        batch_size_per_image=cfg.rpn_batch_size_per_image, positive_fraction=cfg.rpn_positive_fraction,
        pre_nms_top_n=dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
        post_nms_top_n=dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test),
        nms_thresh=cfg.rpn_nms_thresh, score_thresh=cfg.rpn_score_thresh)


# ---- RoI heads ---------------------------------------------------------------------------------

def build_roi_heads(cfg, backbone_out_channels, featmap_names=None):
    """The RoI heads of config ``cfg`` on a backbone with ``backbone_out_channels`` channels.

    featmap_names: the maps the poolers read; default ["0", "1", "2", "3"] (P2..P5, not "pool")
    for ``cfg.features == "fpn"`` and ["0"] for C4 / C5.

    - box head: ``"2fc"`` -> TwoMLPHead(C * 7 * 7, box_head_dim) in a :class:`RoIHeads`;
      ``"res5"`` (C4) -> Res5Head on :func:`build_res5_head` in a :class:`C4RoIHeads`, whose
      mask predictor reads res5 (2048 channels at 7x7, dim_reduced = mask_head_layers[-1], so
      14x14 masks, Figure 4 left).
    - mask head (``mask_on``): ``"fcn"`` -> MaskRCNNHeads(C, mask_head_layers) +
      MaskRCNNPredictor(layers[-1], layers[-1], classes) at 14 -> 28; ``"mlp"`` ->
      MaskMLPHead(C, 14, (box_head_dim,) * 2) + MaskMLPPredictor(box_head_dim, classes, 28)
      (Table 2e: box_head_dim = 1024 in the paper's presets). classes = num_classes, or 1 with
      ``mask_class_agnostic``.
    - keypoint head (``keypoint_on``): KeypointRCNNHeads(C, keypoint_head_layers) +
      KeypointRCNNPredictor(layers[-1], num_keypoints).
    - poolers: ``cfg.pooler`` and ``cfg.pooler_mode`` (Table 2c), ``pooler_sampling_ratio``,
      ``pooler_aligned``.
    """
    if featmap_names is None:
        featmap_names = ["0", "1", "2", "3"] if cfg.features == "fpn" else ["0"]
    C = backbone_out_channels

    def pooler(resolution):
        return MultiScaleRoIPooler(featmap_names, resolution, cfg.pooler_sampling_ratio, method=cfg.pooler,
                                   aligned=cfg.pooler_aligned, mode=cfg.pooler_mode)

    sampling = dict(fg_iou_thresh=cfg.box_fg_iou_thresh, bg_iou_thresh=cfg.box_bg_iou_thresh,
                    batch_size_per_image=cfg.box_batch_size_per_image,
                    positive_fraction=cfg.box_positive_fraction, bbox_reg_weights=tuple(cfg.box_reg_weights),
                    score_thresh=cfg.box_score_thresh, nms_thresh=cfg.box_nms_thresh,
                    detections_per_img=cfg.box_detections_per_img,
                    mask_loss=cfg.mask_loss, mask_class_agnostic=cfg.mask_class_agnostic)
    mask_classes = 1 if cfg.mask_class_agnostic else cfg.num_classes
    keypoints = _keypoint_branch(cfg, C, pooler) if cfg.keypoint_on else {}
    res = cfg.box_pooler_resolution

    if cfg.box_head == "res5":
        box_head = Res5Head(build_res5_head(cfg))
        if box_head.in_channels != C:
            raise ConfigError(f"config key 'box_head': res5 expects {box_head.in_channels} input channels "
                              f"but the backbone gives {C}")
        if cfg.mask_on and cfg.mask_head != "fcn":
            raise ConfigError(f"config key 'mask_head': {cfg.mask_head!r} is not available with the res5 "
                              f"box head (C4 shares res5 with the mask FCN, Figure 4 left); use 'fcn'")
        mask_predictor = None
        if cfg.mask_on:
            mask_predictor = MaskRCNNPredictor(box_head.out_channels, cfg.mask_head_layers[-1], mask_classes)
        return C4RoIHeads(pooler(res), box_head, FastRCNNPredictor(box_head.out_channels, cfg.num_classes),
                          mask_predictor=mask_predictor, **sampling, **keypoints)

    box_head = TwoMLPHead(C * res * res, cfg.box_head_dim)
    masks = {}
    if cfg.mask_on and cfg.mask_head == "fcn":
        layers = tuple(cfg.mask_head_layers)
        masks = dict(mask_roi_pool=pooler(cfg.mask_pooler_resolution),
                     mask_head=MaskRCNNHeads(C, layers, 1),
                     mask_predictor=MaskRCNNPredictor(layers[-1], layers[-1], mask_classes))
    elif cfg.mask_on:
        hidden = cfg.box_head_dim
        masks = dict(mask_roi_pool=pooler(cfg.mask_pooler_resolution),
                     mask_head=MaskMLPHead(C, cfg.mask_pooler_resolution, (hidden, hidden)),
                     mask_predictor=MaskMLPPredictor(hidden, mask_classes, 2 * cfg.mask_pooler_resolution))
    return RoIHeads(pooler(res), box_head, FastRCNNPredictor(box_head.out_channels, cfg.num_classes),
                    **sampling, **masks, **keypoints)


def _keypoint_branch(cfg, C, pooler):
    layers = tuple(cfg.keypoint_head_layers)
    return dict(keypoint_roi_pool=pooler(cfg.keypoint_pooler_resolution),
                keypoint_head=KeypointRCNNHeads(C, layers),
                keypoint_predictor=KeypointRCNNPredictor(layers[-1], cfg.num_keypoints))


# ---- the check at the door ---------------------------------------------------------------------

def _check_config(cfg):
    if isinstance(cfg, Config):
        return
    if isinstance(cfg, str):
        raise TypeError(f"build_model takes a Config, got the string {cfg!r}; for a preset use "
                        f"build_model(get_config({cfg!r}))")
    if isinstance(cfg, dict):
        raise TypeError("build_model takes a Config, got a dict; use build_model(Config(**d)) or "
                        "get_config(preset, **overrides)")
    raise TypeError(f"build_model takes a minimrcnn.config.Config, got {type(cfg).__name__}")
