"""Analysis numbers against independent computations on torch's own tensors."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.nets.resnet import build
from app.runtime.analysis import analyze
from app.runtime.preprocess import prepare
from app.runtime.registry import ModelRegistry
from tests.conftest import png_bytes


def _torch_taps(name: str, x: np.ndarray, gates: np.ndarray, bn: str) -> dict[str, np.ndarray]:
    model = build(name)
    model.bn_mode = bn
    rec: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        rec["logits"] = model(torch.from_numpy(x), torch.from_numpy(gates), rec=rec.__setitem__)
    return {k: v.double().numpy() for k, v in rec.items()}


def _run(  # noqa: ANN202
    name: str, models_dir: Path, exported: Callable, bn: str, gates: np.ndarray, n: int = 1, maps: str = "all"
):
    """Analyse n images; ``maps="all"`` takes the tap-graph route, ``"blocks"`` the stats-graph route."""
    manifest = exported(name)
    reg = ModelRegistry(models_dir)
    model = reg.get(name, "init")
    x = np.stack([prepare(png_bytes((50, 40), seed=i), manifest["preprocessing"])[0] for i in range(n)])
    return analyze(reg, model, x, gates, bn, feature_maps=maps, k=4), _torch_taps(name, x, gates, bn), manifest


def _strided_sample(t: np.ndarray, limit: int = 4096) -> np.ndarray:
    """The documented histogram sample: every ceil(size/limit)-th element of each image, then every N-th."""
    rows = t.reshape(t.shape[0], -1)
    step = -(-rows.shape[1] // limit)
    return np.concatenate([r[::step] for r in rows])[:: t.shape[0]]


def _close(a: float, b: float, rel: float = 2e-4, scale: float = 1.0) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-3 * scale)


@pytest.mark.parametrize("maps", ["blocks", "all"])
@pytest.mark.parametrize(
    ("name", "bn", "n"),
    [("resnet20", "running", 1), ("resnet20", "batch", 2), ("resnet20", "running", 3), ("resnet18", "running", 1)],
)
def test_layer_stats_match_numpy_on_torch_tensors(
    name: str, bn: str, n: int, maps: str, models_dir: Path, exported: Callable
) -> None:
    gates = np.ones(9 if name == "resnet20" else 8, np.float32)
    gates[1] = 0.0
    result, ref, _ = _run(name, models_dir, exported, bn, gates, n, maps)
    for layer in result["layers"]:
        t = ref[layer["id"]]
        scale = float(np.abs(t).max())
        s = layer["stats"]
        assert _close(s["mean"], t.mean(), scale=scale), layer["id"]
        assert _close(s["std"], t.std(), scale=scale), layer["id"]  # population std
        assert _close(s["min"], t.min(), scale=scale) and _close(s["max"], t.max(), scale=scale), layer["id"]
        assert _close(s["l2"], float(np.sqrt((t**2).sum())), scale=scale), layer["id"]
        zf = float((t == 0).mean())
        assert abs(s["zero_fraction"] - zf) <= 2.0 / t[0].size + 1e-9, layer["id"]  # ties at exactly 0
        np.testing.assert_allclose(layer["channel_mean"], t.mean(axis=(0, 2, 3)), rtol=2e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(layer["channel_std"], t.std(axis=(0, 2, 3)), rtol=2e-3, atol=1e-4 * scale)
        h = layer["histogram"]
        values = _strided_sample(t.astype(np.float32))
        counts, _ = np.histogram(values, bins=np.asarray(h["edges"]))
        assert h["sampled"] == values.size
        assert abs(int(np.sum(np.abs(counts - np.asarray(h["counts"]))))) <= 0.002 * values.size + 2, layer["id"]
        assert abs(h["underflow"] - int((values < h["edges"][0]).sum())) <= 1
        assert abs(h["overflow"] - int((values > h["edges"][-1]).sum())) <= 1


def test_histogram_is_robust_to_one_outlier() -> None:
    from app.runtime.stats import histogram

    v = np.random.default_rng(0).standard_normal(10_000)
    v[0] = 1e6
    h = histogram(v)
    assert h["overflow"] >= 1 and h["edges"][-1] < 10
    assert max(h["counts"]) < 0.2 * v.size  # the bulk is spread over many bins, not flattened into one


@pytest.mark.parametrize("maps", ["blocks", "all"])
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_batchnorm_four_steps_reproduce_after_stats(bn: str, maps: str, models_dir: Path, exported: Callable) -> None:
    result, ref, _ = _run("resnet20", models_dir, exported, bn, np.ones(9, np.float32), n=2, maps=maps)
    for b in result["batchnorm"]:
        x = ref[b["input"]]
        mean, var = np.asarray(b["used_mean"]), np.asarray(b["used_var"])
        if bn == "batch":  # mu_B and sigma_B^2 per channel over batch x height x width
            np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)
        else:
            np.testing.assert_allclose(mean, b["running_mean"])
        g, beta = np.asarray(b["gamma"]), np.asarray(b["beta"])
        x_hat = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + b["eps"])
        y = g[None, :, None, None] * x_hat + beta[None, :, None, None]
        np.testing.assert_allclose(y, ref[b["id"]], rtol=1e-3, atol=1e-4)
        a = g / np.sqrt(var + b["eps"])
        after = next(layer for layer in result["layers"] if layer["id"] == b["id"])
        before = next(layer for layer in result["layers"] if layer["id"] == b["input"])
        np.testing.assert_allclose(
            after["channel_mean"], a * (np.asarray(before["channel_mean"]) - mean) + beta, rtol=1e-3, atol=1e-4
        )
        np.testing.assert_allclose(
            after["channel_std"], np.abs(a) * np.asarray(before["channel_std"]), rtol=1e-3, atol=1e-4
        )


@pytest.mark.parametrize("maps", ["blocks", "all"])
def test_blocks_norms_and_samples(maps: str, models_dir: Path, exported: Callable) -> None:
    result, ref, manifest = _run("resnet20", models_dir, exported, "running", np.ones(9, np.float32), maps=maps)
    for b, meta in zip(result["blocks"], manifest["blocks"], strict=True):
        nx = np.linalg.norm(ref[meta["input"]])
        nf = np.linalg.norm(ref[meta["residual"]])
        assert _close(b["norm_x"], nx) and _close(b["norm_f"], nf) and _close(b["norm_h"], np.linalg.norm(ref[b["id"]]))
        assert _close(b["ratio"], nf / nx)
        xs, fs = np.asarray(b["sample"]["x"]), np.asarray(b["sample"]["f"])
        assert 1000 <= xs.size <= 2100 and xs.size == fs.size
        np.testing.assert_allclose(xs, _strided_sample(ref[meta["shortcut"]], 2000), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(fs, _strided_sample(ref[meta["residual"]], 2000), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("maps", ["blocks", "all"])
def test_gates_change_exactly_what_they_should(maps: str, models_dir: Path, exported: Callable) -> None:
    on, _, _ = _run("resnet20", models_dir, exported, "running", np.ones(9, np.float32), maps=maps)
    gates = np.ones(9, np.float32)
    gates[4] = 0.0
    off, _, _ = _run("resnet20", models_dir, exported, "running", gates, maps=maps)
    ids = [layer["id"] for layer in on["layers"]]
    first = ids.index("layer2.1")  # block 4's output: the first tap the gate can touch
    for a, b in zip(on["layers"][:first], off["layers"][:first], strict=True):
        assert a["stats"] == b["stats"], a["id"]
    assert on["layers"][first]["stats"] != off["layers"][first]["stats"]
    assert [b["gate"] for b in off["blocks"]] == gates.tolist()


@pytest.mark.parametrize("maps", ["blocks", "all"])
def test_bn_modes_differ_only_where_bn_is(maps: str, models_dir: Path, exported: Callable) -> None:
    run, _, _ = _run("resnet20", models_dir, exported, "running", np.ones(9, np.float32), maps=maps)
    bat, _, _ = _run("resnet20", models_dir, exported, "batch", np.ones(9, np.float32), maps=maps)
    assert run["layers"][0]["stats"] == bat["layers"][0]["stats"]  # conv1 output: before any BN
    assert run["layers"][1]["stats"] != bat["layers"][1]["stats"]  # bn1 output
    assert abs(bat["layers"][1]["stats"]["mean"]) < 1e-4  # batch statistics centre each channel


@pytest.mark.parametrize(("maps", "count"), [("all", 50), ("blocks", 10)])
def test_feature_map_pngs(maps: str, count: int, models_dir: Path, exported: Callable) -> None:
    result, ref, _ = _run("resnet20", models_dir, exported, "running", np.ones(9, np.float32), maps=maps)
    fm = result["feature_maps"]
    assert len(fm) == count
    for tap, entry in fm.items():
        assert len(entry["png"]) == len(entry["channels"]) == 4
        t = ref[tap][0]
        top = np.argsort(-ref[tap].mean(axis=(0, 2, 3)), kind="stable")[:4]
        assert sorted(entry["channels"]) == sorted(top.tolist()), tap
        assert _close(entry["vmin"], t[entry["channels"]].min(), 1e-3, 1) and _close(
            entry["vmax"], t[entry["channels"]].max(), 1e-3, 1
        )
        lo, hi = entry["vmin"], entry["vmax"]
        for c, png in zip(entry["channels"], entry["png"], strict=True):
            im = Image.open(io.BytesIO(base64.b64decode(png)))
            assert im.format == "PNG" and im.size == (t.shape[2], t.shape[1])
            # Pixels follow the colour map: the brightest pixel is the channel's maximum, and so on.
            level = np.asarray(im.convert("L"), np.float64)
            expect = np.clip((t[c] - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(t[c])
            assert np.corrcoef(level.ravel(), expect.ravel())[0, 1] > 0.9 or expect.std() < 1e-6, (tap, c)


def test_models_with_too_many_taps_use_the_tap_graph(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path, exported: Callable
) -> None:
    """Above STATS_GRAPH_MAX_TAPS the stats graph is neither exported nor needed: same numbers, tap graph."""
    import app.runtime.analysis as analysis

    manifest = exported("resnet20")
    x = prepare(png_bytes((50, 40), seed=5), manifest["preprocessing"])[0][None]
    gates = np.ones(9, np.float32)
    reg = ModelRegistry(models_dir)
    model = reg.get("resnet20", "init")
    fast = analyze(reg, model, x, gates, "running")
    assert "stats-running" in model.sessions and "running" not in model.sessions
    monkeypatch.setattr(analysis, "STATS_GRAPH_MAX_TAPS", 10)
    model.sessions.clear()
    slow = analyze(reg, model, x, gates, "running")
    assert "running" in model.sessions and "stats-running" not in model.sessions
    for a, b in zip(fast["layers"], slow["layers"], strict=True):
        for key in ("mean", "std", "min", "max", "l2"):
            assert _close(a["stats"][key], b["stats"][key], rel=1e-5, scale=abs(b["stats"]["max"]) + 1), (a["id"], key)
        assert a["stats"]["zero_fraction"] == b["stats"]["zero_fraction"]
        assert a["histogram"]["sampled"] == b["histogram"]["sampled"]
