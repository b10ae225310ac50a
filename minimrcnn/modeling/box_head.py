r"""The box branch: RoI features -> class scores and per-class box deltas (Fast R-CNN).

Two heads, the two panels of the paper's Figure 4:

* FPN (right): :class:`TwoMLPHead`, two fully connected layers of 1024 on the flattened 7x7
  RoI features, ``(K, C, 7, 7) -> (K, 1024)``.
* C4 (left): :class:`Res5Head`, ResNet's fifth stage run on each 7x7 RoI (stride 1, as the paper
  alters it) and averaged over the 7x7, ``(K, 1024, 7, 7) -> (K, 2048)``.

Then :class:`FastRCNNPredictor` maps the representation to $K_{cls}$ class logits and
$4 K_{cls}$ box deltas (one box per class, background included), and :func:`fastrcnn_loss`
is Fast R-CNN's multi-task loss, exactly as torchvision computes it:

$$L_{cls} = \frac{1}{N} \sum_i -\log p_{i, u_i}, \qquad
  L_{box} = \frac{1}{N} \sum_{i: u_i \ge 1} \sum_{j \in \{x,y,w,h\}}
            \mathrm{smooth}_{L1, \beta = 1/9}(t^{u_i}_{i,j} - v_{i,j})$$

over the N sampled RoIs of the mini-batch (all images), with $u_i$ the RoI's class (0 =
background), $t^{u}$ the deltas predicted for class $u$ and $v$ the regression targets. Note
the box term is divided by N, the number of *sampled* RoIs, not by the number of positives.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from ..autograd.tensor import as_array
from ..backend import get_array_module

__all__ = ["TwoMLPHead", "Res5Head", "FastRCNNPredictor", "fastrcnn_loss"]


class TwoMLPHead(nn.Module):
    """The FPN box head: flatten, fc6 + ReLU, fc7 + ReLU.

    in_channels: C * PH * PW of the pooled features (256 * 7 * 7 = 12544);
    representation_size: width of fc6 and fc7 (1024).
    ``forward(x)``: (K, C, PH, PW) -> (K, representation_size). Parameters ``fc6.*``, ``fc7.*``
    (torchvision's names), initialised as torch's Linear.
    """

    def __init__(self, in_channels, representation_size):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.out_channels = representation_size

    def forward(self, x):
        x = F.flatten(x, 1)                  # (K, C*PH*PW)
        x = F.relu(self.fc6(x))
        x = F.relu(self.fc7(x))
        return x


class Res5Head(nn.Module):
    """The C4 box head of Figure 4 (left): res5 on each RoI, then global average pooling.

    res5: the ResNet's fifth stage as built by
    :func:`minimrcnn.models.build_res5_head` (first block at stride 1, so a 7x7 RoI
    stays 7x7; ``in_channels`` / ``out_channels`` attributes, e.g. 1024 -> 2048 for R-50).
    Its parameters are ``res5.0.conv1.weight``, ... (torchvision's ``layer4.*`` names after the
    ``res5.`` prefix, so ImageNet layer4 weights load by renaming ``layer4.`` -> ``res5.``).

    ``forward(x)``: (K, C4, 7, 7) -> (K, C5), i.e. ``pool(res5_features(x))``. The mask branch
    of the C4 model reuses :meth:`res5_features` (see :class:`~minimrcnn.modeling.roi_heads.C4RoIHeads`).
    """

    def __init__(self, res5):
        super().__init__()
        self.res5 = res5
        self.in_channels = getattr(res5, "in_channels", None)
        self.out_channels = res5.out_channels

    def res5_features(self, x):
        """(K, C4, 7, 7) -> (K, C5, 7, 7): the res5 stage on every RoI."""
        return self.res5(x)

    @staticmethod
    def pool(x):
        """Global average pooling: (K, C, H, W) -> (K, C), $y_{kc} = \\frac{1}{HW} \\sum_{h,w} x_{kchw}$."""
        return F.mean(x, dim=(2, 3))

    def forward(self, x):
        return self.pool(self.res5_features(x))


class FastRCNNPredictor(nn.Module):
    """Class scores and box deltas from the box head's representation.

    in_channels: width of the representation (1024 for TwoMLPHead, 2048 for Res5Head);
    num_classes: number of classes *including* the background (91 for torchvision's COCO).
    ``forward(x)``: (K, in_channels) (or (K, in_channels, 1, 1)) ->
    (class_logits (K, num_classes), box_regression (K, 4 * num_classes)), where columns
    ``4c .. 4c+3`` of box_regression are the deltas (dx, dy, dw, dh) for class c.
    Parameters ``cls_score.*``, ``bbox_pred.*`` (torchvision's names), torch's Linear init.
    """

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
        self.num_classes = num_classes

    def forward(self, x):
        if x.ndim == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"FastRCNNPredictor: a 4-D input must be (K, C, 1, 1), got shape {tuple(x.shape)}")
        x = F.flatten(x, 1)
        return self.cls_score(x), self.bbox_pred(x)


def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """Fast R-CNN's classification and box-regression losses (torchvision's ``fastrcnn_loss``).

    class_logits: Tensor (N, K); box_regression: Tensor (N, 4K); labels: list of per-image
    int64 arrays (N_i,) (0 = background), sum N_i = N; regression_targets: list of (N_i, 4)
    arrays (only the rows of positive RoIs are read).

    Returns (classification_loss, box_loss), scalar Tensors:
    classification_loss = mean cross entropy over the N RoIs;
    box_loss = sum over positive RoIs i of smooth_l1(box_regression[i, class u_i], target_i,
    beta=1/9) / N.
    """
    labels = [as_array(l) for l in labels]
    xp = get_array_module(*labels)
    labels = xp.concatenate(labels, axis=0).astype(np.int64)                           # (N,)
    regression_targets = xp.concatenate([as_array(t) for t in regression_targets], axis=0)  # (N, 4)
    N, num_classes = class_logits.shape
    if labels.shape[0] != N or regression_targets.shape[0] != N:
        raise ValueError(f"fastrcnn_loss: class_logits has {N} rows but labels has {labels.shape[0]} "
                         f"and regression_targets {regression_targets.shape[0]}")

    classification_loss = F.cross_entropy(class_logits, labels)

    # the deltas predicted for each positive RoI's own class
    sampled_pos_inds_subset = xp.nonzero(labels > 0)[0]                                # (P,)
    labels_pos = labels[sampled_pos_inds_subset]
    box_regression = F.reshape(box_regression, (N, box_regression.shape[-1] // 4, 4))  # (N, K, 4)
    box_loss = F.smooth_l1_loss(
        box_regression[sampled_pos_inds_subset, labels_pos],                           # (P, 4)
        Tensor(regression_targets[sampled_pos_inds_subset].astype(box_regression.dtype, copy=False)),
        beta=1 / 9,
        reduction="sum",
    )
    box_loss = box_loss / labels.size
    return classification_loss, box_loss
