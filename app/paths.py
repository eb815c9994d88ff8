"""Where graphs, manifests and weights live on disk (shared by the build and serve sides)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO / "models"
SHIPPED_WEIGHTS_DIR = DEFAULT_MODELS_DIR / "weights"
# Bumped whenever the exported graphs or manifest change shape: older exports are redone.
EXPORT_FORMAT = 9
VARIANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

# Graph kinds exported per (model, weights): forward with taps in both BN modes, forward with
# the taps reduced in-graph to what an analysis needs (both BN modes), the bare forward
# (logits only, for benchmarks), the hand-written backward in both BN modes, and the lesion
# forward (per-image factors on every residual branch).
GRAPH_FILES = {
    "running": "running.onnx",
    "batch": "batch.onnx",
    "stats-running": "stats-running.onnx",
    "stats-batch": "stats-batch.onnx",
    "bare": "bare.onnx",
    "grad-running": "grad-running.onnx",
    "grad-batch": "grad-batch.onnx",
    "lesion": "lesion.onnx",
}

# What an export writes by default and a server needs: everything except ``bare`` (benchmarks).
SERVING_GRAPHS = ("running", "batch", "stats-running", "stats-batch", "grad-running", "grad-batch", "lesion")

# The stats graph holds ~8 reduction nodes per tap: for ResNet-1202 (3,600 taps) its export
# takes many minutes, so models with more taps are analysed through the tap graph instead.
STATS_GRAPH_MAX_TAPS = 1_000


def model_dir(models_dir: Path, name: str, variant: str) -> Path:
    """Folder holding the graphs and manifest of one model with one set of weights."""
    return models_dir / name / variant


def manifest_path(models_dir: Path, name: str, variant: str) -> Path:
    """Path of the manifest of one model with one set of weights."""
    return model_dir(models_dir, name, variant) / "manifest.json"


def shipped_weights(name: str, variant: str) -> Path | None:
    """The committed state dict for a variant ("trained" or "plain"), if the repo ships one."""
    stem = {"trained": "residual", "plain": "plain"}.get(variant)
    if stem is None:
        return None
    path = SHIPPED_WEIGHTS_DIR / f"{name}-{stem}.pt"
    return path if path.exists() else None


def user_weights(models_dir: Path, name: str, variant: str) -> Path:
    """Path of an imported or fetched state dict for a model and variant."""
    return models_dir / "imported" / f"{name}@{variant}.pt"


def available_variants(models_dir: Path, name: str) -> list[str]:
    """Weight variants one can export for a model, preferred default first."""
    out = [v for v in ("trained", "plain") if shipped_weights(name, v)]
    imported = sorted((models_dir / "imported").glob(f"{name}@*.pt"))
    out += [p.stem.split("@", 1)[1] for p in imported]
    out.append("init")
    # ImageNet weights beat He-init as a default; a CIFAR model's trained weights come first.
    if "imagenet" in out:
        out.remove("imagenet")
        out.insert(0, "imagenet")
    return out


def default_variant(models_dir: Path, name: str) -> str:
    """The weights a model uses when a request names none."""
    return available_variants(models_dir, name)[0]


def _read_manifest(models_dir: Path, name: str, variant: str) -> dict | None:
    try:
        manifest = json.loads(manifest_path(models_dir, name, variant).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == EXPORT_FORMAT else None


def manifest_current(models_dir: Path, name: str, variant: str) -> bool:
    """Whether a manifest in the current export format exists for the model."""
    return _read_manifest(models_dir, name, variant) is not None


def exported_kinds(models_dir: Path, name: str, variant: str) -> set[str]:
    """Graph kinds exported for a model in the current export format (empty when stale or missing)."""
    manifest = _read_manifest(models_dir, name, variant)
    if manifest is None:
        return set()
    d = model_dir(models_dir, name, variant)
    return {k for k, v in manifest.get("graphs", {}).items() if (d / v["file"]).exists()}
