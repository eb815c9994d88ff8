"""The manifest reader: read once per file version, the format checked in one place; variants without globbing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app import manifest as manifests
from app.paths import EXPORT_FORMAT


def _write(path: Path, doc: dict, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_read_once_per_version_and_format_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "resnet20" / "init" / "manifest.json"
    _write(path, {"format": EXPORT_FORMAT, "name": "resnet20", "graphs": {}}, 1_000_000_000)
    reads = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or real(self, *a, **k))
    first = manifests.read(tmp_path, "resnet20", "init")
    assert first is not None and first["name"] == "resnet20"
    assert manifests.read(tmp_path, "resnet20", "init") is first and manifests.is_current(tmp_path, "resnet20", "init")
    assert len(reads) == 1  # three looks, one read
    _write(path, {"format": EXPORT_FORMAT - 1, "name": "resnet20", "graphs": {}}, 2_000_000_000)
    assert manifests.read(tmp_path, "resnet20", "init") is None  # an older format is not current
    assert manifests.exported_kinds(tmp_path, "resnet20", "init") == set()
    path.write_text("{not json")
    assert manifests.read(tmp_path, "resnet20", "init") is None
    assert manifests.read(tmp_path, "resnet20", "nothing") is None


def test_exported_kinds_need_the_graph_file(tmp_path: Path) -> None:
    d = tmp_path / "resnet20" / "init"
    graphs = {"running": {"file": "running.onnx", "bytes": 1, "export_seconds": 0.1}}
    _write(d / "manifest.json", {"format": EXPORT_FORMAT, "graphs": graphs}, 3_000_000_000)
    assert manifests.exported_kinds(tmp_path, "resnet20", "init") == set()
    (d / "running.onnx").write_bytes(b"x")
    assert manifests.exported_kinds(tmp_path, "resnet20", "init") == {"running"}


def test_a_graph_of_an_older_version_counts_as_missing(tmp_path: Path) -> None:
    """A kind whose graph contract changed (GRAPH_VERSIONS) is redone alone: its old file no longer counts."""
    from app.paths import graph_version

    d = tmp_path / "resnet20" / "init"
    graphs = {
        "running": {"file": "running.onnx", "bytes": 1, "export_seconds": 0.1},  # no version: 1
        "explain-running": {"file": "explain-running.onnx", "bytes": 1, "export_seconds": 0.1},
    }
    for g in graphs.values():
        (d / g["file"]).parent.mkdir(parents=True, exist_ok=True)
        (d / g["file"]).write_bytes(b"x")
    _write(d / "manifest.json", {"format": EXPORT_FORMAT, "graphs": graphs}, 4_000_000_000)
    assert graph_version("running") == 1 and graph_version("explain-running") > 1
    assert manifests.exported_kinds(tmp_path, "resnet20", "init") == {"running"}
    graphs["explain-running"]["version"] = graph_version("explain-running")
    _write(d / "manifest.json", {"format": EXPORT_FORMAT, "graphs": graphs}, 5_000_000_000)
    assert manifests.exported_kinds(tmp_path, "resnet20", "init") == {"running", "explain-running"}


def test_registry_lists_variants_again_only_when_a_folder_changes(tmp_path: Path) -> None:
    from app.runtime.registry import ModelRegistry

    reg = ModelRegistry(tmp_path)
    before = reg.variants("resnet20")
    assert before[-1] == "init" and reg.variants("resnet20") is before  # cached: no new listing
    imported = tmp_path / "imported"
    imported.mkdir()
    (imported / "resnet20@mine.pt").write_bytes(b"")
    after = reg.variants("resnet20")
    assert "mine" in after and "mine" not in before
    assert reg.resolve_variant("resnet20", "mine") == "mine"
