"""The CUDA NMS (ext/nms.cu through CuPy) against the CPU kernel: the same kept indices.

Marked ``gpu``: skipped where CuPy or an NVIDIA GPU is missing (tests/conftest.py).
"""
import importlib

import numpy as np
import pytest

from minimrcnn import ops

pytestmark = pytest.mark.gpu
nms_module = importlib.import_module("minimrcnn.ops.nms")   # ops.nms is the function


def random_boxes(rng, n, scale=100.0, dtype=np.float32):
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(0, scale / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_nms_matches_cpu(dtype):
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(0)
    for trial, n in enumerate([1, 2, 63, 64, 65, 127, 128, 129, 500, 1000, 3000]):
        boxes = random_boxes(rng, n, dtype=dtype)
        scores = (rng.integers(0, 4, n) if trial % 2 else rng.random(n)).astype(dtype)  # ties
        if trial % 3 == 0:
            boxes[n // 2:] = boxes[: n - n // 2]                    # duplicates
        if trial % 4 == 0:
            boxes = np.round(boxes)                                 # exact IoUs such as 0.5
        for thr in (0.0, 0.5, 0.7, 1.0):
            expected = ops.nms(boxes, scores, thr)
            got = ops.nms(cupy.asarray(boxes), cupy.asarray(scores), thr)
            assert isinstance(got, cupy.ndarray) and got.dtype == np.int64
            np.testing.assert_array_equal(cupy.asnumpy(got), expected, err_msg=f"n={n} thr={thr}")


def test_gpu_host_greedy_pass_matches_device():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(1)
    n = 777
    boxes = cupy.asarray(random_boxes(rng, n))
    col_blocks = (n + 63) // 64
    mask = cupy.zeros((n, col_blocks), dtype=cupy.uint64)
    from minimrcnn import _ext
    module = _ext.cuda_module("nms")
    module.get_function("nms_mask_float")((col_blocks, col_blocks), (64,),
                                          (boxes, np.int32(n), np.float64(0.5), mask))
    keep_host = nms_module._gather_keep_host(cupy.asnumpy(mask), n)
    np.testing.assert_array_equal(np.nonzero(keep_host)[0],
                                  ops.nms(cupy.asnumpy(boxes), -np.arange(n, dtype=np.float32), 0.5))


def test_gpu_batched_nms_and_empty():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(2)
    for n in (300, 30000):                     # 30000 boxes: the per-category path on the GPU
        boxes = random_boxes(rng, n, scale=500)
        scores = rng.random(n).astype(np.float32)
        idxs = rng.integers(0, 5, n)
        expected = ops.batched_nms(boxes, scores, idxs, 0.5)
        got = ops.batched_nms(cupy.asarray(boxes), cupy.asarray(scores), cupy.asarray(idxs), 0.5)
        np.testing.assert_array_equal(cupy.asnumpy(got), expected)
    empty = ops.nms(cupy.zeros((0, 4), cupy.float32), cupy.zeros((0,), cupy.float32), 0.5)
    assert isinstance(empty, cupy.ndarray) and empty.shape == (0,) and empty.dtype == np.int64


def test_gpu_reference_and_box_ops():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 200)
    scores = rng.random(200).astype(np.float32)
    np.testing.assert_array_equal(
        cupy.asnumpy(ops.nms_reference(cupy.asarray(boxes), cupy.asarray(scores), 0.5)),
        ops.nms(boxes, scores, 0.5))
    np.testing.assert_array_equal(cupy.asnumpy(ops.box_iou(cupy.asarray(boxes), cupy.asarray(boxes))),
                                  ops.box_iou(boxes, boxes))
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    gt = boxes + np.array([0, 0, 1, 1], np.float32)           # positive sizes
    proposals = boxes + np.array([2, 2, 4, 4], np.float32)
    np.testing.assert_allclose(cupy.asnumpy(coder.encode(cupy.asarray(gt), cupy.asarray(proposals))),
                               coder.encode(gt, proposals), rtol=1e-5, atol=1e-5)


def test_gpu_anchors():
    cupy = pytest.importorskip("cupy")
    gen = ops.AnchorGenerator()
    sizes = [(50, 76), (25, 38), (13, 19), (7, 10), (4, 5)]
    for cpu, gpu in zip(gen((200, 304), sizes), gen((200, 304), sizes, device="cuda")):
        assert isinstance(gpu, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


def test_gpu_nms_of_huge_boxes_and_large_category_ids_matches_cpu():
    """The float64 fallback for float32 boxes whose areas overflow, and NMS per category with ids
    near 2^26, on the GPU path too."""
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 100, scale=1e37)
    boxes[50:] = boxes[:50]
    scores = rng.random(100).astype(np.float32)
    expected = ops.nms(boxes, scores, 0.5)
    assert len(expected) <= 50
    np.testing.assert_array_equal(cupy.asnumpy(ops.nms(cupy.asarray(boxes), cupy.asarray(scores), 0.5)),
                                  expected)
    boxes = random_boxes(rng, 2000, scale=300)
    scores = rng.random(2000).astype(np.float32)
    idxs = 2 ** 26 + rng.integers(0, 7, 2000)
    np.testing.assert_array_equal(
        cupy.asnumpy(ops.batched_nms(cupy.asarray(boxes), cupy.asarray(scores), cupy.asarray(idxs), 0.5)),
        ops.batched_nms(boxes, scores, idxs, 0.5))
