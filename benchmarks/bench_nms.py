"""NMS speed: the Cython kernel vs the NumPy reference vs torchvision.ops.nms (when importable).

    python benchmarks/bench_nms.py [--sizes 2000 12000] [--repeats 7] [--threshold 0.7]

Two layouts of boxes in an 800x1216 image: "random" (centres uniform, sides log-uniform in
[16, 512]: most boxes survive) and "clustered" (boxes jittered around 100 objects, as proposals
around objects are: most boxes are suppressed). Each timing is the median of ``--repeats`` runs; the table prints times and
the ratios ours / reference measured in the same run (torch is limited to one thread, like ours).
The kept indices of all implementations are checked to be equal.
"""
import argparse

import numpy as np

from common import median_time  # noqa: E402  (also puts the checkout on the path)
from minimrcnn import ops  # noqa: E402


def make_boxes(n, layout="random", seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    if layout == "random":
        ctr = rng.uniform(0, 1, (n, 2)) * [1216, 800]
        wh = np.exp(rng.uniform(np.log(16), np.log(512), (n, 2)))
    else:
        obj_ctr = rng.uniform(0, 1, (100, 2)) * [1216, 800]
        obj_wh = np.exp(rng.uniform(np.log(32), np.log(400), (100, 2)))
        which = rng.integers(0, 100, n)
        wh = obj_wh[which] * np.exp(rng.normal(0, 0.15, (n, 2)))
        ctr = obj_ctr[which] + rng.normal(0, 0.1, (n, 2)) * obj_wh[which]
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).clip(0, [1216, 800, 1216, 800])
    return boxes.astype(dtype), rng.random(n).astype(dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 12000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--layouts", nargs="+", default=["random", "clustered"],
                        choices=["random", "clustered"])
    args = parser.parse_args()

    try:
        import torch
        import torchvision
        torch.set_num_threads(1)
    except ImportError:
        torch = torchvision = None
        print("torchvision not importable: comparing with the NumPy reference only")

    from minimrcnn.ops.nms import _nms_cpu          # the Cython path, without the validation
    print(f"threshold {args.threshold}, median of {args.repeats} runs, float32")
    header = f"{'layout':>9} {'N':>7} {'kept':>6} {'cython ms':>10} {'reference ms':>13} {'ref/cython':>11}"
    if torchvision is not None:
        header += f" {'torchvision ms':>15} {'cython/tv':>10} {'nms()/tv':>9}"
    print(header)
    for layout, n in [(layout, n) for layout in args.layouts for n in args.sizes]:
        boxes, scores = make_boxes(n, layout)
        thr = args.threshold
        keep = ops.nms(boxes, scores, thr)
        np.testing.assert_array_equal(keep, ops.nms_reference(boxes, scores, thr))
        t_cy = median_time(lambda: _nms_cpu(boxes, scores, thr), args.repeats)
        t_ref = median_time(lambda: ops.nms_reference(boxes, scores, thr), max(3, args.repeats // 2))
        line = f"{layout:>9} {n:>7} {len(keep):>6} {t_cy * 1e3:>10.3f} {t_ref * 1e3:>13.2f} {t_ref / t_cy:>11.1f}"
        if torchvision is not None:
            tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
            np.testing.assert_array_equal(keep, torchvision.ops.nms(tb, ts, thr).numpy())
            t_tv = median_time(lambda: torchvision.ops.nms(tb, ts, thr), args.repeats)
            t_pub = median_time(lambda: ops.nms(boxes, scores, thr), args.repeats)
            line += f" {t_tv * 1e3:>15.3f} {t_cy / t_tv:>10.2f} {t_pub / t_tv:>9.2f}"
        print(line)


if __name__ == "__main__":
    main()
