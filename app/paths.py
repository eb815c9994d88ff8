"""Where graphs, manifests and weights live on disk (shared by the build and serve sides)."""

from __future__ import annotations

import os
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # app/
REPO = PACKAGE.parent  # the repository in a checkout or an editable install; site-packages in a wheel install
# A checkout (or an editable install of one) has pyproject.toml beside app/; a wheel install does not.
SOURCE_CHECKOUT = (REPO / "pyproject.toml").is_file()


def shipped_path(rel: str) -> Path:
    """A folder shipped with resviz: inside the package in a wheel (app/static), beside it in a checkout (static/)."""
    inside = PACKAGE / rel
    return inside if inside.exists() else REPO / rel


def user_data_home() -> Path:
    """``$XDG_DATA_HOME/resviz`` (``~/.local/share/resviz``): where a wheel install keeps what it writes."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "resviz"


STATIC_DIR = shipped_path("static")  # pages' scripts, styles and the sample images
TEMPLATES_DIR = shipped_path("templates")  # Jinja2 pages
SAMPLES_DIR = STATIC_DIR / "samples"
SHIPPED_WEIGHTS_DIR = shipped_path("models/weights")  # committed state dicts, training logs, the depth sweep
SHIPPED_LANDSCAPES_DIR = shipped_path("models/landscapes")  # the loss landscapes of scripts/landscapes.sh
# Exported graphs (a build cache): models/ of the checkout, or the user's data folder for a wheel install.
DEFAULT_MODELS_DIR = REPO / "models" if SOURCE_CHECKOUT else user_data_home() / "models"
# Bumped when the manifest or every graph changes shape: older exports are redone (one kind: GRAPH_VERSIONS).
EXPORT_FORMAT = 11
# A model directory's shared weights (``weights-<token>.bin``): every big tensor of its graphs, once.
WEIGHTS_FILE_GLOB = "weights-*.bin"
VARIANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

# Graph kinds exported per (model, weights): forward with taps in both BN modes, forward with
# the taps reduced in-graph to what an analysis needs (both BN modes), the bare forward
# (logits only, for benchmarks), the hand-written backward in both BN modes, the lesion
# forward (per-image factors on every residual branch), and the explain graph in both BN modes
# (class activation maps at every layer and the input gradient of one class score).
GRAPH_FILES = {
    "running": "running.onnx",
    "batch": "batch.onnx",
    "stats-running": "stats-running.onnx",
    "stats-batch": "stats-batch.onnx",
    "bare": "bare.onnx",
    "grad-running": "grad-running.onnx",
    "grad-batch": "grad-batch.onnx",
    "lesion": "lesion.onnx",
    "explain-running": "explain-running.onnx",
    "explain-batch": "explain-batch.onnx",
}

# The version of each kind's graph contract (inputs, outputs and what they mean), 1 where not listed. An export
# records it per graph, and a graph of another version counts as missing: the export queue redoes that kind
# alone. Bump a kind's version when its graph changes; bump EXPORT_FORMAT when every graph or the manifest does.
# explain 2: one method's maps per run (input ``method``, outputs ``cam:<layer>:<method>``).
GRAPH_VERSIONS = {"explain-running": 2, "explain-batch": 2}


def graph_version(kind: str) -> int:
    """The current version of graph ``kind`` (see ``GRAPH_VERSIONS``)."""
    return GRAPH_VERSIONS.get(kind, 1)


# What an export writes by default and a server needs: everything except ``bare`` (benchmarks).
SERVING_GRAPHS = (
    "running",
    "batch",
    "stats-running",
    "stats-batch",
    "grad-running",
    "grad-batch",
    "lesion",
    "explain-running",
    "explain-batch",
)

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
    # Graphs exported elsewhere and copied in without their state dict (a torch-free server) count too.
    exported = sorted(p.parent.name for p in (models_dir / name).glob("*/manifest.json"))
    out += [v for v in exported if v not in out and v != "init" and VARIANT_RE.match(v)]
    out.append("init")
    # ImageNet weights beat He-init as a default; a CIFAR model's trained weights come first.
    if "imagenet" in out:
        out.remove("imagenet")
        out.insert(0, "imagenet")
    return out


def default_variant(models_dir: Path, name: str) -> str:
    """The weights a model uses when a request names none."""
    return available_variants(models_dir, name)[0]
