"""Mask R-CNN R50-FPN, ours / torchvision: inference and one training step, same weights.

Both models are torchvision's maskrcnn_resnet50_fpn as it is built for the COCO weights
(FrozenBatchNorm2d with eps 0, 91 classes, layers 2-4 trainable), with random weights copied
into ours by name (``load_torchvision_state_dict``); the box classifier's bias favours the
foreground so that, as with real weights, every image gives the full 100 detections and the
mask head runs on all of them. One random 800x1216 RGB image (the transform keeps its size).

Printed per stage (transform, backbone, rpn, roi_heads, postprocess) and in total: the median
of ``--repeats`` runs for ours and torchvision (run alternately, same process, torch limited to
NumPy's BLAS threads), and the ratio ours / torchvision; then a training step (forward, loss
sum, backward, SGD step) the same way. Goal: inference <= 1.5x torchvision on the CPU.

Peak memory: each library runs once more in a fresh child process (weights loaded from a
temporary .npz), so that no allocator cache of an earlier run hides the need of this one. The
figure is the rise of the child's peak resident set over what was resident after the model was
built (VmHWM in /proc/self/status, reset through /proc/self/clear_refs just before the run);
where that reset is not possible, the ru_maxrss delta is printed, and the method is named.

    python benchmarks/bench_model.py            # 800x1216, 3 repeats
    python benchmarks/bench_model.py --quick    # 400x608, 1 repeat, inference + training

The machine may be shared: compare ratios from the same run only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import resource
import statistics
import time

import numpy as np

from common import blas_description, blas_threads  # noqa: E402  (also puts the checkout on the path)

import minimrcnn as mr  # noqa: E402
from minimrcnn.config import get_config
from minimrcnn.models import build_model
from minimrcnn.weights import load_state_dict_file, load_weights, save_weights


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(fn):
    """(result, MB above the resident set at the start, method) for one call of ``fn``."""
    if _reset_peak():
        before = _status_kb("VmRSS")
        result = fn()
        return result, (_status_kb("VmHWM") - before) / 1024, "VmHWM rise (peak RSS reset)"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, (after - before) / 1024, "ru_maxrss delta (rise above the earlier peak only)"


# ---- the two models ----------------------------------------------------------------------------
def build_pair(torch, seed=0):
    """torchvision's COCO-style maskrcnn_resnet50_fpn with random weights, and ours with a copy."""
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc

    torch.manual_seed(seed)
    body = resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
    theirs = MaskRCNN(_resnet_fpn_extractor(body, 3), num_classes=91)
    overwrite_eps(theirs, 0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, misc.FrozenBatchNorm2d):
                n = m.weight.numel()
                m.weight.copy_(0.2 + 0.6 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
        # a few likely classes (softmax over 91 classes spreads the score thin otherwise) and an
        # unlikely background: every image gives 100 detections, as with trained weights
        predictor = theirs.roi_heads.box_predictor
        predictor.cls_score.weight.mul_(0.1)
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[1:6] = 3.0
        predictor.cls_score.bias[0] = -4.0
        predictor.bbox_pred.weight.mul_(0.1)
    ours = build_model(get_config("tv_r50_fpn"))
    ours.load_torchvision_state_dict(theirs.state_dict())
    return ours, theirs


def staged_inference(model, images, torch=None):
    """Run transform, backbone, rpn, roi_heads, postprocess one by one; returns their times."""
    times = {}
    t = time.perf_counter()
    original_sizes = [tuple(int(s) for s in img.shape[-2:]) for img in images]
    image_list, _ = model.transform(images)
    times["transform"] = time.perf_counter() - t
    t = time.perf_counter()
    features = model.backbone(image_list.tensors)
    times["backbone"] = time.perf_counter() - t
    t = time.perf_counter()
    proposals, _ = model.rpn(image_list, features)
    times["rpn"] = time.perf_counter() - t
    t = time.perf_counter()
    detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
    times["roi_heads"] = time.perf_counter() - t
    t = time.perf_counter()
    detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
    times["postprocess"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return times, len(detections[0]["boxes"])


def make_target(height, width, rng):
    """Three random boxes with rectangular masks and labels, as arrays."""
    boxes, masks = [], np.zeros((3, height, width), np.uint8)
    for i in range(3):
        x1, y1 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        x2, y2 = x1 + rng.integers(32, width // 2), y1 + rng.integers(32, height // 2)
        boxes.append([x1, y1, x2, y2])
        masks[i, y1:y2, x1:x2] = 1
    return dict(boxes=np.asarray(boxes, np.float32), labels=rng.integers(1, 91, 3).astype(np.int64),
                masks=masks)


def train_step_ours(model, optimizer, image, target):
    losses = model([image], [target])
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.item())


def train_step_torch(torch, model, optimizer, image, target):
    losses = model([torch.from_numpy(image)], [{k: torch.from_numpy(v) for k, v in target.items()}])
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.item())


def child_peak_memory(library, task, weights_path, height, width):
    """(MB, method) of one ``task`` ("predict" | "train") by ``library`` in a fresh process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", library, "--task", task,
           "--weights", weights_path, "--size", str(height), str(width)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["mb"], result["method"]


def child_main(args):
    """Build one library's model, load the weights, and measure the peak of one task."""
    height, width = args.size
    rng = np.random.default_rng(0)
    image = rng.random((3, height, width), dtype=np.float32)
    target = make_target(height, width, rng)
    if args.child == "ours":
        model = build_model(get_config("tv_r50_fpn", min_size=min(height, width)))
        load_weights(model, args.weights)
        optimizer = mr.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        if args.task == "predict":
            run = lambda: model.predict([image])                                        # noqa: E731
        else:
            model.train()
            run = lambda: train_step_ours(model, optimizer, image, target)              # noqa: E731
    else:
        import torch
        torch.set_num_threads(blas_threads())
        from torchvision.models import resnet50
        from torchvision.models.detection import MaskRCNN
        from torchvision.models.detection._utils import overwrite_eps
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops import misc
        body = resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
        model = MaskRCNN(_resnet_fpn_extractor(body, 3), num_classes=91, min_size=min(height, width))
        overwrite_eps(model, 0.0)
        state, _ = load_state_dict_file(args.weights)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        if args.task == "predict":
            model.eval()

            def run():
                with torch.no_grad():
                    return model([torch.from_numpy(image)])
        else:
            model.train()
            run = lambda: train_step_torch(torch, model, optimizer, image, target)      # noqa: E731
    _, mb, method = peak_memory_mb(run)
    print(json.dumps({"mb": mb, "method": method}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="400x608 image, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (median)")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--child", choices=["ours", "torchvision"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=["predict", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    import torch

    height, width = (400, 608) if args.quick else (800, 1216)
    repeats = args.repeats or (1 if args.quick else 3)
    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"image {height}x{width}, {repeats} repeat(s), {threads} BLAS/torch thread(s), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"NumPy's BLAS: {blas_description()}")

    ours, theirs = build_pair(torch)
    tmpdir = tempfile.mkdtemp(prefix="bench_model_")
    weights_path = os.path.join(tmpdir, "r50_fpn.npz")
    save_weights(ours, weights_path)
    # shorter side = the image's (800 in the full run): the resize keeps the size, as for a
    # COCO-sized 800x1216 input
    ours.transform.min_size = theirs.transform.min_size = (min(height, width),)
    ours.eval()
    theirs.eval()
    rng = np.random.default_rng(0)
    image = rng.random((3, height, width), dtype=np.float32)

    # ---- inference -----------------------------------------------------------------------------
    with mr.no_grad(), torch.no_grad():
        staged_inference(theirs, [torch.from_numpy(image)])        # warm-up (torch's first run)
        runs = {"ours": [], "torchvision": []}
        detections = {}
        for _ in range(repeats):
            times, detections["ours"] = staged_inference(ours, [image])
            runs["ours"].append(times)
            times, detections["torchvision"] = staged_inference(theirs, [torch.from_numpy(image)])
            runs["torchvision"].append(times)
    print(f"\ninference (detections: ours {detections['ours']}, torchvision {detections['torchvision']})")
    print(f"{'stage':<12} {'ours s':>9} {'tv s':>9} {'ratio':>7}")
    for stage in runs["ours"][0]:
        a = statistics.median(r[stage] for r in runs["ours"])
        b = statistics.median(r[stage] for r in runs["torchvision"])
        print(f"{stage:<12} {a:9.3f} {b:9.3f} {a / b if b > 0 else float('nan'):7.2f}")
    mem = {lib: child_peak_memory(lib, "predict", weights_path, height, width) for lib in ("ours", "torchvision")}
    print(f"peak memory of one predict: ours {mem['ours'][0]:.0f} MB, torchvision "
          f"{mem['torchvision'][0]:.0f} MB ({mem['ours'][1]})")

    # ---- one training step -----------------------------------------------------------------------
    if args.no_train:
        shutil.rmtree(tmpdir, ignore_errors=True)
        return
    target = make_target(height, width, rng)
    ours.train()
    theirs.train()
    opt_ours = mr.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    opt_theirs = torch.optim.SGD([p for p in theirs.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    train_step_torch(torch, theirs, opt_theirs, image, target)      # warm-up
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        train_step_ours(ours, opt_ours, image, target)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        train_step_torch(torch, theirs, opt_theirs, image, target)
        t_theirs.append(time.perf_counter() - t)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"\ntraining step (forward + backward + SGD): ours {a:.3f} s, torchvision {b:.3f} s, "
          f"ratio {a / b:.2f}")
    mem = {lib: child_peak_memory(lib, "train", weights_path, height, width) for lib in ("ours", "torchvision")}
    print(f"peak memory of one step: ours {mem['ours'][0]:.0f} MB, torchvision "
          f"{mem['torchvision'][0]:.0f} MB ({mem['ours'][1]})")
    shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
