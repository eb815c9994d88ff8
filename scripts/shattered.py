"""Shattered gradients of the shipped CIFAR nets: models/weights/shattered.json (the degradation lab's study).

For ResNet-20/56/110, residual (every gate 1) and plain (every gate 0), with the He-init weights and
trained (the trained plain twin is the `plain` weights), this runs ``app.runtime.shattered`` (the
explain graph, P = 256 points in batches, BN on running statistics) on one fixed generated
image and class: the first held-out image of class "disc" of ``app.nets.data.test_set(200)`` (the
built-in sample ``set-disc``). It writes every gradient trace, autocorrelation, periodogram and
slope, rounded, in one small JSON with the command that made it, the export format and the graph
file. Missing graphs are exported first, with the export worker's command.

    .venv/bin/python scripts/shattered.py [--models-dir models] [--out models/weights/shattered.json]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from app.manifest import exported_kinds  # noqa: E402
from app.paths import DEFAULT_MODELS_DIR, EXPORT_FORMAT, GRAPH_FILES  # noqa: E402
from app.runtime import shattered as shatter  # noqa: E402
from app.runtime.export_jobs import default_command  # noqa: E402
from app.runtime.preprocess import prepare, sha256_bytes  # noqa: E402
from app.runtime.registry import ModelRegistry  # noqa: E402
from app.runtime.samples import sample_bytes  # noqa: E402
from app.runtime.stats import compact  # noqa: E402
from app.runtime.sweeps import weights_fingerprint  # noqa: E402

DEPTHS = (20, 56, 110)
CLASS = "disc"
SAMPLE = "set-disc"  # static/samples/set-disc.png: the same image (scripts/make_samples.py)
DIGITS = 4  # significant digits kept in the file


def ensure(models_dir: Path, name: str, variant: str, kinds: tuple[str, ...] = (shatter.KIND,)) -> None:
    """Export missing graphs in a subprocess, with the server's export worker's command."""
    missing = [k for k in kinds if k not in exported_kinds(models_dir, name, variant)]
    if missing:
        cmd = default_command(models_dir)(name, variant, missing)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def the_image() -> tuple[bytes, dict]:
    """PNG bytes of the first held-out image of CLASS, and where it comes from."""
    from app.nets.data import CLASSES, test_set

    images, labels = test_set(200)
    label = CLASSES.index(CLASS)
    i = int(np.flatnonzero(labels == label)[0])
    shipped = sample_bytes(SAMPLE)
    same = np.array_equal(np.asarray(Image.open(io.BytesIO(shipped)).convert("RGB")), images[i])
    if same:
        png = shipped  # its id is the sample's: POST /api/models/resnet20/shattered?image_id=<sha256> reproduces it
    else:
        buf = io.BytesIO()
        Image.fromarray(images[i], "RGB").save(buf, format="PNG")
        png = buf.getvalue()
    about = {
        "source": f"app.nets.data.test_set(200) (seed 12345), image {i}: the first of class {CLASS!r}",
        "sample": SAMPLE if same else None,
        "sha256": sha256_bytes(png),
        "class": label,
        "label": CLASS,
    }
    return png, about


def weights_note(name: str, variant: str, models_dir: Path, finite: bool) -> list[str]:
    """A note when the shipped state dict holds BN running statistics that are not finite."""
    if variant == "init":
        return []
    import torch

    from app.nets.weights import load_variant

    state = load_variant(name, variant, models_dir)[0] or {}
    bad = {k: int((~torch.isfinite(v.float())).sum()) for k, v in state.items() if "running_" in k}
    bad = {k: n for k, n in bad.items() if n}
    if not bad:
        return []
    what = f"{sum(bad.values())} BN running statistics of the shipped {variant} weights are infinite (float16 overflow)"
    if finite:
        return [f"{what}: those channels' BN outputs are constant, the rest of the network is intact"]
    return [f"{what}: its forward pass is not a number, so there is no gradient to measure"]


def rounded(values: object) -> object:
    """Numbers rounded to DIGITS significant digits, NaN and infinity as None (JSON has neither)."""
    if values is None:
        return None
    if isinstance(values, float | int | np.floating | np.integer):
        v = float(values)
        return float(f"{v:.{DIGITS}g}") if math.isfinite(v) else None
    out = compact(np.asarray(values, np.float64), DIGITS)
    return [v if math.isfinite(v) else None for v in out]


def signal(report: dict) -> dict:
    """One signal of the runtime's answer, rounded for the file."""
    spec = report["spectrum"]
    fit = spec.get("fit")
    return {
        "trace": rounded(report["trace"]),
        "mean": rounded(report["mean"]),
        "std": rounded(report["std"]),
        "autocorr": rounded(report["autocorr"]),
        "lag1": rounded(report["lag1"]),
        "half_lag": report["half_lag"],
        "spectrum": {
            "power": rounded(spec["power"]),
            "slope": rounded(spec["slope"]),
            "intercept": rounded(spec["intercept"]),
            "r": rounded(spec["r"]),
            "used": spec["used"],
            "fit": [rounded(p) for p in fit] if fit else None,
        },
    }


def main() -> int:
    """Compute every run and write the file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--out", type=Path, default=shatter.SHIPPED_PATH)
    ap.add_argument("--points", type=int, default=shatter.POINTS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    models_dir = args.models_dir.resolve()
    reg = ModelRegistry(models_dir, intra_op_threads=1)
    png, about = the_image()
    runs, doc = [], None
    for depth in DEPTHS:
        name = f"resnet{depth}"
        for weights in ("init", "trained"):
            for net in ("residual", "plain"):
                variant = "init" if weights == "init" else ("trained" if net == "residual" else "plain")
                ensure(models_dir, name, variant)
                model = reg.get(name, variant)
                x = prepare(png, model.manifest["preprocessing"])[0][None]
                gates = np.full(model.num_blocks, 1.0 if net == "residual" else 0.0, np.float32)
                t0 = time.perf_counter()
                out = shatter.shattered(reg, model, x, gates, about["class"], points=args.points, seed=args.seed)
                doc = doc or out
                finite = bool(np.all(np.isfinite(out["score"])))
                notes = weights_note(name, variant, models_dir, finite) + out["notes"]
                runs.append(
                    {
                        "depth": depth,
                        "net": net,
                        "weights": weights,
                        "variant": variant,
                        "sha256": weights_fingerprint(name, variant),
                        "target_label": out["target_label"],
                        "top1_fraction": rounded(out["top1_fraction"]),
                        "direction": signal(out["direction"]),
                        "pixel_gradient": signal(out["pixel_gradient"]),
                        "notes": notes,
                    }
                )
                slope = out["direction"]["spectrum"]["slope"]
                print(
                    f"{name:<10} {weights:<8} {net:<9} slope {slope if slope is None else round(slope, 3)} "
                    f"lag1 {rounded(out['direction']['lag1'])} ({time.perf_counter() - t0:.1f} s)"
                    + (f"  [{notes[0]}]" if notes else ""),
                    flush=True,
                )
    assert doc is not None
    result = {
        "about": "shattered gradients (Balduzzi et al. 2017) of the shipped CIFAR nets, made by scripts/shattered.py",
        "command": " ".join(["python", "scripts/shattered.py", *sys.argv[1:]]),
        "format": EXPORT_FORMAT,
        "graph": GRAPH_FILES[shatter.KIND],
        "bn": "running",
        "image": about,
        "points": doc["points"],
        "seed": doc["seed"],
        "span": rounded(doc["span"]),
        "dimension": doc["dimension"],
        "pixel": doc["pixel"],
        "t": rounded(doc["t"]),
        "lags": doc["lags"].tolist(),
        "freq": doc["freq"].tolist(),
        "reference": {
            k: v if k == "seeds" else {m: rounded(x) for m, x in v.items()} for k, v in doc["reference"].items()
        },
        "runs": runs,
    }
    text = json.dumps(result, separators=(",", ":"), allow_nan=False)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} ({len(text) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
