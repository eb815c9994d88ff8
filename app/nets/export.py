"""Export a ResNet to ONNX graphs with named taps, plus the manifest the server reads.

For one model and one set of weights we write, under ``models/<name>/<weights>/``:
``running.onnx`` and ``batch.onnx`` (logits + every tap, BN with running or batch statistics),
``grad-running.onnx`` and ``grad-batch.onnx`` (the hand-written backward),
``explain-running.onnx`` and ``explain-batch.onnx`` (class activation maps and the input gradient),
and ``manifest.json``. ``bare.onnx`` (logits only) is written on demand for benchmarks.

The graphs of one model share its weights: every tensor of at least ``EXTERNAL_MIN_BYTES`` lives once
in the directory's weights file (``weights-<token>.bin``, each distinct tensor's bytes once, keyed by
their sha256, at offsets aligned to ``WEIGHTS_ALIGN`` so ONNX Runtime can map them), and each ``.onnx``
holds ONNX external-data references to it (location, offset, length) plus its small tensors inline.
Bytes are appended before the graph that needs them is renamed into place, and never rewritten, so a
server reading meanwhile sees either the old graph or a new one whose bytes are all there.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on a POSIX system
    fcntl = None  # type: ignore[assignment]

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from app import arch
from app.manifest import weights_file_current
from app.nets.graphs import LesionGraph, StatsGraph, TapGraph, block_taps, bn_inputs, record_all, tap_kind
from app.nets.resnet import ResNet, build
from app.nets.weights import load_variant
from app.nets.weights_file import WeightsFile, atomic_write, directory_lock, remove_unreferenced_weights, write_graph
from app.paths import (
    EXPORT_FORMAT,
    GRAPH_FILES,
    SERVING_GRAPHS,
    STATS_GRAPH_MAX_TAPS,
    graph_version,
    model_dir,
)
from app.specs import SPECS

OPSET = 17
IMAGENET_PREPROCESS = {
    "resize_shorter": 256,
    "crop": 224,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
CIFAR_PREPROCESS = {
    "resize_shorter": 32,
    "crop": 32,
    "mean": [0.4914, 0.4822, 0.4465],
    "std": [0.2470, 0.2435, 0.2616],
}


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """The ONNX graph of ``module`` with its weights inline."""
    module.eval()  # torch.onnx.export restores the wrapper's mode afterwards, recursively: keep it eval
    dynamic = {n: {0: "batch"} for n in inputs if n not in ("gates", "target")}
    dynamic.update({n: {0: "batch"} for n in outputs if n != "loss" and not n.startswith("grad_")})
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
            # The modules are in eval mode, so BN exports as inference either way; PRESERVE (unlike EVAL)
            # keeps the exporter from folding BN into the conv before it where no tap needs the conv's
            # output (the lesion graph): ONNX Runtime folds it when it loads the graph, and the graph
            # refers to the same conv weights as every other graph of the model instead of a folded copy.
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    return onnx.load_from_string(buf.getvalue())


def _export_backward(model: ResNet, kind: str, out_dir: Path) -> onnx.ModelProto:
    """A hand-written backward graph of ``model`` (``grad-<bn>`` or ``explain-<bn>``) with its weights inline."""
    from app.nets.backward import export_gradient_graph
    from app.nets.explain import export_explain_graph

    graph, bn_mode = kind.split("-", 1)
    write = export_explain_graph if graph == "explain" else export_gradient_graph
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{graph}-", dir=out_dir) as tmp:
        path = Path(tmp) / "graph.onnx"
        write(model, bn_mode, path)
        return onnx.load(str(path))


def _floats(t: Tensor) -> list[float]:
    return [float(v) for v in t.detach().float().numpy().astype(np.float32)]


def _class_names(classes: str) -> list[str]:
    if classes == "generated":
        from app.nets.data import CLASSES

        return list(CLASSES)
    if classes == "imagenet":
        return json.loads((Path(__file__).resolve().parent.parent / "data" / "imagenet_classes.json").read_text())
    from app.runtime.labels import CIFAR10

    return list(CIFAR10)


def build_manifest(model: ResNet, variant: str, source: str, sha256: str | None) -> dict:
    """Everything the server needs to know about a model without opening the graph."""
    spec = model.spec
    recorded = record_all(model)
    layers = {layer.id: layer for layer in arch.layers(spec)}
    taps = [{"id": n, "kind": tap_kind(model, n), "shape": list(t.shape[1:])} for n, t in recorded.items()]
    inputs = bn_inputs(model, recorded)
    blocks = block_taps(model)
    batchnorm = []
    for path, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            batchnorm.append(
                {
                    "id": path,
                    "input": inputs[path],
                    "channels": m.num_features,
                    "eps": m.eps,
                    "gamma": _floats(m.weight),
                    "beta": _floats(m.bias),
                    "running_mean": _floats(m.running_mean),
                    "running_var": _floats(m.running_var),
                }
            )
    convs = [layer.as_dict() for layer in layers.values() if layer.kind in ("conv", "fc")]
    summary = arch.summary(spec)
    generated = variant in ("trained", "plain")
    classes = "imagenet" if spec.family == "imagenet" else ("generated" if generated else "cifar10")
    return {
        "format": EXPORT_FORMAT,
        **summary,
        "weights": {"variant": variant, "source": source, "sha256": sha256},
        "preprocessing": IMAGENET_PREPROCESS if spec.family == "imagenet" else CIFAR_PREPROCESS,
        "classes": classes,
        "class_names": _class_names(classes),
        "inputs": {"image": [None, 3, spec.input_size, spec.input_size], "gates": [spec.num_blocks]},
        "taps": taps,
        "blocks": blocks,
        "batchnorm": batchnorm,
        "layers": convs,
        "graphs": {},
    }


def export_model(
    name: str,
    variant: str,
    models_dir: Path,
    kinds: Iterable[str] = SERVING_GRAPHS,
    log: bool = True,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> dict:
    """Export the graphs of ``name`` with weights ``variant`` and write the manifest; return it.

    The manifest is rewritten after every graph, so a server sees each graph as soon as it exists;
    ``progress(kind, done, total, seconds)`` is called after each graph (skipped ones included).
    Graphs already exported from the same weights in this format are kept, and so is their weights
    file (new graphs append only the tensors it lacks); otherwise the export starts a fresh one.
    """
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    state, source, sha = load_variant(name, variant, models_dir)
    model = build(name)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval()
    out_dir = model_dir(models_dir, name, variant)
    with directory_lock(out_dir):
        return _export_graphs(model, variant, source, sha, out_dir, list(kinds), log, progress)


def _export_graphs(
    model: ResNet,
    variant: str,
    source: str,
    sha: str | None,
    out_dir: Path,
    kinds: list[str],
    log: bool,
    progress: Callable[[str, int, int, float], None] | None,
) -> dict:
    """``export_model``'s work, with the directory's lock held."""
    name = model.spec.name
    mpath = out_dir / "manifest.json"
    manifest, weights = _resume(model, variant, source, sha, out_dir)
    size = model.spec.input_size
    image = torch.zeros(1, 3, size, size)
    gates = torch.ones(model.spec.num_blocks)
    for done, kind in enumerate(kinds, 1):
        if kind.startswith("stats-") and len(manifest["taps"]) > STATS_GRAPH_MAX_TAPS:
            if log:
                print(f"skipped {name}@{variant} {kind}: {len(manifest['taps'])} taps (analyses use the tap graph)")
            if progress:
                progress(kind, done, len(kinds), 0.0)
            continue
        t0 = time.perf_counter()
        model.eval()
        path = out_dir / GRAPH_FILES[kind]
        proto = _graph_proto(model, kind, image, gates, out_dir)
        appended = write_graph(proto, path, weights)
        dt = time.perf_counter() - t0
        manifest["graphs"][kind] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "export_seconds": round(dt, 2),
            "version": graph_version(kind),
        }
        if weights.size():
            manifest["weights_file"] = weights.entry()
        atomic_write(mpath, json.dumps(manifest).encode())  # after the graph: what it lists exists
        if log:
            mib, new = path.stat().st_size / 2**20, appended / 2**20
            print(f"exported {name}@{variant} {kind}: {mib:.1f} MiB + {new:.1f} MiB of new weights in {dt:.1f} s")
        if progress:
            progress(kind, done, len(kinds), dt)
    atomic_write(mpath, json.dumps(manifest).encode())
    remove_unreferenced_weights(out_dir, weights.path)
    return manifest


def _resume(model: ResNet, variant: str, source: str, sha: str | None, out_dir: Path) -> tuple[dict, WeightsFile]:
    """The new manifest and the weights file to append to: an earlier export's graphs and file where they still hold."""
    mpath = out_dir / "manifest.json"
    manifest = build_manifest(model, variant, source, sha)
    weights = None
    if mpath.exists():
        old = json.loads(mpath.read_text())
        same = old.get("weights", {}).get("sha256") == sha and old.get("format") == EXPORT_FORMAT
        graphs = {k: v for k, v in old.get("graphs", {}).items() if (out_dir / v["file"]).exists()}
        if same and graphs and weights_file_current(out_dir, old):
            try:
                weights = WeightsFile.reopen(out_dir, old["weights_file"]) if "weights_file" in old else None
            except (KeyError, TypeError, ValueError):  # an index we cannot trust: start afresh
                graphs = {}
            manifest["graphs"] = graphs
            if weights is not None:
                manifest["weights_file"] = weights.entry()
    if weights is None:
        weights = WeightsFile.fresh(out_dir)
    return manifest, weights


def _graph_proto(model: ResNet, kind: str, image: Tensor, gates: Tensor, out_dir: Path) -> onnx.ModelProto:
    """One graph of ``model`` (a kind of ``GRAPH_FILES``: tap, bare, stats, lesion, gradient or explain), in memory."""
    if kind == "lesion":
        branch = torch.ones(1, model.spec.num_blocks)
        return _export(LesionGraph(model), (image, gates, branch), ["image", "gates", "branch"], ["logits"])
    if kind.startswith("stats-"):
        stats = StatsGraph(model, kind.split("-", 1)[1])
        return _export(stats, (image, gates), ["image", "gates"], stats.output_names)
    if kind in ("running", "batch", "bare"):
        graph = TapGraph(model, "batch" if kind == "batch" else "running", taps=kind != "bare")
        return _export(graph, (image, gates), ["image", "gates"], ["logits", *graph.tap_names])
    if not kind.startswith(("grad-", "explain-")):
        raise ValueError(f"unknown graph kind {kind!r}")
    proto = _export_backward(model, kind, out_dir)
    model.eval()  # the exporter restores its fresh wrapper's train mode onto our model
    return proto
