"""``resviz models``, ``resviz export`` and ``resviz weights``: the family, its exported graphs, its weights."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app import arch
from app.cli.errors import CLIError
from app.manifest import exported_kinds
from app.paths import GRAPH_FILES, SERVING_GRAPHS, available_variants, default_variant
from app.specs import DEFAULT_MODELS, SPECS


def _progress(i: int, n: int, label: str, start: float) -> None:
    width = 28
    done = int(width * i / n) if n else width
    elapsed = time.perf_counter() - start
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {elapsed:6.1f}s {label:<40}")
    sys.stderr.flush()
    if i == n:
        sys.stderr.write("\n")


def cmd_models(args: argparse.Namespace) -> int:
    """List every model with family, depth, blocks, params, MACs and weights."""
    models_dir = Path(args.models_dir)
    rows = []
    for spec in SPECS.values():
        row = arch.summary(spec)
        row["weights"] = available_variants(models_dir, spec.name)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<11} {'family':<8} {'depth':>5} {'blocks':>6} {'params':>12} {'GMACs':>7}  weights")
    for r in rows:
        print(
            f"{r['name']:<11} {r['family']:<8} {r['depth']:>5} {r['blocks']:>6} {r['params']:>12,} "
            f"{r['macs'] / 1e9:>7.3f}  {', '.join(r['weights'])}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export models to ONNX graphs and manifests (needs the ``export`` extra: torch)."""
    from app.nets.export import export_model

    models_dir = Path(args.models_dir)
    if args.all:
        names = list(SPECS)
    elif args.defaults:
        names = list(DEFAULT_MODELS)
    else:
        names = args.names
    if not names:
        raise CLIError("name a model, or use --defaults or --all")
    for n in names:
        if n not in SPECS:
            raise CLIError(f"unknown model {n!r}; known: {', '.join(SPECS)}")
    kinds = tuple(args.graphs.split(",")) if args.graphs else SERVING_GRAPHS
    for k in kinds:
        if k not in GRAPH_FILES:
            raise CLIError(f"unknown graph {k!r}; choose from {', '.join(GRAPH_FILES)}")
    start = time.perf_counter()
    for i, name in enumerate(names):
        variant = args.weights or default_variant(models_dir, name)
        if variant not in available_variants(models_dir, name):
            raise CLIError(
                f"no weights {variant!r} for {name}; available: {', '.join(available_variants(models_dir, name))}"
            )
        todo = kinds
        if args.missing_only:
            have = exported_kinds(models_dir, name, variant)
            todo = tuple(k for k in kinds if k not in have)
            if not todo:
                _progress(i + 1, len(names), f"{name}@{variant} (up to date)", start)
                continue
        if args.progress:
            _progress_line({"event": "start", "model": name, "weights": variant, "graphs": list(todo)})
            export_model(name, variant, models_dir, kinds=todo, log=False, progress=_graph_progress(name, variant))
            continue
        _progress(i, len(names), f"{name}@{variant}", start)
        export_model(name, variant, models_dir, kinds=todo, log=not args.quiet)
        _progress(i + 1, len(names), f"{name}@{variant}", start)
    return 0


def _progress_line(event: dict) -> None:
    """One JSON line on stdout (``export --progress``: what the server's export worker reads)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _graph_progress(name: str, variant: str):  # noqa: ANN202
    def report(kind: str, done: int, total: int, seconds: float) -> None:
        _progress_line(
            {
                "event": "graph",
                "model": name,
                "weights": variant,
                "graph": kind,
                "done": done,
                "total": total,
                "seconds": round(seconds, 2),
            }
        )

    return report


def cmd_weights(args: argparse.Namespace) -> int:
    """Import a torchvision-format state dict, or fetch torchvision's ImageNet weights; then export."""
    from app.nets.export import export_model
    from app.nets.weights import WeightsError, fetch_weights, import_weights

    models_dir = Path(args.models_dir)
    try:
        if args.action == "import":
            if args.model not in SPECS:
                raise CLIError(f"unknown model {args.model!r}; known: {', '.join(SPECS)}")
            dest = import_weights(Path(args.file), args.model, models_dir, args.variant)
            variant = args.variant
            name = args.model
        else:
            dest = fetch_weights(args.name, models_dir, base_url=args.base_url)
            variant, name = "imagenet", args.name
    except WeightsError as exc:
        raise CLIError(str(exc)) from None
    print(f"stored {dest}")
    if not args.no_export:
        export_model(name, variant, models_dir, kinds=SERVING_GRAPHS)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """The ``models``, ``export`` and ``weights`` subcommands."""
    s = sub.add_parser("models", help="list the models")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("export", help="export models to ONNX (needs torch)")
    s.add_argument("names", nargs="*")
    s.add_argument("--all", action="store_true", help="every model of the family")
    s.add_argument("--defaults", action="store_true", help=f"the default models: {', '.join(DEFAULT_MODELS)}")
    s.add_argument("--weights", help="weights variant (default: the model's default)")
    s.add_argument("--graphs", help=f"comma list of graphs (default: {','.join(SERVING_GRAPHS)})")
    s.add_argument("--missing-only", action="store_true", help="skip graphs that already exist")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--progress", action="store_true", help="one JSON line per graph on stdout (for the server)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("weights", help="import or fetch state dicts")
    wsub = s.add_subparsers(dest="action", required=True)
    w = wsub.add_parser("import", help="import a torchvision-format state dict")
    w.add_argument("file")
    w.add_argument("--model", required=True)
    w.add_argument("--as", dest="variant", default="imported", help="name of the weights (default: imported)")
    w.add_argument("--no-export", action="store_true")
    w = wsub.add_parser("fetch", help="download torchvision's ImageNet weights")
    w.add_argument("name")
    w.add_argument("--base-url", default=None)
    w.add_argument("--no-export", action="store_true")
    s.set_defaults(func=cmd_weights)
