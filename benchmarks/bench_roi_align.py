"""RoIAlign forward + backward at Mask R-CNN scale: ours (Cython) vs the NumPy reference vs
torchvision's CPU kernel, all in this process.

    python benchmarks/bench_roi_align.py [--repeat 5] [--rois 512] [--skip-reference]

Workload: one FPN level (1, 256, 200, 304) float32 (the P2 map of an 800 x 1216 image,
spatial_scale 1/4), 512 RoIs of 16-256 image pixels, sampling_ratio 2, aligned False (the
settings of torchvision's MultiScaleRoIAlign), output 7 x 7 (box head) and 14 x 14 (mask head).
Prints the median of ``--repeat`` runs of forward, backward and both, and the ratios
ours / reference and ours / torchvision (when torchvision is importable here; otherwise says so).
The three results are also compared, so a fast wrong kernel cannot pass unnoticed.
"""
import argparse

import numpy as np

from common import median_time  # noqa: E402  (also puts the checkout on the path)

from minimrcnn import Tensor  # noqa: E402
from minimrcnn.ops import roi_align, roi_align_reference, roi_align_reference_backward  # noqa: E402


def make_inputs(num_rois, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((1, 256, 200, 304)).astype(np.float32)
    size = rng.uniform(16, 256, (num_rois, 2))
    x1 = rng.uniform(0, 1216 - size[:, 0])
    y1 = rng.uniform(0, 800 - size[:, 1])
    rois = np.stack([np.zeros(num_rois), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)
    return features, rois.astype(np.float32)


def bench_ours(features, rois, size, repeat):
    grad = np.ones((len(rois), features.shape[1]) + size, np.float32)
    state = {}

    def forward():
        state["x"] = Tensor(features, requires_grad=True)
        state["y"] = roi_align(state["x"], rois, size, 0.25, 2, False)

    def backward():
        state["y"].backward(grad)

    def both():
        forward()
        backward()

    t_fwd = median_time(forward, repeat)
    t_both = median_time(both, repeat)
    both()
    return t_fwd, t_both - t_fwd, t_both, state["y"].data, state["x"].grad


def bench_reference(features, rois, size, repeat):
    grad = np.ones((len(rois), features.shape[1]) + size, np.float32)
    out = {}

    def forward():
        out["y"] = roi_align_reference(features, rois, size, 0.25, 2, False)

    def backward():
        out["g"] = roi_align_reference_backward(grad, rois, features.shape, size, 0.25, 2, False)

    t_fwd = median_time(forward, repeat)
    t_bwd = median_time(backward, repeat)
    return t_fwd, t_bwd, t_fwd + t_bwd, out["y"], out["g"]


def bench_torchvision(features, rois, size, repeat):
    import torch
    from torchvision.ops import roi_align as tv_roi_align
    x0 = torch.from_numpy(features)
    r = torch.from_numpy(rois)
    grad = torch.ones((len(rois), features.shape[1]) + size)
    state = {}

    def forward():
        state["x"] = x0.detach().requires_grad_()
        state["y"] = tv_roi_align(state["x"], r, size, 0.25, 2, False)

    def backward():
        state["y"].backward(grad)

    def both():
        forward()
        backward()

    t_fwd = median_time(forward, repeat)
    t_both = median_time(both, repeat)
    both()
    return t_fwd, t_both - t_fwd, t_both, state["y"].detach().numpy(), state["x"].grad.numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    from minimrcnn._ext import cpu_module
    ext = cpu_module("roi_align")
    threads = ext.max_threads() if ext is not None else 0
    try:
        import torch
        import torchvision  # noqa: F401
        have_tv = True
        tv_note = f"torchvision {torchvision.__version__} (torch {torch.__version__}, " \
                  f"{torch.get_num_threads()} threads; its roi_align CPU kernel is single-threaded)"
    except ImportError as e:
        have_tv = False
        tv_note = f"torchvision not importable in this python ({e.name}): no torchvision column"
    print(f"ours: Cython kernel, {threads} OpenMP thread(s)" if ext is not None
          else "ours: Cython kernel NOT BUILT (timing the NumPy fallback)")
    print(tv_note)
    features, rois = make_inputs(args.rois)
    print(f"features {features.shape} float32, {len(rois)} RoIs, spatial_scale 0.25, "
          f"sampling_ratio 2, aligned False; median of {args.repeat} runs, seconds\n")

    header = f"{'output':>7} {'impl':>12} {'forward':>9} {'backward':>9} {'fwd+bwd':>9}"
    print(header)
    print("-" * len(header))
    summary = []
    for size in ((7, 7), (14, 14)):
        ours = bench_ours(features, rois, size, args.repeat)
        rows = [("ours", ours)]
        if not args.skip_reference:
            repeat = max(1, args.repeat // 2)
            rows.append(("reference", bench_reference(features, rois, size, repeat)))
        if have_tv:
            rows.append(("torchvision", bench_torchvision(features, rois, size, args.repeat)))
        for name, (f, b, fb, y, g) in rows:
            print(f"{size[0]:>3}x{size[1]:<3} {name:>12} {f:9.4f} {b:9.4f} {fb:9.4f}")
            if name != "ours":
                err_y = float(np.abs(y - ours[3]).max())
                err_g = float(np.abs(g - ours[4]).max())
                ok = err_y < 1e-4 and err_g < 1e-3
                summary.append(f"{size[0]}x{size[1]} ours/{name}: forward {ours[0] / f:.3f}, "
                               f"backward {ours[1] / b:.3f}, fwd+bwd {ours[2] / fb:.3f}   "
                               f"(max |diff| output {err_y:.2e}, grad {err_g:.2e}"
                               f"{'' if ok else ' -- MISMATCH'})")
    print("\nratios (time ours / time other; < 1 means ours is faster):")
    for line in summary:
        print("  " + line)
    if not have_tv:
        print("  ours/torchvision: not measured (torchvision not importable in this python)")


if __name__ == "__main__":
    main()
