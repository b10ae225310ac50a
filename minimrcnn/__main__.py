"""Command line: ``python -m minimrcnn <command> --help``.

Commands grow with the project; each one is a small function below registered in ``main``.

User mistakes end in one line on stderr and exit status 2, never a traceback::

    python -m minimrcnn convert missing.pth out.npz
    python -m minimrcnn convert: error: missing.pth: no such file

A command reports a mistake by raising :class:`UsageError` (or lets a ``FileNotFoundError``,
``ConfigError`` or ``ValueError`` from checking its input through); ``main`` prints it. Pass
``--traceback`` before the command to see the full traceback instead.
"""
import argparse
import os
import sys
import time


class UsageError(Exception):
    """A mistake in how a command was called (a missing file, a bad value): ``main`` prints
    ``python -m minimrcnn <command>: error: <message>`` and exits with status 2."""


# the errors that input checks raise (ConfigError is a ValueError): one line, exit 2
USER_ERRORS = (UsageError, FileNotFoundError, ValueError)


def cmd_gradcheck(args):
    """Gradient-check every registered op case (float64 central differences) and print a table."""
    import numpy as np

    from .autograd.registry import all_cases, run_case

    backends = [("cpu", np)]
    if args.device in ("cuda", "all"):
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
            backends.append(("cuda", cupy))
        except Exception as e:  # ImportError or no device
            if args.device == "cuda":
                raise UsageError(f"--device cuda needs CuPy and a GPU ({e})") from None
    if args.device == "cuda":
        backends = backends[1:]

    cases = [c for c in all_cases() if not args.op or any(p in c.op for p in args.op)]
    if not cases:
        raise UsageError(f"no case matches --op {' '.join(args.op)}")
    header = f"{'op':<22} {'case':<34} {'dev':<4} {'mode':<11} {'max abs':>9} {'max rel':>9} {'result':<6} {'time':>7}"
    print(header)
    print("-" * len(header))
    failed, t0 = [], time.perf_counter()
    for dev, xp in backends:
        for c in cases:
            try:
                res, sec = run_case(c, xp)
                ok, mode, abs_err, rel_err = res.passed, res.mode, res.max_abs_err, res.max_rel_err
            except Exception as e:  # an op that crashes fails its check, with the reason shown
                ok, mode, abs_err, rel_err, sec = False, "error", float("nan"), float("nan"), 0.0
                print(f"  {c.id}: {type(e).__name__}: {e}")
            if not ok:
                failed.append(f"{c.id} ({dev})")
            print(f"{c.op:<22} {c.case:<34} {dev:<4} {mode:<11} {abs_err:>9.2e} {rel_err:>9.2e} "
                  f"{'pass' if ok else 'FAIL':<6} {sec:>6.2f}s")
    total = len(cases) * len(backends)
    print("-" * len(header))
    print(f"{total - len(failed)} passed, {len(failed)} failed  ({len({c.op for c in cases})} ops, "
          f"{time.perf_counter() - t0:.1f}s)")
    for f in failed:
        print(f"  FAILED {f}")
    return 1 if failed else 0


def cmd_convert(args):
    """Convert a torchvision Mask R-CNN / Keypoint R-CNN .pth checkpoint into minimrcnn's .npz
    (old and new torchvision key names accepted; needs torch for this step only)."""
    import importlib.util

    if not os.path.isfile(args.pth):
        raise UsageError(f"{args.pth}: no such file")
    if importlib.util.find_spec("torch") is None:
        raise UsageError("reading a .pth checkpoint needs torch (pip install torch); "
                         "minimrcnn's .npz checkpoints load without it")
    from .weights import convert_torchvision_checkpoint
    n = convert_torchvision_checkpoint(args.pth, args.out)
    print(f"wrote {n} arrays to {args.out}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minimrcnn",
                                     description="minimrcnn: Mask R-CNN from scratch, for teaching")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gradcheck", help="gradient-check every differentiable op (float64)",
                       description=cmd_gradcheck.__doc__)
    p.add_argument("--op", nargs="*", help="only ops whose name contains one of these strings")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="backends to check: cpu, cuda (needs CuPy and a GPU), or all available (default)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("convert", help="torchvision .pth checkpoint -> minimrcnn .npz",
                       description=cmd_convert.__doc__)
    p.add_argument("pth", help="a torchvision state dict saved with torch.save")
    p.add_argument("out", help="the .npz file to write (atomically)")
    p.set_defaults(func=cmd_convert)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        if args.traceback:
            raise
        message = " ".join(str(e).split()) or type(e).__name__    # one line
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
