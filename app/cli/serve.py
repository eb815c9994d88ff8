"""``resviz serve``, ``resviz train`` and ``resviz images``: run the app, train a CIFAR net, manage stored images."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from app.cli.errors import CLIError
from app.paths import SERVING_GRAPHS


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


def cmd_train(args: argparse.Namespace) -> int:
    """Train a CIFAR model on the generated set (or CIFAR-10), then export it with its new weights."""
    from app.nets.export import export_model
    from app.nets.train import main as train_main
    from app.nets.weights import WeightsError, import_weights
    from app.paths import SHIPPED_WEIGHTS_DIR

    rc = train_main(args.train_args)
    if rc != 0:
        return rc
    if "--no-bn" in args.train_args or "--no-weights" in args.train_args:
        print("no weights to export (a --no-bn or --no-weights run writes its training log only)")
        return 0
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


def add(sub: argparse._SubParsersAction) -> None:
    """The ``serve``, ``train`` and ``images`` subcommands."""
    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn", help="uvicorn, or Ray Serve replicas")
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (the cores split between them)")
    s.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (--engine ray)")
    s.add_argument("--max-replicas", type=int, default=0, help="autoscale up to this many replicas (--engine ray)")
    s.add_argument("--replica-cpus", type=int, default=0, help="CPUs per replica (default: the cores split evenly)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("train", help="train a CIFAR ResNet or its plain twin, then export it", add_help=False)
    s.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="MODEL [--plain] [--no-bn] [--steps N] [--data generated|cifar10:DIR] [--seed S] [--out DIR]",
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
