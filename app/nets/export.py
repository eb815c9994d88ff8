"""Export a ResNet to ONNX graphs with named taps, plus the manifest the server reads.

For one model and one set of weights we write, under ``models/<name>/<weights>/``:
``running.onnx`` and ``batch.onnx`` (logits + every tap, BN with running or batch statistics),
``grad-running.onnx`` and ``grad-batch.onnx`` (the hand-written backward), and
``manifest.json``. ``bare.onnx`` (logits only) is written on demand for benchmarks.

The graphs of one model share its weights: every tensor of at least ``EXTERNAL_MIN_BYTES`` lives once
in the directory's weights file (``weights-<token>.bin``, each distinct tensor's bytes once, keyed by
their sha256, at offsets aligned to ``WEIGHTS_ALIGN`` so ONNX Runtime can map them), and each ``.onnx``
holds ONNX external-data references to it (location, offset, length) plus its small tensors inline.
Bytes are appended before the graph that needs them is renamed into place, and never rewritten, so a
server reading meanwhile sees either the old graph or a new one whose bytes are all there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on a POSIX system
    fcntl = None  # type: ignore[assignment]

import numpy as np
import onnx
import torch
from onnx import TensorProto, external_data_helper, numpy_helper
from torch import Tensor, nn

from app import arch
from app.manifest import weights_file_current
from app.nets.resnet import ResNet, ZeroPadShortcut, _Block, build
from app.nets.weights import load_variant
from app.paths import (
    EXPORT_FORMAT,
    GRAPH_FILES,
    SERVING_GRAPHS,
    STATS_GRAPH_MAX_TAPS,
    WEIGHTS_FILE_GLOB,
    model_dir,
)
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


def _export_gradient(model: ResNet, bn_mode: str, out_dir: Path) -> onnx.ModelProto:
    """The hand-written backward graph of ``model`` with its weights inline."""
    from app.nets.backward import export_gradient_graph

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".grad-", dir=out_dir) as tmp:
        path = Path(tmp) / "graph.onnx"
        export_gradient_graph(model, bn_mode, path)
        return onnx.load(str(path))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Floating-point tensors of at least this many bytes go to the model's weights file; smaller ones (BN
# vectors, per-channel scales) stay inline, where a reference would cost more than the bytes. Integer
# tensors (shapes, split sizes, indices) always stay inline: ONNX Runtime reads them while it infers
# shapes, before external data is loaded.
EXTERNAL_MIN_BYTES = 1024
EXTERNAL_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
WEIGHTS_ALIGN = 4096  # offsets in the weights file: the page size, so ONNX Runtime can map tensors in place


def _tensor_bytes(t: TensorProto) -> bytes:
    """The tensor's little-endian bytes, from ``raw_data`` or its typed fields."""
    return t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()


def _shareable(t: TensorProto) -> bool:
    """Whether a tensor goes to the weights file: floating point, and big enough to be worth a reference."""
    return t.data_type in EXTERNAL_TYPES and len(_tensor_bytes(t)) >= EXTERNAL_MIN_BYTES


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn big ``Constant`` nodes into initializers of the same name, so they can be shared too."""
    keep = []
    for node in graph.node:
        value = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if value is not None and value.name == "value" and _shareable(value.t):
            tensor = TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


class WeightsFile:
    """One model directory's weights file: each distinct tensor's bytes once, appended, never rewritten."""

    def __init__(self, path: Path, index: dict[str, tuple[int, int]] | None = None) -> None:
        self.path = path
        self.index = dict(index or {})  # sha256 of the bytes -> (offset, length)

    @classmethod
    def fresh(cls, directory: Path) -> WeightsFile:
        """A new, empty weights file in ``directory`` (under a name no graph refers to yet)."""
        return cls(directory / WEIGHTS_FILE_GLOB.replace("*", secrets.token_hex(6)))

    @classmethod
    def reopen(cls, directory: Path, entry: dict) -> WeightsFile:
        """The weights file a manifest lists (``entry``: its file, bytes and tensor index), to append to."""
        index = {key: (int(off), int(length)) for key, (off, length) in entry["tensors"].items()}
        if any(off + length > int(entry["bytes"]) for off, length in index.values()):
            raise ValueError(f"the index of {entry['file']} points past its {entry['bytes']} bytes")
        return cls(directory / entry["file"], index)

    def entry(self) -> dict:
        """What the manifest lists about this file: its name, bytes and tensor index (sha256: [offset, length])."""
        return {"file": self.path.name, "bytes": self.size(), "tensors": {k: list(v) for k, v in self.index.items()}}

    def size(self) -> int:
        """Bytes in the file now (0 before its first tensor)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def externalize(self, proto: onnx.ModelProto) -> int:
        """Refer ``proto``'s big tensors to this file, appending those it lacks; return the bytes appended.

        The new bytes are flushed to disk before this returns: write the graph after it.
        """
        _constants_to_initializers(proto.graph)
        pending: list[bytes] = []
        end = self.size()
        for t in proto.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                continue
            if not _shareable(t):
                continue
            data = _tensor_bytes(t)
            key = hashlib.sha256(data).hexdigest()
            if key not in self.index:
                offset = -(-end // WEIGHTS_ALIGN) * WEIGHTS_ALIGN
                pending.append(b"\0" * (offset - end) + data)
                self.index[key] = (offset, len(data))
                end = offset + len(data)
            offset, length = self.index[key]
            t.raw_data = data
            for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(field)
            external_data_helper.set_external_data(t, self.path.name, offset, length)
            t.ClearField("raw_data")
        if pending:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                if f.tell() != end - sum(map(len, pending)):
                    raise RuntimeError(f"{self.path} changed while this export appended to it")
                for chunk in pending:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        return sum(map(len, pending))


def _write_graph(proto: onnx.ModelProto, path: Path, weights: WeightsFile) -> int:
    """Move the big tensors of ``proto`` into ``weights`` (bytes first), then write the graph by rename.

    Returns the bytes appended to the weights file.
    """
    appended = weights.externalize(proto)
    _atomic_write(path, proto.SerializeToString())
    return appended


def _referenced_weights(directory: Path) -> set[str]:
    """Names of the weights files any graph in ``directory`` refers to."""
    names = set()
    for graph in directory.glob("*.onnx"):
        try:
            proto = onnx.load(str(graph), load_external_data=False)
        except Exception:  # noqa: BLE001 - an unreadable graph refers to nothing we can keep alive
            continue
        for t in proto.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                names.add(external_data_helper.ExternalDataInfo(t).location)
    return names


def _remove_unreferenced_weights(directory: Path, keep: Path) -> None:
    """Delete the directory's other weights files once no graph in it refers to them (a finished fresh export)."""
    others = [p for p in directory.glob(WEIGHTS_FILE_GLOB) if p != keep]
    if not others:
        return
    used = _referenced_weights(directory)
    for p in others:
        if p.name not in used:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s export lock: one export at a time appends to its weights file, across processes."""
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX: exports of one directory are not serialised
        yield
        return
    with open(directory / ".export.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    with _directory_lock(out_dir):
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
        appended = _write_graph(proto, path, weights)
        dt = time.perf_counter() - t0
        manifest["graphs"][kind] = {"file": path.name, "bytes": path.stat().st_size, "export_seconds": round(dt, 2)}
        if weights.size():
            manifest["weights_file"] = weights.entry()
        _atomic_write(mpath, json.dumps(manifest).encode())  # after the graph: what it lists exists
        if log:
            mib, new = path.stat().st_size / 2**20, appended / 2**20
            print(f"exported {name}@{variant} {kind}: {mib:.1f} MiB + {new:.1f} MiB of new weights in {dt:.1f} s")
        if progress:
            progress(kind, done, len(kinds), dt)
    _atomic_write(mpath, json.dumps(manifest).encode())
    _remove_unreferenced_weights(out_dir, weights.path)
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
    """One graph of ``model`` (a kind of ``GRAPH_FILES``: tap, bare, stats, lesion or gradient), exported in memory."""
    if kind == "lesion":
        branch = torch.ones(1, model.spec.num_blocks)
        return _export(LesionGraph(model), (image, gates, branch), ["image", "gates", "branch"], ["logits"])
    if kind.startswith("stats-"):
        stats = StatsGraph(model, kind.split("-", 1)[1])
        return _export(stats, (image, gates), ["image", "gates"], stats.output_names)
    if kind in ("running", "batch", "bare"):
        graph = TapGraph(model, "batch" if kind == "batch" else "running", taps=kind != "bare")
        return _export(graph, (image, gates), ["image", "gates"], ["logits", *graph.tap_names])
    proto = _export_gradient(model, kind.split("-", 1)[1], out_dir)
    model.eval()  # the exporter restores its fresh wrapper's train mode onto our model
    return proto
