"""Command line: resviz serve, models, export, weights, analyze, gradients, explain, images, train, chapter, landscape.

Each subcommand lives in one module of this package (``models``, ``analysis``, ``serve``, ``chapter``, ``landscape``),
which adds its parser with ``add(sub)``; ``main`` parses and runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.cli import analysis, chapter, landscape, models, serve
from app.cli.errors import CLIError
from app.paths import DEFAULT_MODELS_DIR

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="resviz", description="Interactive visualizer of residual networks.")
    p.add_argument(
        "--models-dir",
        default=os.environ.get("RESVIZ_MODELS_DIR", str(DEFAULT_MODELS_DIR)),
        help="exported graphs and manifests (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in (serve, models, analysis, chapter, landscape):
        module.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``resviz`` command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "train" in argv:  # everything after "train" belongs to the trainer (its own --help included)
        i = argv.index("train")
        args = parser.parse_args(argv[: i + 1])
        args.train_args = argv[i + 1 :]
    else:
        args = parser.parse_args(argv)
    if getattr(args, "base_url", "unset") is None:
        from app.nets.weights import TORCHVISION_BASE_URL

        args.base_url = TORCHVISION_BASE_URL
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"resviz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
