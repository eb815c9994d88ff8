"""Export a ResNet to ONNX graphs with named taps, plus the manifest the server reads.

For one model and one set of weights we write, under ``models/<name>/<weights>/``:
``running.onnx`` and ``batch.onnx`` (logits + every tap, BN with running or batch statistics),
``grad-running.onnx`` and ``grad-batch.onnx`` (the hand-written backward), and
``manifest.json``. ``bare.onnx`` (logits only) is written on demand for benchmarks.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from app import arch
from app.nets.resnet import ResNet, ZeroPadShortcut, _Block, build
from app.nets.weights import load_variant
from app.paths import EXPORT_FORMAT, GRAPH_FILES, SERVING_GRAPHS, STATS_GRAPH_MAX_TAPS, manifest_path, model_dir
from app.runtime.stats import HIST_SAMPLE, PAIR_SAMPLE
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


class TapGraph(nn.Module):
    """Forward pass returning ``(logits, *taps)`` with BN in a fixed mode."""

    def __init__(self, model: ResNet, bn_mode: str, taps: bool = True) -> None:
        super().__init__()
        self.model = model
        self.bn_mode = bn_mode
        self.taps = taps
        self.tap_names = tap_order(model) if taps else []

    def forward(self, image: Tensor, gates: Tensor) -> tuple[Tensor, ...]:
        """Logits and, when taps are on, every recorded tensor in ``tap_names`` order."""
        recorded: dict[str, Tensor] = {}
        self.model.bn_mode = self.bn_mode
        try:
            logits = self.model(image, gates, rec=recorded.__setitem__ if self.taps else None)
        finally:
            self.model.bn_mode = None
        return (logits, *(recorded[n] for n in self.tap_names))


# Taps whose statistics the stats graph measures in full; BN outputs are derived from their
# input (y = scale * x + shift per channel), so for them only zeros and a sample are measured.
MEASURED_KINDS = ("conv", "stem", "block", "shortcut")


def _strided(t: Tensor, size: int, limit: int) -> Tensor:
    """Every ceil(size / limit)-th element of each image's flattened tensor: (N, <= limit)."""
    step = -(-size // limit)
    return torch.flatten(t, 1)[:, ::step]


class StatsGraph(nn.Module):
    """Forward pass that reduces every tap inside the graph instead of returning it.

    Outputs, per image: logits; for measured taps per-channel sum, sum of squares, min and max
    and the count of exact zeros; for BN outputs the zero count; a strided sample of every tap
    (histograms); (x, F(x)) pairs of every block; and the stem and block outputs in full
    (feature-map thumbnails). ORT runs the reductions in its own threads next to the convs.
    """

    def __init__(self, model: ResNet, bn_mode: str) -> None:
        super().__init__()
        self.model = model
        self.bn_mode = bn_mode
        recorded = _record_all(model)
        self.sizes = {n: int(t[0].numel()) for n, t in recorded.items()}
        self.kinds = {n: _tap_kind(model, n) for n in recorded}
        self.pairs = {b["residual"]: b for b in _block_taps(model)}
        self.output_names = ["logits", *(name for name, _ in self._outputs(recorded))]

    def _outputs(self, recorded: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
        out: list[tuple[str, Tensor]] = []
        for n, t in recorded.items():
            kind = self.kinds[n]
            if kind in MEASURED_KINDS:
                out += [
                    (f"{n}:sum", t.sum((2, 3))),
                    (f"{n}:sumsq", (t * t).sum((2, 3))),
                    (f"{n}:min", t.amin((2, 3))),
                    (f"{n}:max", t.amax((2, 3))),
                ]
            out.append((f"{n}:zeros", (t == 0).float().sum((1, 2, 3))))
            out.append((f"{n}:sample", _strided(t, self.sizes[n], HIST_SAMPLE)))
            if kind in ("stem", "block"):
                out.append((n, t))
        for residual, b in self.pairs.items():
            size = self.sizes[residual]
            out.append((f"{b['id']}:pair_x", _strided(recorded[b["shortcut"]], size, PAIR_SAMPLE)))
            out.append((f"{b['id']}:pair_f", _strided(recorded[residual], size, PAIR_SAMPLE)))
        return out

    def forward(self, image: Tensor, gates: Tensor) -> tuple[Tensor, ...]:
        """Logits and the reductions named in ``output_names[1:]``, in that order."""
        recorded: dict[str, Tensor] = {}
        self.model.bn_mode = self.bn_mode
        try:
            logits = self.model(image, gates, rec=recorded.__setitem__)
        finally:
            self.model.bn_mode = None
        return (logits, *(t for _, t in self._outputs(recorded)))


class LesionGraph(nn.Module):
    """Forward with BN running statistics and a per-image factor on every residual branch."""

    def __init__(self, model: ResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, gates: Tensor, branch: Tensor) -> Tensor:
        """Logits (N, classes) for images (N, 3, H, W) and branch factors (N, num_blocks)."""
        self.model.bn_mode = "running"
        try:
            return self.model(image, gates, branch=branch)
        finally:
            self.model.bn_mode = None


def _record_all(model: ResNet) -> dict[str, Tensor]:
    size = model.spec.input_size
    recorded: dict[str, Tensor] = {}
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size), rec=recorded.__setitem__)
    return recorded


def tap_order(model: ResNet) -> list[str]:
    """Tap ids in the order the forward pass records them."""
    return list(_record_all(model))


def _tap_kind(model: ResNet, name: str) -> str:
    """What a tap is, read from the module that records it: conv, bn, shortcut (option A), block or stem."""
    module = model.get_submodule(name)
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.BatchNorm2d):
        return "bn"
    if isinstance(module, ZeroPadShortcut):
        return "shortcut"
    if isinstance(module, _Block):
        return "block"
    return "stem"  # the stem's ReLU (CIFAR) or max pool (ImageNet)


def _bn_inputs(model: ResNet, recorded: dict[str, Tensor]) -> dict[str, str]:
    """Each BN layer's input tap: the conv output the forward pass records just before the BN output."""
    order = list(recorded)
    inputs = {}
    for i, name in enumerate(order):
        if i and isinstance(model.get_submodule(name), nn.BatchNorm2d):
            if _tap_kind(model, order[i - 1]) != "conv":
                raise ValueError(f"{name} does not follow a convolution in the forward pass")
            inputs[name] = order[i - 1]
    return inputs


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
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
        )
    _atomic_write(path, buf.getvalue())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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


def _block_taps(model: ResNet) -> list[dict]:
    """Each residual block with the tap ids of its input, residual F(x), shortcut S(x) and output."""
    spec = model.spec
    stem = "maxpool" if spec.family == "imagenet" else "relu"
    blocks = []
    prev = stem
    for s, stage in enumerate(model.stages()):
        for i, block in enumerate(stage):
            path = block.path
            last_bn = "bn2" if spec.block == "basic" else "bn3"
            if block.downsample is None:
                shortcut, kind = prev, "identity"
            elif spec.shortcut == "A":
                shortcut, kind = f"{path}.downsample", "A"
            else:
                shortcut, kind = f"{path}.downsample.1", "B"
            blocks.append(
                {
                    "id": path,
                    "stage": s + 1,
                    "index": i,
                    "input": prev,
                    "residual": f"{path}.{last_bn}",
                    "shortcut": shortcut,
                    "output": path,
                    "shortcut_kind": kind,
                }
            )
            prev = path
    return blocks


def build_manifest(model: ResNet, variant: str, source: str, sha256: str | None) -> dict:
    """Everything the server needs to know about a model without opening the graph."""
    spec = model.spec
    recorded = _record_all(model)
    layers = {layer.id: layer for layer in arch.layers(spec)}
    taps = [{"id": n, "kind": _tap_kind(model, n), "shape": list(t.shape[1:])} for n, t in recorded.items()]
    bn_inputs = _bn_inputs(model, recorded)
    blocks = _block_taps(model)
    batchnorm = []
    for path, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            batchnorm.append(
                {
                    "id": path,
                    "input": bn_inputs[path],
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
    """
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    state, source, sha = load_variant(name, variant, models_dir)
    model = build(name)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval()
    out_dir = model_dir(models_dir, name, variant)
    mpath = manifest_path(models_dir, name, variant)
    manifest = build_manifest(model, variant, source, sha)
    if mpath.exists():
        old = json.loads(mpath.read_text())
        if old.get("weights", {}).get("sha256") == sha and old.get("format") == EXPORT_FORMAT:
            manifest["graphs"] = {k: v for k, v in old.get("graphs", {}).items() if (out_dir / v["file"]).exists()}
    size = model.spec.input_size
    image = torch.zeros(1, 3, size, size)
    gates = torch.ones(model.spec.num_blocks)
    kinds = list(kinds)
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
        if kind == "lesion":
            branch = torch.ones(1, model.spec.num_blocks)
            _export(LesionGraph(model), (image, gates, branch), path, ["image", "gates", "branch"], ["logits"])
        elif kind.startswith("stats-"):
            stats = StatsGraph(model, kind.split("-", 1)[1])
            _export(stats, (image, gates), path, ["image", "gates"], stats.output_names)
        elif kind in ("running", "batch", "bare"):
            graph = TapGraph(model, "batch" if kind == "batch" else "running", taps=kind != "bare")
            _export(graph, (image, gates), path, ["image", "gates"], ["logits", *graph.tap_names])
        else:
            from app.nets.backward import export_gradient_graph

            export_gradient_graph(model, kind.split("-", 1)[1], path)
            model.eval()  # the exporter restores its fresh wrapper's train mode onto our model
        dt = time.perf_counter() - t0
        manifest["graphs"][kind] = {"file": path.name, "bytes": path.stat().st_size, "export_seconds": round(dt, 2)}
        _atomic_write(mpath, json.dumps(manifest).encode())  # after the graph: what it lists exists
        if log:
            print(f"exported {name}@{variant} {kind}: {path.stat().st_size / 2**20:.1f} MiB in {dt:.1f} s", flush=True)
        if progress:
            progress(kind, done, len(kinds), dt)
    _atomic_write(mpath, json.dumps(manifest).encode())
    return manifest
