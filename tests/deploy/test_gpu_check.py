"""bench/gpu_check.py on this machine: with no CUDA provider it says so and checks the CPU path (ResNet-20)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from app.paths import REPO


def test_gpu_check_runs_the_cpu_path_on_resnet20(exported: Callable, models_dir: Path, tmp_path: Path) -> None:
    exported("resnet20", "init", ("running", "stats-running", "grad-running"))
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, "bench/gpu_check.py", "--models", "resnet20", "--runs", "1"]
    cmd += ["--models-dir", str(models_dir), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "CUDA: not available" in proc.stdout and result["cuda"] is False
        assert result["candidate"] == "CPU, 1 thread"
    assert {r["graph"] for r in result["agreement"]} == {"running", "grad-running"}
    assert all(r["ok"] and r["outputs"] > 10 for r in result["agreement"]), result["agreement"]
    assert len(result["timings"]) == 2 and all(
        t["analysis_ms"] > 0 and t["gradients_ms"] > 0 for t in result["timings"]
    )
    assert "analysis ms" in proc.stdout, "the table is printed"


def test_cuda_is_first_where_onnxruntime_has_it(monkeypatch) -> None:  # noqa: ANN001
    from app.runtime import registry

    have = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(registry.ort, "get_available_providers", lambda: have)
    assert registry.choose_providers("auto") == have
    config = registry.ModelRegistry(Path("."), "auto").provider_config()
    assert config[0][0] == "CUDAExecutionProvider" and config[0][1]["use_tf32"] == "0" and config[1] == have[1]
    monkeypatch.setattr(registry.ort, "get_available_providers", lambda: have[1:])
    assert registry.choose_providers("auto") == ["CPUExecutionProvider"]
    assert registry.choose_providers("CUDAExecutionProvider") == ["CPUExecutionProvider"]


def test_agreement_rule_catches_a_relative_error_past_1e_3() -> None:
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    x = np.array([1.0, -2.0, 3.0, 0.0], np.float32)
    assert check.agree(x * (1 + 5e-4), x, relative_to_range=False)[0]
    assert not check.agree(x * (1 + 3e-3), x, relative_to_range=False)[0]
    assert check.agree(x + 1e-3, x, relative_to_range=True)[0], "near zero, the tensor's range sets the scale"
    assert not check.agree(np.array([1.0, 2.0]), np.array([1.0, 2.1]), relative_to_range=True)[0]
    assert not check.agree(np.ones(3), np.ones(4), relative_to_range=True)[0]


def test_a_cuda_provider_that_cannot_start_falls_back_to_the_cpu_and_says_so(
    exported: Callable, models_dir: Path, monkeypatch
) -> None:  # noqa: ANN001
    from app.runtime import registry

    exported("resnet20", "init", ("running",))
    monkeypatch.setattr(
        registry.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    reg = registry.ModelRegistry(models_dir, "auto")
    assert reg.providers[0] == "CUDAExecutionProvider"
    opened: list = []
    real = registry.ort.InferenceSession

    def session(path, opts, providers):  # noqa: ANN001, ANN202 - this onnxruntime has no CUDA: the CPU answers
        opened.append(providers)
        return real(path, opts, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(registry.ort, "InferenceSession", session)
    model = reg.get("resnet20", "init")
    reg.session(model, "running")
    assert opened[0][0][0] == "CUDAExecutionProvider", "CUDA asked for first, with its options"
    assert reg.providers == ["CPUExecutionProvider"], "what /readyz reports is what runs"
