"""``resviz chapter``: the chapter's figures, computed from the layer descriptions."""

from __future__ import annotations

import argparse
import json

from app.chapter import chapter_figures, summary_lines


def cmd_chapter(args: argparse.Namespace) -> int:
    """Print the chapter's figures (JSON with --json, else a short summary)."""
    figs = chapter_figures(args.n)
    if args.json:
        print(json.dumps(figs, indent=2))
    else:
        print("\n".join(summary_lines(figs)))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """The ``chapter`` subcommand."""
    s = sub.add_parser("chapter", help="print the chapter's figures, computed from the layer descriptions")
    s.add_argument("--json", action="store_true", help="every figure as JSON")
    s.add_argument("--n", type=int, default=7, help="input side for the n-4 output-size demo (default: %(default)s)")
    s.set_defaults(func=cmd_chapter)
