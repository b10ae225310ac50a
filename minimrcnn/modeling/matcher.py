"""Matching predictions to ground truth, and sampling a balanced mini-batch of them.

Both stages of Mask R-CNN train on labelled *candidates*: the RPN on anchors, the RoI heads on
proposals. Two steps label them (Faster R-CNN, Sec. 3.1.2; Mask R-CNN, Sec. 3.1):

1. :class:`Matcher` gives every candidate the index of its best ground-truth box, or a negative
   code when the best IoU is too low (background) or ambiguous (ignored).
2. :class:`BalancedPositiveNegativeSampler` draws a fixed number of them per image with at most
   a fixed fraction of positives (RPN: 256 anchors, half positive; RoI heads: 512 RoIs, 1:3).

Both follow ``torchvision.models.detection._utils`` exactly and work on NumPy or CuPy arrays.
:func:`ignore_crowd_negatives` keeps crowd regions out of both stages' negatives (Detectron).
"""
import numbers

import numpy as np

from ..autograd.tensor import as_array
from ..backend import get_array_module
from ..checks import fraction, is_int
from ..ops import box_ioa

__all__ = ["Matcher", "BalancedPositiveNegativeSampler", "ignore_crowd_negatives", "CROWD_FILTER_THRESH"]

# Detectron's TRAIN.CROWD_FILTER_THRESH: a candidate more than 70% inside a crowd region is ignored
CROWD_FILTER_THRESH = 0.7


class Matcher:
    r"""Assign to each prediction (anchor, proposal) its best-matching ground-truth box.

    Given the quality matrix $Q$ of shape (M ground truths, N predictions) (the IoU), prediction
    $n$ gets $m^* = \arg\max_m Q_{mn}$ and

    * ``matched_idxs[n] = m*``                          if $Q_{m^*n} \ge$ ``high_threshold``,
    * ``BETWEEN_THRESHOLDS`` (-2)                       if ``low_threshold`` $\le Q_{m^*n} <$ ``high_threshold``,
    * ``BELOW_LOW_THRESHOLD`` (-1)                      if $Q_{m^*n} <$ ``low_threshold``.

    With ``allow_low_quality_matches`` (the RPN), every ground truth also keeps the predictions
    that overlap it most, even below ``high_threshold``: for each gt $m$, every prediction $n$
    with $Q_{mn} = \max_{n'} Q_{mn'}$ (all ties) gets back its own $m^* = \arg\max_m Q_{mn}$
    (which may be another gt when it overlaps that one as much or more; the Faster R-CNN rule
    "the anchor with the highest IoU with a gt box is positive"). Ties in the argmax over gts
    go to the lowest gt index.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        for name, v in (("high_threshold", high_threshold), ("low_threshold", low_threshold)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or np.isnan(v):
                raise ValueError(f"Matcher: {name} must be a real number, got {v!r}")
        if low_threshold > high_threshold:
            raise ValueError(f"Matcher: low_threshold ({low_threshold}) should be <= high_threshold "
                             f"({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self):
        return (f"Matcher(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
                f"allow_low_quality_matches={self.allow_low_quality_matches})")

    def __call__(self, match_quality_matrix):
        """match_quality_matrix: (M gt, N predictions) array. Returns matched_idxs (N,) int64:
        a gt index in [0, M-1], or -1 (below low threshold), or -2 (between thresholds)."""
        quality = as_array(match_quality_matrix)
        if quality.ndim != 2:
            raise ValueError(f"Matcher: match_quality_matrix must be 2-d (M gt, N predictions), got "
                             f"shape {tuple(quality.shape)}")
        if quality.size == 0:
            # torchvision's messages: empty targets or proposals are not supported in training
            if quality.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        xp = get_array_module(quality)

        # best gt for every prediction (first index on ties, as torch.max)
        matched_vals = quality.max(axis=0)                                # (N,)
        matches = xp.argmax(quality, axis=0).astype(np.int64)            # (N,)
        all_matches = matches.copy() if self.allow_low_quality_matches else None

        below_low_threshold = matched_vals < self.low_threshold
        between_thresholds = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below_low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[between_thresholds] = self.BETWEEN_THRESHOLDS

        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, all_matches, quality)
        return matches

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix):
        """In place: for every gt, the predictions of highest quality with it (ties included)
        get back their unthresholded match ``all_matches``."""
        xp = get_array_module(match_quality_matrix)
        highest_quality_foreach_gt = match_quality_matrix.max(axis=1)    # (M,)
        # (gt index, prediction index) pairs that reach their gt's highest quality
        _, pred_inds_to_update = xp.nonzero(match_quality_matrix == highest_quality_foreach_gt[:, None])
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]


class BalancedPositiveNegativeSampler:
    """Sample ``batch_size_per_image`` candidates per image, at most ``positive_fraction`` of them
    positive; negatives fill the rest (fewer if there are not enough).

    For labels $\\ell$ (>= 1 positive, 0 negative, -1 ignored) of an image:
    $n_{pos} = \\min(\\#\\{\\ell \\ge 1\\}, \\lfloor B f \\rfloor)$,
    $n_{neg} = \\min(\\#\\{\\ell = 0\\}, B - n_{pos})$, each drawn uniformly without replacement.

    Randomness: torchvision draws with ``torch.randperm``; we draw with a NumPy ``Generator``
    (``generator.choice(n, k, replace=False)``), so the *same* distribution but not the same
    draws as torchvision. ``generator`` is a ``numpy.random.Generator``, an int seed, or None for
    the global generator of :mod:`minimrcnn.nn.init` (reseeded by ``nn.init.manual_seed``, as
    torch's global generator by ``torch.manual_seed``). The draws are made on the CPU even for
    CuPy labels, so a seed gives the same sample on either device.
    """

    def __init__(self, batch_size_per_image, positive_fraction, generator=None):
        if not is_int(batch_size_per_image) or batch_size_per_image < 0:
            raise ValueError(f"BalancedPositiveNegativeSampler: batch_size_per_image must be a "
                             f"non-negative int, got {batch_size_per_image!r}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = fraction(positive_fraction, "positive_fraction", "BalancedPositiveNegativeSampler")
        if is_int(generator):
            generator = np.random.default_rng(int(generator))
        elif generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"BalancedPositiveNegativeSampler: generator must be a numpy.random.Generator, "
                            f"an int seed or None, got {type(generator).__name__}")
        self.generator = generator

    def __repr__(self):
        return (f"BalancedPositiveNegativeSampler(batch_size_per_image={self.batch_size_per_image}, "
                f"positive_fraction={self.positive_fraction})")

    def _rng(self):
        if self.generator is not None:
            return self.generator
        from ..nn import init
        return init.get_generator()

    def __call__(self, matched_idxs):
        """matched_idxs: list of (N_i,) label arrays per image (-1 ignore, 0 negative, >= 1 positive).

        Returns (pos_idx, neg_idx): two lists of (N_i,) boolean masks, the sampled positives and
        the sampled negatives of each image (torchvision returns uint8 masks; same use)."""
        rng = self._rng()
        pos_idx, neg_idx = [], []
        for labels in matched_idxs:
            labels = as_array(labels)
            xp = get_array_module(labels)
            positive = xp.nonzero(labels >= 1)[0]                        # indices of candidates
            negative = xp.nonzero(labels == 0)[0]

            num_pos = int(self.batch_size_per_image * self.positive_fraction)
            num_pos = min(positive.size, num_pos)          # not enough positives: take them all
            num_neg = self.batch_size_per_image - num_pos
            num_neg = min(negative.size, num_neg)          # not enough negatives: take them all

            # uniform draws without replacement, on the CPU
            perm1 = rng.choice(positive.size, size=num_pos, replace=False)
            perm2 = rng.choice(negative.size, size=num_neg, replace=False)

            pos_mask = xp.zeros(labels.shape, dtype=bool)
            neg_mask = xp.zeros(labels.shape, dtype=bool)
            pos_mask[positive[xp.asarray(perm1)]] = True
            neg_mask[negative[xp.asarray(perm2)]] = True
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx


def ignore_crowd_negatives(labels, candidates, crowd_boxes, threshold=CROWD_FILTER_THRESH):
    """In place: candidates labelled background (0) that lie inside a crowd region become ignored (-1).

    A crowd region (COCO's ``iscrowd``: a crowd of people, a pile of bananas) is neither an object
    to find nor background: teaching "no object here" there would punish right answers. So a
    would-be negative whose intersection with a crowd box covers more than ``threshold`` of its
    own area (:func:`minimrcnn.ops.box_ioa`) is left out of the sample; positives stay positive.

    labels: (T,) labels of the candidates (-1, 0, >= 1; float in the RPN, int in the RoI heads);
    candidates: (T, 4) anchors or proposals; crowd_boxes: (C, 4) or None (C may be 0). Returns labels.
    """
    if crowd_boxes is None or crowd_boxes.shape[0] == 0 or candidates.shape[0] == 0:
        return labels
    inside = box_ioa(candidates, crowd_boxes).max(axis=1) > threshold            # (T,)
    labels[inside & (labels == 0)] = -1
    return labels
