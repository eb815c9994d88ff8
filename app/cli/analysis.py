"""``resviz analyze``, ``resviz gradients`` and ``resviz explain``: the API's JSON for images on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.errors import CLIError
from app.specs import CAM_METHODS, INPUT_METHODS, SPECS


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


def cmd_explain(args: argparse.Namespace) -> int:
    """Print a class activation or saliency map (the same JSON as POST /api/models/NAME/explain)."""
    from app.runtime.registry import ExportError, UnknownModelError
    from app.runtime.service import RequestError

    service, blobs, variant = _cli_request(args)
    if len(blobs) != 1:
        raise CLIError("explain takes exactly one image")
    try:
        payload = service.explain(
            args.model,
            blobs[0],
            weights=variant,
            gates=args.gates,
            bn=args.bn,
            target=args.target,
            method=args.method,
            layer=args.layer,
            overlays=args.overlays == "true",
            **{k: v for k, v in (("samples", args.samples), ("steps", args.steps)) if v is not None},
        )
    except (RequestError, UnknownModelError, ExportError) as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        sys.stdout.write(payload.body.decode() + "\n")
        return 0
    result = json.loads(payload.body)
    p = _num(result["probability"])
    print(
        f"{result['method']} for class {result['target']} ({result['target_label']}, {result['target_source']}), p {p}"
    )
    for entry in result["layers"]:
        lo, hi = entry["range"]
        h, w = entry["map_shape"]
        print(f"  {entry['layer']:<10} {h:>4} x {w:<4} range {_num(lo)} .. {_num(hi)}")
    if "completeness" in result["params"]:
        c = result["params"]["completeness"]
        total, diff = _num(c["attribution_sum"]), _num(c["score_difference"])
        print(f"completeness: sum of attributions {total}, S(x) - S(baseline) {diff}")
    for note in result.get("notes", []):
        print(f"note: {note}")
    return 0


def _request_args(s: argparse.ArgumentParser) -> None:
    """The arguments ``analyze`` and ``gradients`` share: images, model, weights, gates, BN mode."""
    s.add_argument("images", nargs="+")
    s.add_argument("--model", required=True)
    s.add_argument("--weights", help="a weights variant name, or a state-dict file")
    s.add_argument("--gates", default="all-on")
    s.add_argument("--bn", default="running")


def add(sub: argparse._SubParsersAction) -> None:
    """The ``analyze``, ``gradients`` and ``explain`` subcommands."""
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

    s = sub.add_parser("explain", help="a class activation or saliency map of an image, printing the API's JSON")
    _request_args(s)
    methods = ", ".join(CAM_METHODS + INPUT_METHODS)
    s.add_argument("--method", default=CAM_METHODS[0], help=f"one of {methods} (default: %(default)s)")
    s.add_argument(
        "--layer", default=None, help="'all', the stem's tap or a block such as layer3.8 (default: the last)"
    )
    s.add_argument("--target", type=int, default=None, help="class index (default: the predicted top-1)")
    s.add_argument("--samples", type=int, default=None, help="SmoothGrad's noisy copies (default 16)")
    s.add_argument("--steps", type=int, default=None, help="integrated gradients' steps (default 32)")
    s.add_argument("--overlays", choices=["true", "false"], default="true", help="per-layer overlays with --layer all")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_explain)
