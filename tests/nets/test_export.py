"""Exported graphs against torch eager: logits and every tap, both BN modes, any gates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.nets.resnet import build
from app.specs import SPECS
from tests.nets.test_models import _randomize_bn


def _torch_taps(model: torch.nn.Module, x: torch.Tensor, gates: torch.Tensor, bn: str) -> dict[str, np.ndarray]:
    rec: dict[str, torch.Tensor] = {}
    model.bn_mode = bn
    with torch.no_grad():
        rec["logits"] = model(x, gates, rec=rec.__setitem__)
    model.bn_mode = None
    return {k: v.numpy() for k, v in rec.items()}


def _compare(
    name: str, manifest: dict, models_dir: Path, bn: str, gates: np.ndarray, batch: int = 2, deep: bool = False
) -> None:
    model = build(name)  # "init" weights: seed 0, the same the export used
    size = SPECS[name].input_size
    x = np.random.default_rng(3).standard_normal((batch, 3, size, size)).astype(np.float32)
    sess = ort.InferenceSession(str(models_dir / name / "init" / f"{bn}.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {"image": x, "gates": gates}), strict=True))
    ref = _torch_taps(model, torch.from_numpy(x), torch.from_numpy(gates), bn)
    if deep:
        truth = _torch_taps(model.double(), torch.from_numpy(x).double(), torch.from_numpy(gates).double(), bn)
    assert set(outs) == set(ref)
    assert names[1:] == [t["id"] for t in manifest["taps"]]
    for key, want in ref.items():
        # rtol 1e-4 per element; atol 1e-4 of the tensor's own scale, since float32 sums in a
        # different order (ORT vs torch kernels) differ by that much deep in the network.
        scale = max(1e-1, float(np.abs(want).max()))
        if deep:
            # Dozens of float32 layers in two kernel libraries drift apart by more than 1e-4 in
            # places; so judge ORT against a float64 run: it must be as close as torch float32 is.
            t = truth[key]
            err_ort = np.linalg.norm(outs[key] - t) / max(np.linalg.norm(t), 1e-12)
            err_torch = np.linalg.norm(want - t) / max(np.linalg.norm(t), 1e-12)
            assert err_ort < max(3 * err_torch, 1e-5), f"{name} {bn} {key}: {err_ort:.2e} vs torch {err_torch:.2e}"
        else:
            np.testing.assert_allclose(outs[key], want, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{name} {bn} {key}")


def _gate_sets(n: int) -> list[np.ndarray]:
    mixed = np.array([(1.0, 0.0, 0.5)[i % 3] for i in range(n)], np.float32)
    return [np.ones(n, np.float32), np.zeros(n, np.float32), mixed]


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_ort_matches_torch_every_tap(name: str, bn: str, exported: Callable, models_dir: Path) -> None:
    manifest = exported(name)
    for gates in _gate_sets(SPECS[name].num_blocks):
        _compare(name, manifest, models_dir, bn, gates)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SPECS if n not in ("resnet20", "resnet18")])
def test_ort_matches_torch_every_model(name: str, exported: Callable, models_dir: Path) -> None:
    manifest = exported(name, kinds=("running", "batch"))
    n = SPECS[name].num_blocks
    _compare(name, manifest, models_dir, "running", _gate_sets(n)[2], batch=1, deep=True)
    _compare(name, manifest, models_dir, "batch", np.ones(n, np.float32), batch=1, deep=True)


def test_manifest_contents(exported: Callable) -> None:
    m = exported("resnet20")
    assert m["params"] == 269_722 and m["depth"] == 20 and len(m["blocks"]) == 9
    assert m["preprocessing"]["mean"] == [0.4914, 0.4822, 0.4465]
    ids = {t["id"] for t in m["taps"]}
    for b in m["blocks"]:
        assert {b["input"], b["residual"], b["shortcut"], b["output"]} <= ids
    assert [b["shortcut_kind"] for b in m["blocks"]].count("A") == 2
    bn = {b["id"]: b for b in m["batchnorm"]}
    assert bn["layer2.0.bn1"]["input"] == "layer2.0.conv1" and len(bn["layer2.0.bn1"]["gamma"]) == 32
    assert set(m["graphs"]) >= {"running", "batch"}
    assert m["weights"]["variant"] == "init"
    m18 = exported("resnet18")
    assert m18["preprocessing"]["crop"] == 224 and m18["preprocessing"]["resize_shorter"] == 256
    assert {b["id"]: b["shortcut_kind"] for b in m18["blocks"]}["layer2.0"] == "B"
    assert {b["id"]: b for b in m18["batchnorm"]}["layer2.0.downsample.1"]["input"] == "layer2.0.downsample.0"
    json.dumps(m)  # plain JSON


def test_dynamic_batch_axis(exported: Callable, models_dir: Path) -> None:
    exported("resnet20")
    sess = ort.InferenceSession(str(models_dir / "resnet20" / "init" / "running.onnx"))
    for n in (1, 3):
        (logits,) = sess.run(
            ["logits"], {"image": np.zeros((n, 3, 32, 32), np.float32), "gates": np.ones(9, np.float32)}
        )
        assert logits.shape == (n, 10)


def test_export_uses_imported_weights(exported: Callable, models_dir: Path, tmp_path: Path) -> None:
    from app.nets.export import export_model
    from app.nets.weights import import_weights

    model = build("resnet20", seed=7)
    _randomize_bn(model, seed=7)
    torch.save(model.state_dict(), tmp_path / "r20.pt")
    import_weights(tmp_path / "r20.pt", "resnet20", tmp_path / "m", "mine")
    man = export_model("resnet20", "mine", tmp_path / "m", kinds=("running",), log=False)
    assert man["weights"]["variant"] == "mine" and len(man["weights"]["sha256"]) == 64
    sess = ort.InferenceSession(str(tmp_path / "m" / "resnet20" / "mine" / "running.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (logits,) = sess.run(["logits"], {"image": x, "gates": np.ones(9, np.float32)})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)


def test_stats_graph_is_skipped_for_models_with_too_many_taps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.nets.export as export

    monkeypatch.setattr(export, "STATS_GRAPH_MAX_TAPS", 10)
    man = export.export_model("resnet20", "init", tmp_path, kinds=("stats-running", "bare"))
    assert set(man["graphs"]) == {"bare"}
    assert not (tmp_path / "resnet20" / "init" / "stats-running.onnx").exists()
    assert "skipped resnet20@init stats-running" in capsys.readouterr().out
