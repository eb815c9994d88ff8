"""Command line: resviz serve | models | export | weights | analyze | gradients | images | train | chapter."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from app import arch, chapter
from app.manifest import exported_kinds
from app.paths import (
    DEFAULT_MODELS_DIR,
    GRAPH_FILES,
    SERVING_GRAPHS,
    available_variants,
    default_variant,
)
from app.specs import DEFAULT_MODELS, SPECS


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


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


def _service(models_dir: Path):  # noqa: ANN202
    from app.config import get_settings, graph_threads
    from app.runtime.registry import ModelRegistry
    from app.runtime.service import AnalysisService

    settings = get_settings()
    registry = ModelRegistry(  # as the server runs
        models_dir,
        intra_op_threads=graph_threads(settings)[1],
        wide_layer_macs=settings.wide_layer_macs,
        cores=settings.cpus,
    )
    return AnalysisService(registry, cache_bytes=0, max_batch=64, max_pixels=40_000_000)


def _weights_file_variant(args: argparse.Namespace, models_dir: Path) -> str | None:
    """With --weights FILE, import the file as a variant named after its hash and return that name."""
    if not args.weights:
        return None
    p = Path(args.weights)
    if not (p.exists() or p.suffix in (".pt", ".pth")):
        return args.weights  # a variant name such as "init" or "trained"
    from app.nets.weights import WeightsError, import_weights, sha256_file

    try:
        variant = "file-" + sha256_file(p)[:12] if p.is_file() else "file"
        import_weights(p, args.model, models_dir, variant)
    except WeightsError as exc:
        raise CLIError(str(exc)) from None
    return variant


def _read_images(paths: list[str]) -> list[bytes]:
    blobs = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CLIError(f"{p}: no such file")
        blobs.append(path.read_bytes())
    return blobs


def _cli_request(args: argparse.Namespace):  # noqa: ANN202
    """The service, image bytes and weights variant of an analyze/gradients command."""
    models_dir = Path(args.models_dir)
    if args.model not in SPECS:
        raise CLIError(f"unknown model {args.model!r}; known: {', '.join(SPECS)}")
    blobs = _read_images(args.images)
    variant = _weights_file_variant(args, models_dir)
    return _service(models_dir), blobs, variant


def cmd_analyze(args: argparse.Namespace) -> int:
    """Print the analysis JSON (the same as POST /api/models/NAME/analyze)."""
    from app.runtime.registry import ExportError, UnknownModelError
    from app.runtime.service import RequestError

    service, blobs, variant = _cli_request(args)
    try:
        payload = service.analyze(
            args.model, blobs, weights=variant, gates=args.gates, bn=args.bn, k=args.k, feature_maps=args.feature_maps
        )
    except (RequestError, UnknownModelError, ExportError) as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        sys.stdout.write(payload.body.decode() + "\n")
    else:
        result = json.loads(payload.body)
        for i, p in enumerate(result["prediction"]):
            top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p["top"])
            print(f"{args.images[i]}: {top}")
        for b in result["blocks"]:
            print(
                f"  {b['id']:<10} gate {b['gate']:.2f}  |x| {_num(b['norm_x'], 10)}  "
                f"|F(x)| {_num(b['norm_f'], 10)}  ratio {_num(b['ratio'])}"
            )
        for note in result.get("notes", []):
            print(f"note: {note}")
    return 0


def _num(value: float | None, width: int = 0) -> str:
    """A number with three decimals, or 'n/a' for a value the JSON sends as null (not finite)."""
    return f"{value:{width}.3f}" if value is not None else "n/a".rjust(width)


def cmd_gradients(args: argparse.Namespace) -> int:
    """Print gradient norms (the same JSON as POST /api/models/NAME/gradients)."""
    from app.runtime.registry import ExportError, UnknownModelError
    from app.runtime.service import RequestError

    service, blobs, variant = _cli_request(args)
    try:
        if args.lesion:
            payload = service.lesion(args.model, blobs[0], weights=variant, gates=args.gates, target=args.target)
        else:
            payload = service.gradients(
                args.model, blobs, weights=variant, gates=args.gates, bn=args.bn, target=args.target
            )
    except (RequestError, UnknownModelError, ExportError) as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        sys.stdout.write(payload.body.decode() + "\n")
        return 0
    result = json.loads(payload.body)
    if args.lesion:
        print(f"target {result['target']} ({result['target_label']}), p = {result['base_probability']:.4f}")
        for b in result["blocks"]:
            print(f"  without F of {b['id']:<10} p = {b['probability']:.4f}  change {b['delta']:+.4f}")
        return 0
    print(f"loss {result['loss']:.4f}, target {result['target']} ({result['target_source']})")
    for b in result["blocks"]:
        print(f"  {b['id']:<10} gate {b['gate']:.2f}  |dL/dx| in {b['grad_norm_in']:.3e}  out {b['grad_norm_out']:.3e}")
    s = result["summary"]
    print(f"first layer {s['first_layer']} |dL/dW| {s['first_grad']:.3e}; last {s['last_layer']} {s['last_grad']:.3e}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a CIFAR model on the generated set (or CIFAR-10), then export it with its new weights."""
    from app.nets.export import export_model
    from app.nets.train import main as train_main
    from app.nets.weights import WeightsError, import_weights
    from app.paths import SHIPPED_WEIGHTS_DIR

    rc = train_main(args.train_args)
    if rc != 0:
        return rc
    model = args.train_args[0]
    plain = "--plain" in args.train_args
    out = Path(args.train_args[args.train_args.index("--out") + 1]) if "--out" in args.train_args else None
    models_dir = Path(args.models_dir)
    if out is None or out.resolve() == SHIPPED_WEIGHTS_DIR.resolve():
        variant = "plain" if plain else "trained"
    else:  # weights written elsewhere: register them as their own variant
        variant = f"{'plain' if plain else 'residual'}-run"
        try:
            import_weights(out / f"{model}-{'plain' if plain else 'residual'}.pt", model, models_dir, variant)
        except WeightsError as exc:
            raise CLIError(str(exc)) from None
    export_model(model, variant, models_dir, kinds=SERVING_GRAPHS)
    print(f"exported {model} with weights {variant!r}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the web app at once; its worker exports missing default models in the background."""
    from app.config import Settings, cpu_count
    from app.main import create_app
    from app.serving import run

    if args.engine == "ray":
        return _serve_ray(args)
    if args.workers < 1:
        raise CLIError("--workers must be at least 1")
    if args.workers > 1:  # each worker process builds its app from the environment: hand the settings over there
        os.environ["RESVIZ_MODELS_DIR"] = str(args.models_dir)
        cores = Settings().cpus or cpu_count()  # RESVIZ_CPUS or the affinity mask: split, not shared
        os.environ["RESVIZ_CPUS"] = str(max(1, cores // args.workers))
        print(f"resviz: http://{args.host}:{args.port} ({args.workers} uvicorn workers)", flush=True)
        run(None, args.host, args.port, workers=args.workers)
        return 0
    settings = Settings(models_dir=Path(args.models_dir))
    print(f"resviz: http://{args.host}:{args.port}", flush=True)
    run(create_app(settings), args.host, args.port, header_timeout_s=settings.header_timeout_s)
    return 0


def _serve_ray(args: argparse.Namespace) -> int:
    """``serve --engine ray``: a local Ray with ``--replicas`` replicas of the app (the cluster extra)."""
    from app.config import cpu_count

    try:
        from app.cluster import ClusterOptions, serve_locally
    except ImportError as exc:
        raise CLIError(f"--engine ray needs the cluster extra: pip install 'resviz[cluster]' ({exc})") from None
    cpus = args.replica_cpus or max(1, cpu_count() // max(1, args.replicas))
    try:
        options = ClusterOptions(
            replicas=args.replicas,
            max_replicas=args.max_replicas,
            replica_cpus=cpus,
            settings={"models_dir": str(args.models_dir)},
        )

        def ready(url: str) -> None:
            print(f"resviz: {url} (Ray Serve, {args.replicas} replicas x {cpus} CPUs)", flush=True)

        serve_locally(options, args.host, args.port, on_ready=ready)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    """List, pin, unpin or delete stored images, or show the store's statistics (the operator's side)."""
    from app.config import Settings
    from app.runtime.store import ImageStore

    settings = Settings()
    store = ImageStore(Path(args.data_dir) if args.data_dir else settings.data_dir, settings.store_max_bytes)
    if args.action == "list":
        rows = store.list()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['id']}  {r['bytes']:>10,}  {'pinned' if r['pinned'] else '      '}  {r['name']}")
            print(f"{len(rows)} images, {store.used_bytes():,} bytes")
        return 0
    if args.action == "stats":
        print(json.dumps(store.stats(), indent=2))
        return 0
    try:
        if args.action == "pin":
            store.pin(args.id)
        elif args.action == "unpin":
            store.unpin(args.id)
        else:
            store.delete(args.id)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    done = {"pin": "pinned", "unpin": "unpinned", "delete": "deleted"}[args.action]
    print(f"{done} {args.id}")
    return 0


def _request_args(s: argparse.ArgumentParser) -> None:
    """The arguments ``analyze`` and ``gradients`` share: images, model, weights, gates, BN mode."""
    s.add_argument("images", nargs="+")
    s.add_argument("--model", required=True)
    s.add_argument("--weights", help="a weights variant name, or a state-dict file")
    s.add_argument("--gates", default="all-on")
    s.add_argument("--bn", default="running")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="resviz", description="Interactive visualizer of residual networks.")
    p.add_argument(
        "--models-dir",
        default=os.environ.get("RESVIZ_MODELS_DIR", str(DEFAULT_MODELS_DIR)),
        help="exported graphs and manifests (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn", help="uvicorn, or Ray Serve replicas")
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (the cores split between them)")
    s.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (--engine ray)")
    s.add_argument("--max-replicas", type=int, default=0, help="autoscale up to this many replicas (--engine ray)")
    s.add_argument("--replica-cpus", type=int, default=0, help="CPUs per replica (default: the cores split evenly)")
    s.set_defaults(func=cmd_serve)

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

    s = sub.add_parser("analyze", help="analyse images, printing the API's JSON")
    _request_args(s)
    s.add_argument("--k", type=int, default=8, help="feature-map channels per layer")
    s.add_argument("--feature-maps", default="blocks", choices=["blocks", "all", "none"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("gradients", help="gradient norms for an image, printing the API's JSON")
    _request_args(s)
    s.add_argument("--target", type=int, default=None, help="class index (default: the predicted top-1)")
    s.add_argument("--lesion", action="store_true", help="remove each residual branch in turn instead")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_gradients)

    chapter.add_cli(sub)

    s = sub.add_parser("train", help="train a CIFAR ResNet or its plain twin, then export it", add_help=False)
    s.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="MODEL [--plain] [--steps N] [--data generated|cifar10:DIR] [--seed S] [--out DIR]",
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("images", help="manage stored images")
    s.add_argument("--data-dir", default=None)
    isub = s.add_subparsers(dest="action", required=True)
    i = isub.add_parser("list")
    i.add_argument("--json", action="store_true")
    for action in ("delete", "pin", "unpin"):
        i = isub.add_parser(action)
        i.add_argument("id")
    isub.add_parser("stats")
    s.set_defaults(func=cmd_images)
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


if __name__ == "__main__":
    sys.exit(main())
