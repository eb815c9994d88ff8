"""The built wheel, installed into a fresh venv without torch, is a complete server for graphs exported elsewhere.

The wheel is built from a copy of the sources (no stale build/ folder can slip files in), installed with
pip into ``python -m venv`` (pip's cache is reused; no system site-packages), and ``resviz serve`` from
that venv is pointed at models this test session exported with torch. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.paths import REPO, SERVING_GRAPHS
from tests.conftest import png_bytes
from tests.deploy.smoke import free_port, request, smoke, wait_ready

pytestmark = pytest.mark.slow
SOURCES = (
    "app",
    "static",
    "templates",
    "models/weights",
    "models/landscapes",
    "pyproject.toml",
    "setup.py",
    "README.md",
)
INSTALL_TIMEOUT_S = 180


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for rel in SOURCES:
        src, dst = REPO / rel, dest / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _run(cmd: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def torch_free_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the built wheel and its dependencies only: no torch."""
    root = tmp_path_factory.mktemp("torch-free")
    _copy_sources(root / "src")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(root / "src")], 300)
    wheel = next((root / "dist").glob("resviz-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], INSTALL_TIMEOUT_S)
    return venv


@pytest.fixture
def torch_free_server(torch_free_venv: Path, exported: Callable, models_dir: Path, tmp_path: Path) -> Iterator[str]:
    """``resviz serve`` from the torch-free venv on 127.0.0.1, serving this session's exports of ResNet-20."""
    exported("resnet20", "init", SERVING_GRAPHS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RESVIZ_", "VIRTUAL_ENV"))}
    env |= {"RESVIZ_MODELS_DIR": str(models_dir), "RESVIZ_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "server.log").open("w+")
    cmd = [str(torch_free_venv / "bin" / "resviz"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.seek(0)
        text = log.read()
        log.close()
        assert "Traceback" not in text, text[-3000:]


def test_the_venv_has_no_torch_and_runs_the_installed_package(torch_free_venv: Path, tmp_path: Path) -> None:
    python = str(torch_free_venv / "bin" / "python")
    probe = "import importlib.util, app.paths as p; print(importlib.util.find_spec('torch') is None, p.STATIC_DIR)"
    out = _run([python, "-c", probe], 60, cwd=tmp_path).stdout.split()
    assert out[0] == "True", "torch is not installed"
    static = Path(out[1])
    assert static.is_relative_to(torch_free_venv) and (static / "js" / "main.js").is_file(), out


def test_smoke_subset_without_torch(torch_free_server: str) -> None:
    base = torch_free_server
    assert smoke(base, png_bytes((48, 40), seed=3)) == []
    trained = request(f"{base}/api/models")
    assert trained.status == 200 and {r["name"] for r in trained.json()} >= {"resnet20", "resnet50"}
    missing = request(f"{base}/api/models/resnet56?weights=init")
    assert missing.status == 404, missing.body[:300]
    detail = missing.json()["detail"]
    assert "resviz export resnet56 --weights init" in detail and "torch is not installed" in detail
    exports = request(f"{base}/api/exports").json()
    assert exports["can_export"] is False and exports["pending"] == []
    landscapes = request(f"{base}/api/lab/landscapes")  # the shipped loss landscapes travel in the wheel
    assert landscapes.status == 200 and len(landscapes.json()["surfaces"]) == 6, landscapes.body[:300]
