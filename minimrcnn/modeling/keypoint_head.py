r"""The keypoint branch (Section 5): one 56x56 "one-hot mask" per keypoint type.

Mask R-CNN models a keypoint's location as a mask with a single foreground pixel and predicts
K of them per RoI (K = 17 COCO person keypoints):

* :class:`KeypointRCNNHeads`: eight 3x3 convs of 512 with ReLU on the 14x14 RoI features;
* :class:`KeypointRCNNPredictor`: a 4x4 stride-2 deconv to 28x28 (``kps_score_lowres``), then
  2x bilinear upsampling to 56x56: ``(R, 512, 14, 14) -> (R, K, 56, 56)`` logits.

Loss (:func:`keypointrcnn_loss`): for every *visible* ground-truth keypoint of a positive RoI,
the target is the index of the heatmap cell that contains it (:func:`keypoints_to_heatmap`), and
the loss is the cross entropy of an $m^2$-way softmax over the 56*56 logits of that keypoint's
map, averaged over all visible keypoints of the batch ("which encourages a single point to be
detected"):

$$L_{kp} = \frac{1}{|V|} \sum_{(r, k) \in V} -\log \frac{e^{z_{r,k,c_{r,k}}}}{\sum_{c} e^{z_{r,k,c}}}.$$

Inference (:func:`heatmaps_to_keypoints`, torchvision's decoding): each heatmap is resized with
*bicubic* interpolation to the box's size in pixels (ceil of width and height), the arg-max cell
$(x_{int}, y_{int})$ is taken and mapped back to image coordinates with Heckbert's
"continuous = discrete + 0.5"; its (unnormalised logit) value is the keypoint's score. The
bicubic resize is :func:`minimrcnn.functional.resize.resize_bicubic`, torch's
``interpolate(mode="bicubic", align_corners=False)`` (a = -0.75) on raw arrays, since the
decode needs no gradient.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..functional.resize import resize_bicubic

__all__ = ["KeypointRCNNHeads", "KeypointRCNNPredictor", "keypoints_to_heatmap", "keypointrcnn_loss",
           "heatmaps_to_keypoints", "keypointrcnn_inference"]


class KeypointRCNNHeads(nn.Sequential):
    """The keypoint conv stack: for each width in ``layers``, a 3x3 conv (padding 1) and a ReLU.

    in_channels: channels of the RoI features (256 with FPN); layers: widths, (512,)*8.
    ``forward(x)``: (R, in_channels, S, S) -> (R, layers[-1], S, S).
    Parameter names as torchvision's flat Sequential(Conv, ReLU, Conv, ReLU, ...): ``0.weight``,
    ``2.weight``, ``4.weight``, ... Init: kaiming_normal(fan_out, relu), bias 0.
    """

    def __init__(self, in_channels, layers):
        d = []
        next_feature = in_channels
        for out_channels in layers:
            d.append(nn.Conv2d(next_feature, out_channels, 3, stride=1, padding=1))
            d.append(nn.ReLU())
            next_feature = out_channels
        super().__init__(*d)
        self.out_channels = next_feature
        for m in self.children():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)


class KeypointRCNNPredictor(nn.Module):
    """``kps_score_lowres`` (ConvTranspose2d, kernel 4, stride 2, padding 1: S -> 2S), then
    bilinear 2x upsampling (align_corners=False): (R, in_channels, S, S) -> (R, K, 4S, 4S).

    in_channels: 512; num_keypoints: K (17). Init: kaiming_normal(fan_out, relu), bias 0.
    """

    def __init__(self, in_channels, num_keypoints):
        super().__init__()
        deconv_kernel = 4
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, deconv_kernel, stride=2,
                                                   padding=deconv_kernel // 2 - 1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x):
        x = self.kps_score_lowres(x)                                     # (R, K, 2S, 2S)
        return F.interpolate(x, scale_factor=float(self.up_scale), mode="bilinear",
                             align_corners=False, recompute_scale_factor=False)


# ---- targets and loss -----------------------------------------------------------------------------

def keypoints_to_heatmap(keypoints, rois, heatmap_size):
    """The heatmap cell of every keypoint, and whether it can be learned from.

    keypoints: (R, K, 3) [x, y, visibility] in image pixels, the matched gt of each RoI;
    rois: (R, 4); heatmap_size: m (56). With $s_x = m / (x_2 - x_1)$ (in the rois' dtype),
    the cell is $c_x = \\lfloor (x - x_1) s_x \\rfloor$ ($m - 1$ for a keypoint exactly on the
    right edge), likewise $c_y$. Returns (heatmaps, valid), both (R, K) int64:
    heatmaps = $c_y m + c_x$ where valid else 0; valid = 1 if the cell is inside the map and the
    keypoint is visible (v > 0).
    """
    keypoints, rois = as_array(keypoints), as_array(rois)
    xp = get_array_module(rois)
    dt = rois.dtype.type
    offset_x = rois[:, 0][:, None]
    offset_y = rois[:, 1][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale_x = (dt(heatmap_size) / (rois[:, 2] - rois[:, 0]))[:, None]
        scale_y = (dt(heatmap_size) / (rois[:, 3] - rois[:, 1]))[:, None]

    ### BEGIN SOLUTION keypoint_targets
    x = keypoints[..., 0].astype(rois.dtype, copy=False)
    y = keypoints[..., 1].astype(rois.dtype, copy=False)
    x_boundary_inds = x == rois[:, 2][:, None]
    y_boundary_inds = y == rois[:, 3][:, None]

    with np.errstate(invalid="ignore", over="ignore"):
        x = xp.floor((x - offset_x) * scale_x)
        y = xp.floor((y - offset_y) * scale_y)
    x[x_boundary_inds] = heatmap_size - 1
    y[y_boundary_inds] = heatmap_size - 1

    valid_loc = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)   # NaN -> False
    vis = keypoints[..., 2] > 0
    valid = (valid_loc & vis).astype(np.int64)
    x = xp.where(valid_loc, x, 0).astype(np.int64)
    y = xp.where(valid_loc, y, 0).astype(np.int64)
    lin_ind = y * heatmap_size + x
    heatmaps = lin_ind * valid
    ### END SOLUTION
    return heatmaps, valid


def keypointrcnn_loss(keypoint_logits, proposals, gt_keypoints, keypoint_matched_idxs):
    """Cross entropy over the m*m cells of each visible keypoint's heatmap (torchvision's).

    keypoint_logits: Tensor (R, K, m, m); proposals: list of per-image (R_i, 4) positive RoIs;
    gt_keypoints: list of per-image (G_i, K, 3); keypoint_matched_idxs: list of (R_i,) gt index
    of each RoI. Returns a scalar Tensor; ``keypoint_logits.sum() * 0`` without any visible
    keypoint.
    """
    N, K, H, W = keypoint_logits.shape
    if H != W:
        raise ValueError(f"keypointrcnn_loss: keypoint_logits must be square heatmaps, got H = {H}, W = {W}")
    discretization_size = H
    heatmaps, valid = [], []
    for proposals_per_image, gt_kp_in_image, midx in zip(proposals, gt_keypoints, keypoint_matched_idxs):
        kp = as_array(gt_kp_in_image)[as_array(midx)]                                 # (R_i, K, 3)
        heatmaps_per_image, valid_per_image = keypoints_to_heatmap(kp, as_array(proposals_per_image),
                                                                   discretization_size)
        heatmaps.append(heatmaps_per_image.reshape(-1))
        valid.append(valid_per_image.reshape(-1))
    xp = get_array_module(keypoint_logits.data)
    keypoint_targets = xp.concatenate(heatmaps, axis=0) if heatmaps else xp.zeros((0,), np.int64)
    valid = xp.nonzero(xp.concatenate(valid, axis=0))[0] if valid else xp.zeros((0,), np.int64)
    if keypoint_targets.size == 0 or valid.size == 0:
        return keypoint_logits.sum() * 0
    keypoint_logits = F.reshape(keypoint_logits, (N * K, H * W))
    return F.cross_entropy(keypoint_logits[valid], keypoint_targets[valid])


# ---- decoding -------------------------------------------------------------------------------------

def heatmaps_to_keypoints(maps, rois):
    """Keypoint locations and scores from heatmaps (torchvision's ``heatmaps_to_keypoints``).

    maps: (R, K, m, m) logits; rois: (R, 4) boxes. For RoI i with width $w = \\max(x_2 - x_1, 1)$
    (height likewise), the maps are resized (bicubic) to $\\lceil h \\rceil \\times \\lceil w \\rceil$,
    the first arg-max $(x_{int}, y_{int})$ of each map is taken, and the keypoint is
    $x = x_1 + (x_{int} + 1/2)\\, w / \\lceil w \\rceil$ (y likewise).
    Returns (xy_preds (R, K, 3) float32 [x, y, 1], end_scores (R, K) float32: the resized map's
    value at the arg-max).
    """
    maps, rois = as_array(maps), as_array(rois)
    xp = get_array_module(maps)
    offset_x = rois[:, 0]
    offset_y = rois[:, 1]
    widths = xp.maximum(rois[:, 2] - rois[:, 0], 1)
    heights = xp.maximum(rois[:, 3] - rois[:, 1], 1)
    widths_ceil = xp.ceil(widths)
    heights_ceil = xp.ceil(heights)

    num_keypoints = maps.shape[1]
    xy_preds = xp.zeros((len(rois), 3, num_keypoints), dtype=np.float32)
    end_scores = xp.zeros((len(rois), num_keypoints), dtype=np.float32)
    for i in range(len(rois)):
        roi_map_width = int(widths_ceil[i])
        roi_map_height = int(heights_ceil[i])
        width_correction = widths[i] / widths.dtype.type(roi_map_width)
        height_correction = heights[i] / heights.dtype.type(roi_map_height)
        roi_map = resize_bicubic(maps[i], (roi_map_height, roi_map_width))     # (K, h, w)
        w = roi_map.shape[2]
        pos = roi_map.reshape(num_keypoints, -1).argmax(axis=1)               # first max
        x_int = pos % w
        y_int = (pos - x_int) // w
        x = (x_int.astype(np.float32) + np.float32(0.5)) * width_correction
        y = (y_int.astype(np.float32) + np.float32(0.5)) * height_correction
        xy_preds[i, 0, :] = x + offset_x[i]
        xy_preds[i, 1, :] = y + offset_y[i]
        xy_preds[i, 2, :] = 1
        end_scores[i, :] = roi_map[xp.arange(num_keypoints), y_int, x_int]
    return xy_preds.transpose(0, 2, 1), end_scores


def keypointrcnn_inference(x, boxes):
    """Per image: (keypoints (N_i, K, 3), scores (N_i, K)) from heatmaps x (sum N_i, K, m, m)
    and the list of per-image detection boxes (N_i, 4)."""
    x = as_array(x)
    boxes = [as_array(b) for b in boxes]
    cuts = np.cumsum([b.shape[0] for b in boxes])[:-1].tolist()
    xp = get_array_module(x)
    kp_probs, kp_scores = [], []
    for xx, bb in zip(xp.split(x, cuts, axis=0), boxes):
        kp_prob, scores = heatmaps_to_keypoints(xx, bb)
        kp_probs.append(kp_prob)
        kp_scores.append(scores)
    return kp_probs, kp_scores
