"""Precompute the depth sweep for the built-in probe image: models/weights/depth-sweep.json.

Runs ``app.runtime.gradients.sweep_row`` (the ONNX gradient graphs, no autograd) for CIFAR
ResNet-20/32/44/56/110, residual and plain, with the trained and the He-init weights and BN on
running and batch statistics, and records each row with the sha256 of the weights it used. The
server answers the sweep for the probe image from this file while the shipped weights are
unchanged (and computes it otherwise). ``make weights`` re-creates it after training.

    .venv/bin/python scripts/depth_sweep.py [--models-dir models]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.paths import DEFAULT_MODELS_DIR, EXPORT_FORMAT  # noqa: E402
from app.runtime.gradients import SWEEP_DEPTHS, sweep_row  # noqa: E402
from app.runtime.preprocess import prepare, sha256_bytes  # noqa: E402
from app.runtime.registry import ModelRegistry  # noqa: E402
from app.runtime.samples import probe_png  # noqa: E402
from app.runtime.sweeps import PRECOMPUTED_PATH, entry_key, with_fingerprints  # noqa: E402


def images(model, blobs: list[bytes]) -> np.ndarray:  # noqa: ANN001
    """Preprocess image bytes as the server does."""
    return np.stack([prepare(b, model.manifest["preprocessing"])[0] for b in blobs])


def main() -> int:
    """Compute every sweep and write the file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    ap.add_argument("--out", type=Path, default=PRECOMPUTED_PATH)
    args = ap.parse_args()
    reg = ModelRegistry(Path(args.models_dir))
    blob = probe_png()
    sweeps = {}
    for weights in ("trained", "init"):
        for bn in ("running", "batch"):
            rows = []
            for depth in SWEEP_DEPTHS:
                t0 = time.perf_counter()
                row = with_fingerprints(sweep_row(reg, depth, blob, weights, bn, images))
                rows.append(row)
                print(
                    f"{weights:<8} {bn:<8} resnet{depth:<4} residual {row['residual']['first_grad']} "
                    f"plain {row['plain']['first_grad']} ({time.perf_counter() - t0:.1f} s)"
                    + (f"  [{row['note']}]" if row["note"] else ""),
                    flush=True,
                )
            sweeps[entry_key(weights, bn)] = rows
    doc = {
        "about": "the depth sweep for app.runtime.samples.probe_png(), made by scripts/depth_sweep.py",
        "format": EXPORT_FORMAT,
        "image_sha256": sha256_bytes(blob),
        "sweeps": sweeps,
    }
    args.out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
