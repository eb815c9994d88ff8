"""bench/scale.py's own parts (no load is played here): the process tree, its memory, the table."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from app.paths import REPO


def _scale():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("scale", REPO / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_process_tree_and_its_memory_include_the_children() -> None:
    scale = _scale()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in scale.process_tree(os.getpid())
        rss, pss = scale.tree_memory_mib(os.getpid())
        alone, _ = scale.tree_memory_mib(child.pid)
        assert rss > alone > 0 and 0 < pss <= rss
    finally:
        child.kill()
        child.wait(10)


def test_table_has_one_line_per_setup() -> None:
    scale = _scale()
    row = {
        "setup": "ray-2",
        "requests": 300,
        "wall_s": 10.2,
        "throughput_per_s": 29.4,
        "statuses": {"200": 300},
        "server_errors": 0,
        "connection_errors": 0,
        "p50_s": 0.1,
        "p99_s": 0.4,
        "rss_peak_mib": 1500.0,
        "pss_peak_mib": 1100.0,
        "start_s": 25.0,
    }
    lines = scale.table([row, {**row, "setup": "uvicorn-1"}]).splitlines()
    assert len(lines) == 3 and "ok/s" in lines[0] and lines[1].startswith("ray-2") and "29.4" in lines[1]
    assert set(scale.SETUPS) == {"uvicorn-1", "uvicorn-2", "ray-2"}
