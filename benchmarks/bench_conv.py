"""conv2d speed against torch, at the shapes of ResNet-50-FPN on one 800x1216 image (float32),
and at the shapes of the RoI heads (hundreds of 7x7 or 14x14 images: the packed path).

For each convolution of the backbone and the FPN it prints the median time of our
``minimrcnn.functional.conv2d`` and of ``torch.nn.functional.conv2d`` (same process, same
inputs, torch limited to the number of threads NumPy's BLAS uses), for the forward pass and
for forward + backward (gradients of input, weight and bias), and the ratio ours / torch.
Each section ends with the geometric means of its ratios (the goal: <= 1.5 for
forward+backward).

    python benchmarks/bench_conv.py              # full size, 5 repeats (a few minutes)
    python benchmarks/bench_conv.py --quick      # 400x608 image, every other shape, 3 repeats
    python benchmarks/bench_conv.py --only head  # the RoI heads only (--only filters by name)

The machine may be shared: the two libraries run alternately, shape by shape, and the
medians of several repeats are compared; re-run before trusting a single ratio.
"""
import argparse
import math


import numpy as np

from common import blas_description, blas_threads, median_times  # noqa: E402  (also puts the checkout on the path)
from minimrcnn.autograd import Tensor, no_grad  # noqa: E402
from minimrcnn.functional.conv import conv2d  # noqa: E402


def resnet50_fpn_convs(height, width):
    """(name, C_in, C_out, kernel, stride, padding, H_in, W_in) of ResNet-50-FPN's convolutions.

    One row per distinct shape: the stem; per stage res2..res5 the 1x1 reduce (of a non-first
    block), the stride-1 3x3, the stride-2 3x3 of the first block (res3..res5; torchvision puts
    the stride on the 3x3), the 1x1 expand and the 1x1 downsample of the first block; the FPN
    1x1 laterals and 3x3 outputs (256 channels at strides 4..32).
    """
    def size(stride):
        return -(-height // stride), -(-width // stride)

    rows = [("stem 7x7/2", 3, 64, 7, 2, 3, height, width)]
    widths = {2: 64, 3: 128, 4: 256, 5: 512}
    for stage in (2, 3, 4, 5):
        mid, out, stride = widths[stage], widths[stage] * 4, 2 ** stage
        prev_out = 64 if stage == 2 else widths[stage - 1] * 4
        h, w = size(stride)
        ph, pw = size(stride // 2) if stage > 2 else (h, w)
        rows.append((f"res{stage} 1x1 reduce", out, mid, 1, 1, 0, h, w))
        rows.append((f"res{stage} 3x3", mid, mid, 3, 1, 1, h, w))
        if stage > 2:
            rows.append((f"res{stage} 3x3/2", mid, mid, 3, 2, 1, ph, pw))
        rows.append((f"res{stage} 1x1 expand", mid, out, 1, 1, 0, h, w))
        rows.append((f"res{stage} downsample" + ("/2" if stage > 2 else ""), prev_out, out, 1,
                     2 if stage > 2 else 1, 0, ph, pw))
    for stage in (2, 3, 4, 5):
        h, w = size(2 ** stage)
        rows.append((f"fpn lateral P{stage}", widths[stage] * 4, 256, 1, 1, 0, h, w))
    for stage in (2, 3, 4, 5):
        h, w = size(2 ** stage)
        rows.append((f"fpn output P{stage}", 256, 256, 3, 1, 1, h, w))
    return rows


def roi_head_convs():
    """(name, N, C_in, C_out, kernel, stride, padding, H_in, W_in) of RoI-head convolutions:
    many small images, which _CPU packs several to a GEMM."""
    return [("mask head 3x3", 128, 256, 256, 3, 1, 1, 14, 14),
            ("keypoint head 3x3", 64, 512, 512, 3, 1, 1, 14, 14),
            ("7x7 RoI head 3x3", 512, 256, 256, 3, 1, 1, 7, 7)]


def bench_shape(torch, cin, cout, k, stride, pad, h, w, repeats, rng, n=1):
    x = rng.standard_normal((n, cin, h, w), dtype=np.float32)
    wt = (rng.standard_normal((cout, cin, k, k), dtype=np.float32) / math.sqrt(cin * k * k))
    b = rng.standard_normal(cout, dtype=np.float32)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    gy = rng.standard_normal((n, cout, ho, wo), dtype=np.float32)

    ours_x, ours_w, ours_b = (Tensor(a, requires_grad=True) for a in (x, wt, b))
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, wt, b))
    tgy = torch.from_numpy(gy)

    def ours_fwd():
        with no_grad():
            conv2d(ours_x, ours_w, ours_b, stride, pad)

    def ours_fwd_bwd():
        for t in (ours_x, ours_w, ours_b):
            t.grad = None
        conv2d(ours_x, ours_w, ours_b, stride, pad).backward(gy)

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, tb, stride, pad)

    def torch_fwd_bwd():
        for t in (tx, tw, tb):
            t.grad = None
        torch.nn.functional.conv2d(tx, tw, tb, stride, pad).backward(tgy)

    return median_times([ours_fwd, torch_fwd, ours_fwd_bwd, torch_fwd_bwd], repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="400x608 image, every other shape, 3 repeats")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="run only shapes whose name contains this")
    args = parser.parse_args(argv)
    import torch

    height = args.height or (400 if args.quick else 800)
    width = args.width or (608 if args.quick else 1216)
    repeats = args.repeats or (3 if args.quick else 5)
    threads = blas_threads()
    torch.set_num_threads(threads)
    shapes = resnet50_fpn_convs(height, width)
    if args.only:
        shapes = [s for s in shapes if args.only in s[0]]
    elif args.quick:
        shapes = shapes[::2]
    print(f"conv2d float32, image {height}x{width} (batch 1; RoI heads: N small images), "
          f"{threads} threads (BLAS and torch), median of {repeats}; times in ms, "
          f"ratio = ours / torch")
    print(f"NumPy's BLAS: {blas_description()}")
    header = (f"{'C_in':>5}{'C_out':>6}{'k/s':>5}{'H x W':>11} | {'fwd':>7}{'torch':>7}{'ratio':>6}"
              f" | {'f+b':>7}{'torch':>7}{'ratio':>6}")
    rng = np.random.default_rng(0)

    def section(title, rows):
        """Time each (name, N, C_in, C_out, k, stride, pad, H, W); print a line each and the means."""
        if not rows:
            return
        print(f"{title or 'shape':<22}{header}")
        fwd_ratios, fb_ratios = [], []
        for name, n, cin, cout, k, stride, pad, h, w in rows:
            of, tf, ofb, tfb = bench_shape(torch, cin, cout, k, stride, pad, h, w, repeats, rng, n)
            fwd_ratios.append(of / tf)
            fb_ratios.append(ofb / tfb)
            size = f"{h}x{w}" if n == 1 else f"{n}x{h}x{w}"
            print(f"{name:<22}{cin:>5}{cout:>6}{f'{k}/{stride}':>5}{size:>11} | "
                  f"{of * 1e3:7.1f}{tf * 1e3:7.1f}{of / tf:6.2f} | {ofb * 1e3:7.1f}{tfb * 1e3:7.1f}"
                  f"{ofb / tfb:6.2f}", flush=True)
        print(f"geometric mean ratio: forward {gmean(fwd_ratios):.2f}, "
              f"forward+backward {gmean(fb_ratios):.2f} (goal <= 1.5)")

    def gmean(r):
        return math.exp(sum(math.log(v) for v in r) / len(r))

    section("", [(name, 1, *rest) for name, *rest in shapes])
    roi = roi_head_convs()
    if args.only:
        roi = [s for s in roi if args.only in s[0]]
    section("RoI heads (N x H x W)", roi)


if __name__ == "__main__":
    main()
