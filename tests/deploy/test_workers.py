"""``resviz serve --workers 2``: uvicorn worker processes on one socket, the cores split between them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from app.paths import REPO
from tests.conftest import png_bytes
from tests.deploy.smoke import free_port, request, upload, wait_ready


@pytest.fixture
def two_workers(exported: Callable, models_dir: Path, tmp_path: Path) -> Iterator[str]:
    exported("resnet20")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESVIZ_")}
    env |= {
        "RESVIZ_DATA_DIR": str(tmp_path / "data"),
        "RESVIZ_EXPORT_ON_START": "false",
        "RESVIZ_CPUS": "2",  # as on a 2-core machine, whatever this one has: 1 core per worker
        "RESVIZ_HEADER_TIMEOUT_S": "1",
    }
    cmd = [sys.executable, "-m", "app.cli", "--models-dir", str(models_dir), "serve", "--workers", "2"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_two_workers_serve_with_the_settings_of_the_environment(two_workers: str) -> None:
    base = two_workers
    r = upload(base, png_bytes(seed=21))
    assert r.status == 201
    q = urlencode({"image_id": r.json()["id"], "weights": "init", "sections": "summary"})
    assert request(f"{base}/api/models/resnet20/analyze?{q}", "POST").status == 200
    assert request(f"{base}/readyz").json()["gate"]["slots"] == 1, "RESVIZ_CPUS=2 split over 2 workers"
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        t0 = time.monotonic()
        assert s.recv(1024) == b"", "a worker cuts off a client too slow with its headers"
        assert time.monotonic() - t0 < 8


def test_a_cpu_slice_caps_the_threads_of_wide_models(tmp_path: Path) -> None:
    """A replica's or worker's RESVIZ_CPUS, not the machine's cores, bounds ResNet-50's thread per core."""
    from app.runtime.registry import LoadedModel, ModelRegistry

    wide = LoadedModel("resnet50", "init", tmp_path, {"macs": 4.1e9, "depth": 50})
    narrow = LoadedModel("resnet20", "init", tmp_path, {"macs": 4.1e7, "depth": 20})
    for cores in (1, 3):
        registry = ModelRegistry(tmp_path, "CPUExecutionProvider", 1, wide_layer_macs=1e7, cores=cores)
        assert registry.threads(wide) == cores and registry.threads(narrow) == 1
