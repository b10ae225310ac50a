"""The classroom training step, ours / torch: the unit of work every demo, notebook and ablation
repeats (classroom_fpn, 4 shapes images of 128 px per step, SGD with momentum).

Both sides are the same network with the same weights: ours from ``build_model``, theirs built
here from torchvision's parts (its Bottleneck with GroupNorm(gcd(32, C)) in a body of the
classroom widths, BackboneWithFPN, RPNHead, MultiScaleRoIAlign, TwoMLPHead, MaskRCNNHeads,
MaskRCNNPredictor in a MaskRCNN with the preset's sizes and top-n values), our state dict copied
into it by name. They train on the same batches (the trainer's first batches of seed 0), take
turns step by step in this process (torch limited to NumPy's BLAS threads) and the medians are
compared. Two states are measured:

- **start**: the weights at initialisation, lr = the warmup's first value;
- **trained**: the weights of a classroom_fpn run of ``--train-iters`` iterations (trained here
  once and cached in ``--work``, or ``--checkpoint`` of your own ``train`` run), lr / 10, so
  that the RPN gives realistic proposals and the mask head sees realistic positives.

Printed per state: the median seconds of forward, backward, SGD step and the whole step for
each library and the ratio ours / torch (the goal: <= 1.0); the GEMM FLOPs of one step
(convolutions and matrix products, forward and backward, counted by torch's FlopCounterMode on
the torch step) and the GFLOP/s each library reaches, beside the machine's GEMM peak (a
float32 1024^3 matmul on the same threads, NumPy's BLAS and torch's). The FLOPs are those of
direct convolution; our 3x3 stride-1 convolutions use Winograd's F(2x2, 3x3), which multiplies
2.25x less, so our figure is an effective rate and may exceed what its GEMMs run at.

    python benchmarks/bench_train.py                 # 10 timed steps per state
    python benchmarks/bench_train.py --steps 20 --checkpoint minimrcnn-demo/checkpoint.npz
    python benchmarks/bench_train.py --profile 5     # + cProfile of 5 of our trained steps

The machine may be shared: compare ratios from the same run only.
"""
import argparse
import cProfile
import itertools
import math
import os
import pstats
import sys
import time

import numpy as np

from common import blas_description, blas_threads, median_time  # noqa: E402  (also puts the checkout on the path)

from minimrcnn.config import get_config  # noqa: E402
from minimrcnn.data import TrainLoader  # noqa: E402
from minimrcnn.engine.pipeline import configure_for, load_datasets  # noqa: E402
from minimrcnn.engine.trainer import build_optimizer, load_model  # noqa: E402
from minimrcnn.models import build_model  # noqa: E402
from minimrcnn.nn import init  # noqa: E402


# ---- the torch twin ---------------------------------------------------------------------------
def build_torch_model(torch, cfg):
    """classroom_fpn (``cfg``) from torchvision's parts; parameter names equal ours."""
    from torch import nn
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.models.resnet import Bottleneck
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if cfg.features != "fpn" or cfg.box_head != "2fc" or cfg.mask_head != "fcn" or cfg.keypoint_on:
        raise SystemExit("bench_train builds the FPN / 2fc / FCN-mask model only (classroom_fpn)")

    def norm(channels):
        return nn.GroupNorm(math.gcd(32, channels), channels)

    class Body(nn.Module):            # torchvision's ResNet layout, classroom widths
        def __init__(self):
            super().__init__()
            widths, blocks = cfg.classroom_widths, cfg.classroom_blocks
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.bn1 = norm(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = widths[0]
            for i, (planes, n) in enumerate(zip(widths, blocks)):
                stride = 1 if i == 0 else 2
                down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), norm(planes * 4))
                layers = [Bottleneck(inplanes, planes, stride, down, norm_layer=norm)]
                layers += [Bottleneck(planes * 4, planes, norm_layer=norm) for _ in range(n - 1)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
                inplanes = planes * 4

    C = cfg.fpn_channels
    backbone = BackboneWithFPN(Body(), {f"layer{i + 1}": str(i) for i in range(4)},
                               [w * 4 for w in cfg.classroom_widths], C, extra_blocks=LastLevelMaxPool())
    sizes = tuple(tuple(s) for s in cfg.anchor_sizes)
    anchors = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
    names, res = ["0", "1", "2", "3"], cfg.box_pooler_resolution
    layers = list(cfg.mask_head_layers)
    return MaskRCNN(
        backbone, num_classes=None, min_size=cfg.min_size, max_size=cfg.max_size,
        image_mean=list(cfg.image_mean), image_std=list(cfg.image_std),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(C, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test, rpn_nms_thresh=cfg.rpn_nms_thresh,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_roi_pool=MultiScaleRoIAlign(names, res, cfg.pooler_sampling_ratio),
        box_head=TwoMLPHead(C * res * res, cfg.box_head_dim),
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, cfg.num_classes),
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        mask_roi_pool=MultiScaleRoIAlign(names, cfg.mask_pooler_resolution, cfg.pooler_sampling_ratio),
        mask_head=MaskRCNNHeads(C, layers, 1),
        mask_predictor=MaskRCNNPredictor(layers[-1], layers[-1], cfg.num_classes))


def copy_weights(torch, ours, theirs):
    """Our state dict into the torch model (every key, every shape: strict)."""
    state = {k: torch.from_numpy(np.ascontiguousarray(v).copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)


def torch_optimizer(torch, model, cfg, lr):
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and p.ndim > 1],
               "weight_decay": cfg.weight_decay},
              {"params": [p for p in model.parameters() if p.requires_grad and p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)


# ---- one step, in stages ----------------------------------------------------------------------
def timed_step(model, optimizer, images, targets):
    """(forward s, backward s, sgd s) of one training step: ours or torch's (same calls)."""
    t0 = time.perf_counter()
    losses = model(images, targets)
    total = sum(losses.values())
    t1 = time.perf_counter()
    optimizer.zero_grad()
    total.backward()
    t2 = time.perf_counter()
    optimizer.step()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def backbone_difference(torch, ours, theirs):
    """Max |ours - torch| over the FPN outputs of one random normalised 128x160 image."""
    import minimrcnn as mr
    x = np.random.default_rng(0).standard_normal((1, 3, 128, 160)).astype(np.float32)
    with mr.no_grad(), torch.no_grad():
        a = ours.backbone(mr.Tensor(x))
        b = theirs.backbone(torch.from_numpy(x))
    return max(float(np.abs(a[k].data - b[k].numpy()).max()) for k in b)


def to_torch(torch, batch):
    images, targets = batch
    return ([torch.from_numpy(np.ascontiguousarray(i)) for i in images],
            [{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()} for t in targets])


def gemm_peak(torch, n=1024, repeats=5):
    """GFLOP/s of an n^3 float32 matmul: (NumPy's BLAS, torch)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.matmul(a, b), torch.mm(ta, tb)
    flops = 2.0 * n ** 3
    return flops / median_time(lambda: np.matmul(a, b), repeats) / 1e9, \
        flops / median_time(lambda: torch.mm(ta, tb), repeats) / 1e9


def count_flops(torch, model, optimizer, batch):
    """GEMM FLOPs (conv, mm, addmm, bmm; forward and backward) of one torch training step."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        timed_step(model, optimizer, *batch)
    return counter.get_total_flops()


# ---- the states --------------------------------------------------------------------------------
def trained_weights(cfg, train_set, work, iters):
    """Path of a classroom_fpn checkpoint of ``iters`` iterations (trained once into ``work``)."""
    from minimrcnn.engine.trainer import Trainer
    run_dir = os.path.join(work, f"classroom_fpn_{iters}")
    path = os.path.join(run_dir, "checkpoint.npz")
    if os.path.isfile(path):
        from minimrcnn.weights import load_state_dict_file
        _, meta = load_state_dict_file(path)
        if int(meta.get("iteration", -1)) == iters:
            return path
    print(f"training classroom_fpn for {iters} iterations into {run_dir} (once; reused later)", flush=True)
    init.manual_seed(cfg.seed)
    model = build_model(cfg.replace(max_iter=iters))
    resume = os.path.isfile(path)
    # the bar only where someone watches: redirected to a file, its redraws bury the results
    Trainer(model, train_set, cfg.replace(max_iter=iters), run_dir, checkpoint_every=100,
            progress=sys.stderr.isatty()).train(resume=resume)
    return path


def measure(torch, cfg, batches, lr, weights, steps, label, profile=0):
    """Build both models (our init, or ``weights``), run ``steps`` alternating steps after one
    warm-up step each, print the stage medians; returns (ours step s, torch step s, flops)."""
    if weights is None:
        init.manual_seed(cfg.seed)
        ours = build_model(cfg)
    else:                                   # the config the weights were trained with
        ours, _ = load_model(weights)
        cfg = ours.cfg
    theirs = build_torch_model(torch, cfg)
    copy_weights(torch, ours, theirs)
    print(f"\n{label}: the same network? backbone outputs differ by at most "
          f"{backbone_difference(torch, ours, theirs):.1e}")
    ours.train()
    theirs.train()
    opt_ours, _ = build_optimizer(ours, cfg)
    for g in opt_ours.param_groups:
        g["lr"] = lr
    opt_torch = torch_optimizer(torch, theirs, cfg, lr)
    torch_batches = [to_torch(torch, b) for b in batches]

    flops = count_flops(torch, theirs, opt_torch, torch_batches[0])
    timed_step(ours, opt_ours, *batches[0])              # warm-up: allocations, kernel caches
    times = {"ours": [], "torch": []}
    for i in range(1, steps + 1):
        j = i % len(batches)
        times["ours"].append(timed_step(ours, opt_ours, *batches[j]))
        times["torch"].append(timed_step(theirs, opt_torch, *torch_batches[j]))
    med = {lib: np.median(np.array([list(t) + [sum(t)] for t in ts]), axis=0) for lib, ts in times.items()}
    print(f"{label}: {steps} steps of {cfg.ims_per_batch} images, lr {lr:g}")
    print(f"{'stage':<10} {'ours s':>8} {'torch s':>8} {'ratio':>7}")
    for k, stage in enumerate(("forward", "backward", "sgd step", "step")):
        print(f"{stage:<10} {med['ours'][k]:8.3f} {med['torch'][k]:8.3f} {med['ours'][k] / med['torch'][k]:7.2f}")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(profile):
            timed_step(ours, opt_ours, *batches[i % len(batches)])
        prof.disable()
        print(f"\ncProfile of {profile} of our steps ({label}), by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return med["ours"][3], med["torch"][3], flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per library and state (median)")
    parser.add_argument("--checkpoint", help="checkpoint.npz or model_final.npz of a classroom_fpn run for the "
                                             "trained state (default: train --train-iters iterations once "
                                             "into --work)")
    parser.add_argument("--train-iters", type=int, default=300, help="iterations of the cached trained run")
    parser.add_argument("--work", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser(
        "~/.cache")), "minimrcnn", "bench_train"), help="where the trained run is cached")
    parser.add_argument("--states", nargs="+", default=["start", "trained"], choices=["start", "trained"])
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile N of our steps in each state")
    args = parser.parse_args()
    if args.steps < 1 or args.train_iters < 1 or args.profile < 0:
        parser.error(f"--steps and --train-iters must be >= 1 and --profile >= 0, got {args.steps}, "
                     f"{args.train_iters}, {args.profile}")
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        parser.error(f"--checkpoint {args.checkpoint!r}: no such file")
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    train_set, _ = load_datasets("shapes", progress=False)
    cfg = configure_for(get_config("classroom_fpn"), train_set)
    loader = TrainLoader(train_set, cfg.ims_per_batch, seed=cfg.seed, flip_prob=cfg.flip_prob)
    with loader.batches() as it:
        batches = list(itertools.islice(it, min(args.steps + 1, 20)))
    print(f"classroom_fpn on shapes ({len(train_set)} train images), {threads} BLAS/torch thread(s), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; torch {torch.__version__}")
    peak_np, peak_torch = gemm_peak(torch)
    print(f"NumPy's BLAS: {blas_description()}")
    print(f"GEMM peak (float32 1024^3 matmul): NumPy's BLAS {peak_np:.1f} GFLOP/s, torch {peak_torch:.1f} GFLOP/s")

    for state in args.states:
        if state == "start":
            lr, weights = cfg.base_lr * cfg.warmup_factor, None
        else:
            weights = args.checkpoint or trained_weights(cfg, train_set, args.work, args.train_iters)
            lr = cfg.base_lr * 0.1
        t_ours, t_torch, flops = measure(torch, cfg, batches, lr, weights, args.steps,
                                         f"{state} ({os.path.basename(weights) if weights else 'initial weights'})",
                                         profile=args.profile)
        print(f"GEMM FLOPs of one step (direct convolution): {flops / 1e9:.2f} GFLOP -> ours "
              f"{flops / t_ours / 1e9:.1f} GFLOP/s (effective: Winograd multiplies less), "
              f"torch {flops / t_torch / 1e9:.1f} GFLOP/s (peak {peak_np:.1f} / {peak_torch:.1f}); "
              f"ours / torch = {t_ours / t_torch:.2f}; ours {cfg.ims_per_batch / t_ours:.1f} images/s")


if __name__ == "__main__":
    main()
