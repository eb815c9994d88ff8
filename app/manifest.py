"""The manifest an export writes beside its graphs: its typed shape, and the one place that reads it.

``resviz export`` writes ``models/<name>/<weights>/manifest.json`` (``app.nets.export.build_manifest``);
the server reads it through ``read`` here, once per file version (cached by modification time and
size), and checks its format there and nowhere else. The types are ``TypedDict``s: the file's own
JSON shape, so reading a field on the hot path costs what a dict look-up costs, and a type checker
sees every key.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from app.paths import EXPORT_FORMAT, SERVING_GRAPHS, graph_version, manifest_path, model_dir

TapKind = Literal["conv", "bn", "stem", "block", "shortcut"]


class Tap(TypedDict):
    """One recorded tensor: its module path, what records it, and its shape without the batch axis."""

    id: str
    kind: TapKind
    shape: list[int]


class Block(TypedDict):
    """One residual block and the taps of its input x, residual F(x), shortcut S(x) and output."""

    id: str
    stage: int
    index: int
    input: str
    residual: str
    shortcut: str
    output: str
    shortcut_kind: Literal["identity", "A", "B"]


class BatchNorm(TypedDict):
    """One BN layer: the conv output it normalises and its parameters (float32 values as floats)."""

    id: str
    input: str
    channels: int
    eps: float
    gamma: list[float]
    beta: list[float]
    running_mean: list[float]
    running_var: list[float]


class Graph(TypedDict):
    """One exported ONNX graph beside the manifest."""

    file: str
    bytes: int
    export_seconds: float
    version: NotRequired[int]  # the kind's graph version (``app.paths.GRAPH_VERSIONS``); absent: 1


class Preprocessing(TypedDict):
    """How an image becomes the network's input: resize the shorter side, centre crop, normalise."""

    resize_shorter: int
    crop: int
    mean: list[float]
    std: list[float]


class Weights(TypedDict):
    """Which weights the graphs carry."""

    variant: str
    source: str
    sha256: str | None


class Layer(TypedDict):
    """A conv or fc layer with its cost (``app.arch.Layer`` as a dict)."""

    id: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    out_size: int
    params: int
    macs: int


class WeightsFile(TypedDict):
    """The file the graphs of one export share their tensors from (ONNX external data)."""

    file: str
    bytes: int
    index: dict[str, list[int]]  # sha256 of a tensor's bytes -> [offset, length]


class Manifest(TypedDict):
    """Everything the server knows about one model with one set of weights, without opening a graph."""

    format: int
    name: str
    family: Literal["imagenet", "cifar"]
    depth: int
    block: Literal["basic", "bottleneck"]
    stages: list[int]
    input_size: int
    num_classes: int
    shortcut: Literal["A", "B"]
    params: int
    macs: int
    weights: Weights
    preprocessing: Preprocessing
    classes: str  # "imagenet", "cifar10" or "generated"
    class_names: list[str]
    inputs: dict[str, list[int | None]]
    taps: list[Tap]
    blocks: list[Block]
    batchnorm: list[BatchNorm]
    layers: list[Layer]
    graphs: dict[str, Graph]
    weights_file: NotRequired[WeightsFile]  # absent: every tensor inline


_CACHE: dict[Path, tuple[tuple[int, int], Manifest | None]] = {}
_LOCK = threading.Lock()


def load(path: Path) -> Manifest | None:
    """The manifest at ``path`` if it exists in the current export format, else None (read once per version)."""
    try:
        st = path.stat()
    except OSError:
        return None
    version = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        hit = _CACHE.get(path)
    if hit is not None and hit[0] == version:
        return hit[1]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # being replaced, or not JSON: treated as missing
    manifest: Manifest | None = data if isinstance(data, dict) and data.get("format") == EXPORT_FORMAT else None
    with _LOCK:
        _CACHE[path] = (version, manifest)
    return manifest


def read(models_dir: Path, name: str, variant: str) -> Manifest | None:
    """The current manifest of ``name`` with weights ``variant`` (None when missing or in an older format)."""
    return load(manifest_path(models_dir, name, variant))


def is_current(models_dir: Path, name: str, variant: str) -> bool:
    """Whether a manifest in the current export format exists for the model."""
    return read(models_dir, name, variant) is not None


def weights_file_current(directory: Path, manifest: Manifest) -> bool:
    """Whether the weights file a manifest lists (if any) is in ``directory`` with at least the bytes it lists."""
    entry = manifest.get("weights_file")
    if entry is None:
        return True  # every tensor inline
    try:
        return (directory / entry["file"]).stat().st_size >= int(entry["bytes"])
    except (OSError, KeyError, TypeError, ValueError):
        return False


def exported_kinds(models_dir: Path, name: str, variant: str) -> set[str]:
    """Graph kinds exported for a model in the current export format (empty when stale or missing).

    A graph counts when its file is there, in its kind's current version, and so is the weights file the
    manifest lists.
    """
    manifest = read(models_dir, name, variant)
    d = model_dir(models_dir, name, variant)
    if manifest is None or not weights_file_current(d, manifest):
        return set()
    return {k for k in manifest["graphs"] if graph_current(d, manifest, k)}


def graph_current(directory: Path, manifest: Manifest, kind: str) -> bool:
    """Whether ``manifest`` lists graph ``kind`` in its current version and its file is in ``directory``."""
    entry = manifest.get("graphs", {}).get(kind)
    return entry is not None and entry.get("version", 1) == graph_version(kind) and (directory / entry["file"]).exists()


def export_files(models_dir: Path, name: str, variant: str, kinds: tuple[str, ...] = SERVING_GRAPHS) -> list[Path]:
    """Every file the export of ``kinds`` consists of (graphs, weights file, manifest); empty if one is missing."""
    manifest = read(models_dir, name, variant)
    d = model_dir(models_dir, name, variant)
    if manifest is None or not set(kinds) <= exported_kinds(models_dir, name, variant):
        return []
    files = [d / manifest["graphs"][k]["file"] for k in kinds]
    if "weights_file" in manifest:
        files.append(d / manifest["weights_file"]["file"])
    return [*files, d / "manifest.json"]
