"""The depth sweep (one depth at a time, fallbacks said, precomputed rows), the live collapse table, offline /docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.nets.resnet import build
from app.nets.weights import load_variant
from app.runtime import sweeps
from app.runtime.preprocess import prepare, sha256_bytes
from app.runtime.registry import ModelRegistry
from app.runtime.samples import probe_png

KINDS = ("running", "grad-running", "grad-batch")
SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"


@pytest.fixture
def client(exported: Callable, make_client: Callable):  # noqa: ANN201
    for variant in ("trained", "plain"):
        exported("resnet20", variant, kinds=KINDS)
    return make_client()


def _first_grad(name: str, variant: str, x: np.ndarray, gates: float, bn: str, models_dir: Path) -> float:
    """||dL/dW|| of the first block's first conv by torch autograd (cross-entropy to the predicted class)."""
    model = build(name)
    state, _, _ = load_variant(name, variant, models_dir)
    if state is not None:
        model.load_state_dict(state)
    model.bn_mode = bn
    xt = torch.from_numpy(x)
    logits = model(xt, torch.full((model.spec.num_blocks,), gates))
    F.cross_entropy(logits, logits.argmax(1)).backward()
    return float(model.layer1[0].conv1.weight.grad.norm())


@pytest.mark.parametrize("bn", ["running", "batch"])
def test_one_depth_matches_autograd(client, models_dir: Path, bn: str) -> None:  # noqa: ANN001
    r = client.get("/api/gradients/depth-sweep", params={"bn": bn, "weights": "trained", "depths": "20"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["depths"] == [20] and j["fallbacks"] == []
    row = j["rows"][0]
    assert row["residual"]["weights"] == "trained" and row["plain"]["weights"] == "plain" and not row["fallback"]
    manifest = client.get("/api/models/resnet20", params={"weights": "trained"}).json()
    x = prepare(probe_png(), manifest["preprocessing"])[0][None]
    want_on = _first_grad("resnet20", "trained", x, 1.0, bn, models_dir)
    want_off = _first_grad("resnet20", "plain", x, 0.0, bn, models_dir)
    assert j["residual"][0] == pytest.approx(want_on, rel=1e-3)
    assert j["plain"][0] == pytest.approx(want_off, rel=1e-3)


def test_missing_trained_weights_fall_back_and_say_so(client, monkeypatch: pytest.MonkeyPatch, exported) -> None:  # noqa: ANN001
    exported("resnet20", "init", kinds=KINDS)
    monkeypatch.setattr(ModelRegistry, "variants", lambda self, name: ["init"])
    j = client.get("/api/gradients/depth-sweep", params={"bn": "batch", "depths": "20"}).json()
    row = j["rows"][0]
    assert row["fallback"] and j["fallbacks"] == [20]
    assert row["residual"]["weights"] == "init" and "He-init" in row["note"]


def test_bad_sweep_parameters_are_400(client) -> None:  # noqa: ANN001
    for params in ({"depths": "21"}, {"depths": "x"}, {"weights": "plain"}, {"bn": "nope"}):
        r = client.get("/api/gradients/depth-sweep", params=params)
        assert r.status_code == 400, (params, r.text)


def test_precomputed_row_is_served_only_while_the_weights_match(client, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    real = sweeps.precomputed_row
    monkeypatch.setattr(sweeps, "precomputed_row", lambda *a, **k: None)  # as if nothing were shipped
    computed = client.get("/api/gradients/depth-sweep", params={"bn": "batch", "depths": "20"}).json()
    monkeypatch.setattr(sweeps, "precomputed_row", real)
    row = computed["rows"][0]
    assert row["source"] == "computed" and len(row["residual"]["sha256"]) == 64
    path = tmp_path / "depth-sweep.json"
    fake = {**row, "residual": {**row["residual"], "first_grad": 123.0}}
    sha = sha256_bytes(probe_png())
    doc = {"format": sweeps.EXPORT_FORMAT, "image_sha256": sha, "sweeps": {"trained|batch": [fake]}}
    path.write_text(json.dumps(doc))
    variants = ["trained", "plain", "init"]
    assert (
        sweeps.precomputed_row(sha256_bytes(probe_png()), "trained", "batch", 20, variants, path)["residual"][
            "first_grad"
        ]
        == 123.0
    )
    assert sweeps.precomputed_row("0" * 64, "trained", "batch", 20, variants, path) is None  # another image
    assert sweeps.precomputed_row(sha256_bytes(probe_png()), "trained", "batch", 20, ["init"], path) is None
    doc["sweeps"]["trained|batch"][0]["plain"]["sha256"] = "f" * 64  # retrained weights: recompute
    path.write_text(json.dumps(doc))
    assert sweeps.precomputed_row(sha256_bytes(probe_png()), "trained", "batch", 20, variants, path) is None


@pytest.mark.slow
def test_shipped_precomputed_sweep_matches_a_live_computation(exported: Callable, make_client: Callable) -> None:
    data = sweeps.load_precomputed()
    assert data, "models/weights/depth-sweep.json is missing: run scripts/depth_sweep.py"
    for d in (20, 32, 44, 56, 110):
        for variant in ("trained", "plain"):
            exported(f"resnet{d}", variant, kinds=KINDS)
    client = make_client()
    for bn in ("running", "batch"):
        j = client.get("/api/gradients/depth-sweep", params={"bn": bn}).json()
        assert j["source"] == "precomputed" and j["fallbacks"] == []
        svc = client.app.state.service

        from app.runtime.gradients import sweep_row

        for d, on, off in zip(j["depths"], j["residual"], j["plain"], strict=True):
            row = sweep_row(svc.registry, d, probe_png(), "trained", bn, svc.images)
            for shipped, live in ((on, row["residual"]["first_grad"]), (off, row["plain"]["first_grad"])):
                if live is None:  # float32 overflow (trained plain-110, running BN): no number either way
                    assert shipped is None
                else:
                    assert shipped == pytest.approx(live, rel=1e-4)


def test_collapse_table_matches_autograd(client, models_dir: Path) -> None:  # noqa: ANN001
    r = client.get("/api/gradients/collapse", params={"bn": "running", "models": "resnet20"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["bn"] == "running" and len(j["images"]) == 10
    (row,) = j["rows"]
    manifest = client.get("/api/models/resnet20", params={"weights": "trained"}).json()
    x = np.stack([prepare(p.read_bytes(), manifest["preprocessing"])[0] for p in sorted(SAMPLES.glob("set-*.png"))])
    on, off = (_first_grad("resnet20", "trained", x, g, "running", models_dir) for g in (1.0, 0.0))
    assert row["on_first"] == pytest.approx(on, rel=1e-3)
    assert row["off_first"] == pytest.approx(off, rel=1e-3)
    assert row["first_drop"] == pytest.approx(row["on_first"] / row["off_first"])
    assert client.get("/api/gradients/collapse", params={"models": "resnet18"}).status_code == 400
    assert client.get("/api/gradients/collapse", params={"bn": "x"}).status_code == 400


def test_api_docs_work_offline(make_client: Callable) -> None:
    client = make_client()
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(path).text
        assert f"/docs/assets/{asset}" in html
        assert "cdn" not in html.lower() and "https://" not in html, "no asset from outside the app"
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
        assert len(r.content) > 100_000
    assert "<script>" not in client.get("/docs").text, "no inline script (CSP script-src 'self')"
    assert client.get("/docs/assets/main.py").status_code == 404
    assert client.get("/openapi.json").status_code == 200
