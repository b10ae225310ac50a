"""The exercises: one entry per exercise id, in the order of the tutorials.

Each exercise is one or more solution regions in the library's own source, between the lines
``### BEGIN SOLUTION <id>`` and ``### END SOLUTION`` (nbgrader's markers, with the id added),
graded by the tests that carry the pytest marker ``ex_<id>`` (one marker per exercise, as
minitorch marks its tasks). ``kernels`` names the compiled kernels (``ext/<name>.pyx`` and
``ext/<name>.cu``) that would do the exercise's work: a student copy leaves them out, so that
the op runs its NumPy code -- the student's -- and that code is what the tests grade.
"""
from dataclasses import dataclass, field

__all__ = ["Exercise", "EXERCISES", "get_exercise", "exercise_ids"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: what the student writes, where it is graded, what it is worth.

    id: the name in the markers (``[a-z0-9_]+``); title: one line; stage: the tutorial
    notebook it belongs to (``NN_name``, existing or planned); points: its weight in the grade;
    hint: the text of the student's ``NotImplementedError`` (what to compute, where to read,
    never the code); test_files: the test modules holding its ``ex_<id>`` tests; kernels: the
    compiled kernels left out of a student copy; requires: exercises whose code its tests run
    too (hand them out together, or grade them knowing that).

    An ablation exercise (``ablation`` = a table id of minimrcnn.engine.ablation) has no region
    of its own: the student implements the exercises it ``requires`` (a student copy takes
    them out with it) and reruns that table; ``notes`` says what is graded and what the
    full-size rerun is.
    """
    id: str
    title: str
    stage: str
    points: int
    hint: str
    test_files: tuple
    kernels: tuple = ()
    requires: tuple = ()
    ablation: str = ""
    notes: str = field(default="", compare=False)

    @property
    def is_ablation(self):
        return bool(self.ablation)

    @property
    def marker(self):
        """The pytest marker of the exercise's tests."""
        return f"ex_{self.id}"


_NO_KERNEL = ("the compiled kernel {k} is not in your copy, so the op runs the NumPy code you "
              "write here (also the code CuPy arrays run)")

EXERCISES = (
    Exercise(
        "elementwise_backward", "Backward of mul, div, exp, log and sigmoid", "01_autograd_and_gradcheck", 2,
        "return the gradient of each input: the upstream gradient gy times the local derivative "
        "(the docstring of the class gives it); binary ops sum it back to each operand's shape "
        "with sum_to, as Add does. Check yourself with mr.gradcheck",
        ("tests/test_exercises.py",)),
    Exercise(
        "conv2d_forward", "conv2d forward: im2col and one GEMM", "02_convolution", 3,
        "im2col: for each kernel offset (i, j) copy the strided slice of the zero-padded input "
        "that this offset reads into cols[:, :, i, j]; forward: one batched matmul of the "
        "weights (G, Og, K) with the columns (N, G, K, L). The module docstring has the formula; "
        "tests/test_conv.py's naive_conv2d is the six-loop definition. " + _NO_KERNEL.format(k="ext/conv.pyx"),
        ("tests/test_exercises.py", "tests/test_conv.py"), kernels=("conv",)),
    Exercise(
        "conv2d_backward", "conv2d backward: col2im, grad of input and of weight", "02_convolution", 4,
        "col2im is the adjoint of im2col: add each column entry back onto the padded pixel it was "
        "copied from (the same slices, +=); grad_input = col2im(W^T @ dy); grad_weight = sum over "
        "images of dy @ cols(x)^T. Shapes are in the docstrings. " + _NO_KERNEL.format(k="ext/conv.pyx"),
        ("tests/test_conv.py",), kernels=("conv",), requires=("conv2d_forward",)),
    Exercise(
        "max_pool2d_backward", "max_pool2d backward: route the gradient to each window's max", "03_resnet_fpn", 2,
        "forward stored self.tap, the window offset i*kw + j of each output's maximum; add gy "
        "to the padded input positions of that offset (one strided slice per offset, where "
        "tap matches), then crop the padding. " + _NO_KERNEL.format(k="ext/pooling.pyx"),
        ("tests/test_conv.py",), kernels=("pooling",)),
    Exercise(
        "bce_with_logits", "Binary cross-entropy with logits, stable, and its gradient", "06_heads_and_losses", 2,
        "forward: the softplus sp(x) = max(x, 0) + log(1 + exp(-|x|)) never overflows; the loss "
        "is sp(x) - x t (plus the pos_weight term of the docstring); backward: dl/dx = "
        "sigma(x) - t, dl/dt = -x (and the pos_weight terms). The class docstring has every formula",
        ("tests/test_exercises.py", "tests/test_resize_norm_loss.py")),
    Exercise(
        "box_coder", "Box encoding and decoding (R-CNN deltas)", "04_anchors_and_rpn", 3,
        "encode: widths, heights and centres of proposals and targets, then the weighted deltas "
        "t_x, t_y, t_w, t_h of the class docstring; decode inverts them: clamp dw, dh at "
        "bbox_xform_clip before exp, and the corners are centre -/+ half the size. Keep every "
        "array 2-D (N, 1) or (N, K) so that decode handles K boxes per row",
        ("tests/test_boxes_anchors_nms.py",)),
    Exercise(
        "anchors", "Anchors: the cell anchors and their grid", "04_anchors_and_rpn", 2,
        "generate_anchors: h = s sqrt(r), w = s / sqrt(r) in float32, rows ratio-major, then "
        "round([-w, -h, w, h] / 2); grid_anchors: shift the cell anchors by (x*stride_w, "
        "y*stride_h) for every cell in row-major order, all A anchors of a cell together "
        "(ordering (H, W, A), see the module docstring)",
        ("tests/test_boxes_anchors_nms.py",)),
    Exercise(
        "nms", "Greedy non-maximum suppression", "04_anchors_and_rpn", 3,
        "take the candidates by decreasing score (_descending_order keeps ties in input order); "
        "keep the first, drop every remaining box whose IoU with it is > iou_threshold "
        "(vectorized over the rest), repeat. A NaN IoU suppresses nothing. "
        + _NO_KERNEL.format(k="ext/nms.pyx"),
        ("tests/test_boxes_anchors_nms.py",), kernels=("nms",)),
    Exercise(
        "roi_align_forward", "RoIAlign forward: bilinear sampling without quantization", "05_roialign", 4,
        "along one axis, sample t of bin i sits at start + i*bin + (t + 1/2)*bin/grid (no "
        "rounding: 'x/16 instead of [x/16]'); a sample outside [-1, size] weighs nothing, one in "
        "[-1, 0] reads pixel 0, one at or past the last pixel reads the last; otherwise it puts "
        "1 - frac on floor(pos) and frac on the next pixel. Then the average of a bin is "
        "A_y @ input @ A_x.T / (gh*gw) (module docstring). " + _NO_KERNEL.format(k="ext/roi_align.pyx"),
        ("tests/test_roi_ops.py",), kernels=("roi_align",)),
    Exercise(
        "roi_align_backward", "RoIAlign backward: the transpose of the bilinear sampling", "05_roialign", 2,
        "the forward pass is linear in the input, out = A_y @ input @ A_x.T / n, so its gradient "
        "is the transpose: A_y.T @ grad_out @ A_x / n added onto the rows and columns the RoI "
        "touched (several RoIs may share pixels: add, do not assign). "
        + _NO_KERNEL.format(k="ext/roi_align.pyx"),
        ("tests/test_exercises.py", "tests/test_roi_ops.py"), kernels=("roi_align",),
        requires=("roi_align_forward",)),
    Exercise(
        "rpn_targets", "RPN target assignment: positives, negatives, ignored anchors", "04_anchors_and_rpn", 3,
        "IoU of every gt box with every anchor (self.box_similarity), the matcher's index per "
        "anchor (self.proposal_matcher, whose -1 / -2 mean below low / between thresholds), the "
        "matched gt box of each anchor, and labels 1 (matched), 0 (below the low threshold), "
        "-1 (between): Faster R-CNN Sec. 3.1.2",
        ("tests/test_rpn.py",), requires=("anchors",)),
    Exercise(
        "mask_loss", "Mask targets (RoIAlign of the gt mask) and the per-class mask loss", "06_heads_and_losses", 3,
        "targets: RoIAlign of each RoI's matched gt mask at M x M (rois = [matched index, box], "
        "scale 1); loss: for the sigmoid loss take only the channel of the RoI's gt class (or "
        "channel 0 when class-agnostic) and average the binary cross-entropy; for the softmax "
        "loss every pixel's class is the gt class inside the mask (target >= 0.5), 0 outside "
        "(paper Sec. 3, 'Mask Representation', Table 2b)",
        ("tests/test_roi_heads.py",), requires=("bce_with_logits", "roi_align_forward")),
    Exercise(
        "keypoint_targets", "Keypoint targets: the heatmap cell of each keypoint", "08_keypoints", 2,
        "scale each keypoint into the RoI's m x m heatmap: c = floor((x - x1) * m / (x2 - x1)), "
        "m - 1 for a keypoint exactly on the far edge; valid where the cell is inside the map "
        "and the keypoint is visible; the target is c_y * m + c_x where valid, else 0 (paper Sec. 5)",
        ("tests/test_roi_heads.py",)),
    Exercise(
        "ablation_2c", "Table 2c with your RoIAlign: RoIAlign vs RoIPool / RoIWarp at stride 16", "05_roialign", 4,
        "implement roi_align_forward and roi_align_backward, then rerun the paper's Table 2c with "
        "them: python -m minimrcnn ablate 2c",
        ("tests/test_exercises.py",), kernels=("roi_align",),
        requires=("roi_align_forward", "roi_align_backward"), ablation="2c", notes=(
            "Graded: (1) the direction of Table 2c at the level of what the RoI layer extracts: "
            "200 synthetic masks (discs and boxes at sub-pixel positions in 128 px images) are "
            "reduced to a stride-16 map, every object's box is pooled back to 14 x 14 with your "
            "RoIAlign, with RoIPool and with RoIWarp, and compared with the exact mask of the box; "
            "RoIAlign's error must be the lowest, by more than 3 standard errors of the paired "
            "differences (the mechanism behind the paper's +3.4 mask AP: no quantization of the "
            "box); (2) `run_table('2c')` runs end to end with your op (2 rows x 2 seeds, 6 "
            "iterations on 16 images: a smoke run, its AP is noise). Not graded, the real "
            "rerun: `python -m minimrcnn ablate 2c` trains 5 rows x 3 seeds x 500 iterations "
            "(about 15 x 3 minutes on a 2-core CPU) and writes tutorials/results/2c.md with a "
            "verdict per row; compare yours with the committed reference table.")),
    Exercise(
        "ablation_6", "Table 6 with your RoIAlign and keypoint targets: keypoints, RoIAlign vs RoIPool", "08_keypoints", 4,
        "implement roi_align_forward, roi_align_backward and keypoint_targets, then rerun the "
        "paper's Table 6 with them: python -m minimrcnn ablate 6",
        ("tests/test_exercises.py",), kernels=("roi_align",),
        requires=("roi_align_forward", "roi_align_backward", "keypoint_targets"), ablation="6", notes=(
            "Graded: the direction of Table 6 (RoIAlign beats RoIPool for keypoints, +4.4 AP in "
            "the paper) at the level of localization: 200 keypoints, each a Gaussian blob "
            "(sigma 6 px) on a stride-16 map, pooled to 28 x 28 from a person-sized box with your "
            "RoIAlign and with RoIPool; the arg-max cell is compared with the target cell of your "
            "keypoints_to_heatmap, in image pixels; RoIAlign's mean error must be lower by more "
            "than 3 standard errors of the paired differences. Not graded, the real rerun: "
            "`python -m minimrcnn ablate 6` trains 2 rows x 3 seeds x 500 iterations on the "
            "persons data and writes tutorials/results/6.md.")),
)


def exercise_ids():
    return [e.id for e in EXERCISES]


def get_exercise(exercise_id):
    """The Exercise of ``exercise_id``; a clear error listing the known ids otherwise."""
    for e in EXERCISES:
        if e.id == exercise_id:
            return e
    raise ValueError(f"unknown exercise id {exercise_id!r}; known ids: {', '.join(exercise_ids())}")
