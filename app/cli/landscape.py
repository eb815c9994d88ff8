"""``resviz landscape``: the loss landscape of a shipped CIFAR network around its weights (Li et al. 2018)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.errors import CLIError


def cmd_landscape(args: argparse.Namespace) -> int:
    """Compute one surface (1-D slice and 2-D grid of loss and accuracy, with its metrics) and write it as JSON."""
    try:
        from app.nets import landscape
    except ModuleNotFoundError as exc:  # a torch-free install serves the shipped surfaces but computes none
        raise CLIError(f"resviz landscape needs torch and onnx (pip install 'resviz[export]'): {exc}") from None

    out = (
        Path(args.out)
        if args.out
        else landscape.DEFAULT_OUT_DIR / f"{landscape.surface_name(args.model, args.weights)}.json"
    )
    try:
        result = landscape.compute(
            args.model,
            args.weights,
            grid=args.grid,
            span=args.span,
            images=args.images,
            seed=args.seed,
            backend=args.backend,
            threads=args.threads,
            compare_repeats=args.compare_repeats,
            progress=not args.quiet,
            out=Path(args.out) if args.out else None,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    landscape.write(result, out)
    m = result["metrics"]
    rise = ", ".join(f"r={r['radius']:g}: {_show(r['mean'])}" for r in m["rise"])
    ratio = m["quadratic_fit"]["eig_ratio"]
    print(
        f"{out}: centre loss {_show(m['centre_loss'])}, mean rise {rise}, {m['local_minima']} local minima, "
        f"eigenvalue ratio {_show(ratio)}; {result['points']} points in {result['wall_time_s']:.1f} s "
        f"({result['backend']['used']})"
    )
    comparison = result["backend"]["comparison"]
    if comparison and not args.quiet:
        sys.stderr.write(
            f"one grid point: torch {comparison['torch_s']:.3f} s, onnxruntime {comparison['onnxruntime_s']:.3f} s\n"
        )
    return 0


def _show(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def add(sub: argparse._SubParsersAction) -> None:
    """The ``landscape`` subcommand."""
    from app.nets.landscape_metrics import DEFAULT_GRID, DEFAULT_IMAGES, DEFAULT_SEED, DEFAULT_SPAN

    s = sub.add_parser("landscape", help="loss landscape of a shipped CIFAR network (needs torch)")
    s.add_argument("model", help="a CIFAR model with shipped weights: resnet20, resnet56, resnet110, ...")
    s.add_argument("--weights", choices=("trained", "plain"), default="trained", help="trained (ResNet) or plain twin")
    s.add_argument(
        "--grid", type=int, default=DEFAULT_GRID, help="points per side of the 2-D grid, odd (default %(default)s)"
    )
    s.add_argument(
        "--span", type=float, default=DEFAULT_SPAN, help="a and b run over [-span, span] (default %(default)s)"
    )
    s.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="training images per point (default %(default)s)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the two directions (default %(default)s)")
    s.add_argument("--out", help="output JSON (default models/landscapes/<model>-<residual|plain>.json)")
    s.add_argument("--backend", choices=("ort", "torch"), default="ort", help="what runs each point (default ort)")
    s.add_argument("--threads", type=int, default=None, help="threads (default: every core torch sees)")
    s.add_argument(
        "--compare-repeats", type=int, default=3, help="timed runs of one point per backend (0: no comparison)"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_landscape)
