"""CUDA against CPU: the same graphs on both execution providers must agree, and how much faster is CUDA.

    python bench/gpu_check.py                        # ResNet-20, -50 and -152 (He-init weights)
    python bench/gpu_check.py --models resnet20 --runs 3
    python bench/gpu_check.py --require-cuda         # exit 2 where onnxruntime has no CUDA provider

For each model the forward with every tap (``running``: logits, each BN input and output, each block's
output) and the backward (``grad-running``: loss, logits and the gradient norms of every block and layer)
run on the CUDA provider and on the CPU provider, through the sessions the server opens
(``ModelRegistry.open_session``: the same options, CUDA's included). Agreement, per output tensor:
``|cuda - cpu| <= 1e-3 * |cpu| + 1e-3 * max|cpu|`` elementwise for logits and taps (activations cross
zero, so the absolute part scales with the tensor's range), ``|cuda - cpu| <= 1e-3 * |cpu|`` for every
gradient norm (positive numbers spanning orders of magnitude: no absolute part). Then the analysis and
the gradient request as the API computes them (``AnalysisService``: decode, graphs, statistics, JSON) are
timed on both, median of ``--runs`` after one warm-up run.

Where onnxruntime has no CUDA provider (``pip install onnxruntime`` has none; the ``gpu`` extra brings it:
docs/deploy.md) this says so and checks the CPU path all the same: CPU with the server's threads against
CPU with one thread. Missing graphs are exported first (needs torch). Table on stdout, JSON in
bench/results/gpu_check.json; exit 1 if any output disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import cpu_count  # noqa: E402
from app.manifest import exported_kinds  # noqa: E402
from app.paths import DEFAULT_MODELS_DIR  # noqa: E402
from app.runtime.gradients import finish_norms  # noqa: E402
from app.runtime.preprocess import prepare  # noqa: E402
from app.runtime.registry import CPU, CUDA, ModelRegistry  # noqa: E402
from app.runtime.samples import sample_bytes  # noqa: E402
from app.runtime.service import AnalysisService  # noqa: E402
from app.specs import SPECS  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RTOL = 1e-3
GRAPHS = ("running", "stats-running", "grad-running")  # what the comparison and the timed requests need
DEFAULT_CHECK_MODELS = "resnet20,resnet50,resnet152"


def cuda_available() -> bool:
    """Whether this onnxruntime has the CUDA execution provider."""
    return CUDA in ort.get_available_providers()


def ensure_exported(models_dir: Path, name: str, weights: str) -> None:
    """Export the graphs this check needs where they are missing (torch: the export extra)."""
    missing = tuple(k for k in GRAPHS if k not in exported_kinds(models_dir, name, weights))
    if not missing:
        return
    try:
        from app.nets.export import export_model
    except ImportError:
        raise SystemExit(
            f"{name}@{weights} lacks {', '.join(missing)} in {models_dir} and torch is not installed here: "
            f"run `resviz export {name} --weights {weights} --graphs {','.join(GRAPHS)}` elsewhere and copy it in"
        ) from None
    print(f"exporting {name}@{weights}: {', '.join(missing)}", flush=True)
    export_model(name, weights, models_dir, kinds=missing, log=False)


def images(name: str) -> list[bytes]:
    """Two built-in sample images of the model's input size."""
    size = SPECS[name].input_size
    names = ("shapes-32", "grating-32") if size == 32 else ("shapes-224", "noise-224")
    return [sample_bytes(n) for n in names]


def agree(candidate: np.ndarray, reference: np.ndarray, relative_to_range: bool) -> tuple[bool, float]:
    """Whether two outputs agree (see the module docstring) and the worst error relative to the tolerance."""
    a, b = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        return False, float("inf")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        same = np.array_equal(np.isfinite(a), np.isfinite(b)) and np.allclose(a[np.isfinite(a)], b[np.isfinite(b)])
        return bool(same), 0.0 if same else float("inf")
    allowed = RTOL * np.abs(b) + (RTOL * float(np.max(np.abs(b))) if relative_to_range and b.size else 0.0)
    allowed = np.maximum(allowed, 1e-30)
    worst = float(np.max(np.abs(a - b) / allowed)) if a.size else 0.0
    return worst <= 1.0, worst


def compare(name: str, weights: str, candidate: ModelRegistry, reference: ModelRegistry) -> list[dict]:
    """Logits and taps (``running``), logits and gradient norms (``grad-running``) on both registries."""
    rows = []
    cm, rm = candidate.get(name, weights), reference.get(name, weights)
    x = np.stack([prepare(b, rm.manifest["preprocessing"])[0] for b in images(name)])
    gates = np.ones(rm.num_blocks, np.float32)
    for kind in ("running", "grad-running"):
        feeds = {"image": x, "gates": gates}
        if kind == "grad-running":
            feeds["target"] = np.full(x.shape[0], -1, np.int64)
        cs, rs = candidate.session(cm, kind), reference.session(rm, kind)
        names = [o.name for o in rs.get_outputs()]
        cout = dict(zip(names, cs.run(names, feeds), strict=True))
        rout = dict(zip(names, rs.run(names, feeds), strict=True))
        checks: list[tuple[str, bool, float]] = []
        if kind == "running":
            for out in names:
                ok, worst = agree(cout[out], rout[out], relative_to_range=True)
                checks.append((out, ok, worst))
        else:
            ok, worst = agree(cout["logits"], rout["logits"], relative_to_range=True)
            checks.append(("logits", ok, worst))
            cn, rn = finish_norms(cout), finish_norms(rout)
            for key in rn:
                ok, worst = agree(np.array(cn[key]), np.array(rn[key]), relative_to_range=False)
                checks.append((key, ok, worst))
        bad = [c for c in checks if not c[1]]
        what = "logits + taps" if kind == "running" else "logits + gradient norms"
        rows.append(
            {
                "model": name,
                "graph": kind,
                "compared": what,
                "outputs": len(checks),
                "disagree": [c[0] for c in bad][:10],
                "worst_vs_tolerance": round(max(c[2] for c in checks), 4),
                "ok": not bad,
            }
        )
    return rows


def time_requests(name: str, weights: str, registry: ModelRegistry, runs: int) -> dict[str, float]:
    """Median milliseconds of the API's analysis and gradient request (one image) on ``registry``."""
    service = AnalysisService(registry, cache_bytes=0, max_batch=8, max_pixels=40_000_000)
    blob = images(name)[0]
    calls = {
        "analysis_ms": lambda: service.analyze(name, [blob], weights=weights, gates="all-on", bn="running"),
        "gradients_ms": lambda: service.gradients(
            name, [blob], weights=weights, gates="all-on", bn="running", target=None
        ),
    }
    out = {}
    for label, call in calls.items():
        call()  # warm-up: sessions opened, algorithms chosen
        seconds = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - t0)
        out[label] = round(1e3 * float(np.median(seconds)), 1)
    return out


def table(agreement: list[dict], timings: list[dict]) -> str:
    """Both results as fixed-width tables."""
    lines = [f"{'model':<10} {'graph':<13} {'compared':<24} {'outputs':>7} {'worst/tol':>9}  agree"]
    for r in agreement:
        flag = "yes" if r["ok"] else f"NO: {', '.join(r['disagree'])}"
        lines.append(
            f"{r['model']:<10} {r['graph']:<13} {r['compared']:<24} {r['outputs']:>7} {r['worst_vs_tolerance']:>9}"
            f"  {flag}"
        )
    lines += ["", f"{'model':<10} {'provider':<22} {'analysis ms':>11} {'gradients ms':>12}"]
    for t in timings:
        lines.append(f"{t['model']:<10} {t['provider']:<22} {t['analysis_ms']:>11} {t['gradients_ms']:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Check agreement, time both providers, print and write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_CHECK_MODELS, help=f"comma list (default {DEFAULT_CHECK_MODELS})")
    p.add_argument("--weights", default="init")
    p.add_argument("--runs", type=int, default=5, help="timed runs per request (median)")
    p.add_argument("--models-dir", default=os.environ.get("RESVIZ_MODELS_DIR", str(DEFAULT_MODELS_DIR)))
    p.add_argument("--require-cuda", action="store_true", help="fail (exit 2) where there is no CUDA provider")
    p.add_argument("--out", default=str(RESULTS / "gpu_check.json"))
    args = p.parse_args(argv)
    models_dir = Path(args.models_dir)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in SPECS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(SPECS)}")
    cores = cpu_count()
    cpu = ModelRegistry(models_dir, CPU, intra_op_threads=cores)
    have_cuda = cuda_available()
    if have_cuda:
        candidate = ModelRegistry(models_dir, f"{CUDA},{CPU}", intra_op_threads=cores)
        label = "CUDA"
        print(f"CUDA: available (onnxruntime {ort.__version__}, device {ort.get_device()})", flush=True)
    else:
        print(
            f"CUDA: not available (onnxruntime {ort.__version__} has {', '.join(ort.get_available_providers())}); "
            "install the gpu extra (docs/deploy.md) on a machine with a GPU. Checking the CPU path: "
            f"CPU with {cores} threads against CPU with 1 thread.",
            flush=True,
        )
        if args.require_cuda:
            return 2
        candidate = ModelRegistry(models_dir, CPU, intra_op_threads=1)
        label = "CPU, 1 thread"
    agreement, timings = [], []
    for name in names:
        ensure_exported(models_dir, name, args.weights)
        agreement += compare(name, args.weights, candidate, cpu)
        timings.append(
            {"model": name, "provider": f"CPU, {cores} threads", **time_requests(name, args.weights, cpu, args.runs)}
        )
        timings.append({"model": name, "provider": label, **time_requests(name, args.weights, candidate, args.runs)})
    print()
    print(table(agreement, timings))
    result = {
        "time": time.strftime("%Y-%m-%d %H:%M"),
        "cuda": have_cuda,
        "onnxruntime": ort.__version__,
        "candidate": label,
        "candidate_providers": candidate.providers,
        "agreement": agreement,
        "timings": timings,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if all(r["ok"] for r in agreement) else 1


if __name__ == "__main__":
    sys.exit(main())
