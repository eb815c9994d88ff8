"""Shared fixtures: a session-wide export cache and an app client on temporary directories."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.manifest import exported_kinds


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory for this test session (exports are redone from the current code)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def exported(models_dir: Path) -> Callable[..., dict]:
    """Export (once per session) a model's graphs into the session models dir; returns the manifest.

    The export runs as ``resviz export`` in a subprocess, as a server's export worker runs it: the
    serving code under test never imports torch (only the tests that compare against torch do).
    """
    import json
    import subprocess
    import sys

    def _export(
        name: str, variant: str = "init", kinds: tuple[str, ...] = ("running", "batch", "stats-running", "stats-batch")
    ) -> dict:
        have = exported_kinds(models_dir, name, variant)
        todo = tuple(k for k in kinds if k not in have)
        if todo:
            cmd = [sys.executable, "-m", "app.cli", "--models-dir", str(models_dir), "export", name]
            cmd += ["--weights", variant, "--graphs", ",".join(todo), "--quiet"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, f"export of {name}@{variant} {todo} failed:\n{done.stderr[-2000:]}"
        return json.loads((models_dir / name / variant / "manifest.json").read_text())

    return _export


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data directory (stored images)."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def make_client(models_dir: Path, data_dir: Path) -> Iterator[Callable]:
    """Factory for a TestClient on the session models dir and a fresh data dir."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    clients = []

    def _make(**overrides: object) -> TestClient:
        settings = Settings(
            models_dir=models_dir, data_dir=data_dir, export_on_start=False, warm_on_start=False, **overrides
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for c in clients:
        c.__exit__(None, None, None)


def png_bytes(size: tuple[int, int] = (40, 30), seed: int = 0, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A random image encoded as bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()
