"""One model directory's shared weights file (ONNX external data), and writing graphs that refer to it.

Floating-point tensors of 1 KB and more live once in ``weights-<token>.bin``, appended at 4096-aligned
offsets and never rewritten; the ``.onnx`` files keep references and the small tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx import TensorProto, external_data_helper, numpy_helper

from app.paths import WEIGHTS_FILE_GLOB

try:
    import fcntl
except ImportError:  # not on a POSIX system: exports of one directory are not serialised
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by a rename, so a reader sees the old file or the new one."""
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


def tensor_bytes(t: TensorProto) -> bytes:
    """The tensor's little-endian bytes, from ``raw_data`` or its typed fields."""
    return t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()


def shareable(t: TensorProto) -> bool:
    """Whether a tensor goes to the weights file: floating point, and big enough to be worth a reference."""
    return t.data_type in EXTERNAL_TYPES and len(tensor_bytes(t)) >= EXTERNAL_MIN_BYTES


def constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn big ``Constant`` nodes into initializers of the same name, so they can be shared too."""
    keep = []
    for node in graph.node:
        value = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if value is not None and value.name == "value" and shareable(value.t):
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
        constants_to_initializers(proto.graph)
        pending: list[bytes] = []
        end = self.size()
        for t in proto.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                continue
            if not shareable(t):
                continue
            data = tensor_bytes(t)
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


def write_graph(proto: onnx.ModelProto, path: Path, weights: WeightsFile) -> int:
    """Move the big tensors of ``proto`` into ``weights`` (bytes first), then write the graph by rename.

    Returns the bytes appended to the weights file.
    """
    appended = weights.externalize(proto)
    atomic_write(path, proto.SerializeToString())
    return appended


def referenced_weights(directory: Path) -> set[str]:
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


def remove_unreferenced_weights(directory: Path, keep: Path) -> None:
    """Delete the directory's other weights files once no graph in it refers to them (a finished fresh export)."""
    others = [p for p in directory.glob(WEIGHTS_FILE_GLOB) if p != keep]
    if not others:
        return
    used = referenced_weights(directory)
    for p in others:
        if p.name not in used:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
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
