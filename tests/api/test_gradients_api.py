"""Gradient, lesion and depth-sweep endpoints against torch autograd and torch forward passes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.nets.resnet import build
from app.runtime.preprocess import prepare
from tests.conftest import png_bytes

KINDS = ("running", "batch", "stats-running", "stats-batch", "grad-running", "grad-batch", "lesion")


@pytest.fixture
def client(exported: Callable, make_client: Callable):  # noqa: ANN201
    exported("resnet20", kinds=KINDS)
    return make_client()


def _autograd(x: np.ndarray, gates: np.ndarray, bn: str, target: int | None) -> dict[str, float]:
    model = build("resnet20")
    model.bn_mode = bn
    rec: dict[str, torch.Tensor] = {}

    def keep(name: str, t: torch.Tensor) -> None:
        t.retain_grad()
        rec[name] = t

    logits = model(torch.from_numpy(x), torch.from_numpy(gates), rec=keep)
    t = logits.argmax(1) if target is None else torch.full((x.shape[0],), target)
    loss = F.cross_entropy(logits, t)
    loss.backward()
    out = {"loss": float(loss.detach()), "target": int(t[0])}
    for name, p in model.named_parameters():
        out[f"w:{name}"] = float(p.grad.norm())
    for name, v in rec.items():
        out[f"a:{name}"] = float(v.grad.norm())
    return out


@pytest.mark.parametrize(
    ("bn", "gates"), [("running", "all-on"), ("batch", "all-off"), ("running", "1,0,1,0,0.5,1,0,1,1")]
)
def test_gradient_norms_match_autograd(client, bn: str, gates: str) -> None:  # noqa: ANN001
    data = png_bytes(seed=2)
    r = client.post(
        "/api/models/resnet20/gradients",
        files={"image": ("a.png", data, "image/png")},
        params={"weights": "init", "bn": bn, "gates": gates},
    )
    assert r.status_code == 200, r.text
    j = r.json()
    manifest = client.get("/api/models/resnet20", params={"weights": "init"}).json()
    x = prepare(data, manifest["preprocessing"])[0][None]
    g = np.asarray(j["gates"], np.float32)
    ref = _autograd(x, g, bn, None)
    assert j["target"] == [ref["target"]] and j["target_source"] == "predicted top-1"
    assert j["loss"] == pytest.approx(ref["loss"], rel=1e-4)
    prev = "relu"
    for b in j["blocks"]:
        assert b["grad_norm_out"] == pytest.approx(ref[f"a:{b['id']}"], rel=1e-4, abs=1e-9)
        assert b["grad_norm_in"] == pytest.approx(ref[f"a:{prev}"], rel=1e-4, abs=1e-9)
        prev = b["id"]
    for layer in j["layers"]:
        key = "weight" if layer["kind"] != "fc" else "weight"
        assert layer["weight_grad_norm"] == pytest.approx(ref[f"w:{layer['id']}.{key}"], rel=1e-4, abs=1e-9)
        if layer["kind"] == "bn":
            assert layer["bias_grad_norm"] == pytest.approx(ref[f"w:{layer['id']}.bias"], rel=1e-4, abs=1e-9)
        elif layer["kind"] == "conv":
            assert layer["activation_grad_norm"] == pytest.approx(ref[f"a:{layer['id']}"], rel=1e-4, abs=1e-9)


def test_chosen_target_and_bad_target(client) -> None:  # noqa: ANN001
    files = {"image": ("a.png", png_bytes(seed=2), "image/png")}
    j = client.post("/api/models/resnet20/gradients", files=files, params={"weights": "init", "target": 7}).json()
    assert j["target"] == [7] and j["target_source"] == "chosen" and j["target_label"] == ["horse"]
    for bad in ("10", "-1", "cat"):
        r = client.post("/api/models/resnet20/gradients", files=files, params={"weights": "init", "target": bad})
        assert r.status_code == 400 and "target" in r.json()["detail"]
    # weights=init: the session exported only those (the default, trained, would be queued: 503)
    bad_image = {"image": ("a.png", b"not an image", "image/png")}
    r = client.post("/api/models/resnet20/gradients", files=bad_image, params={"weights": "init"})
    assert r.status_code == 400
    r = client.post("/api/models/resnet20/gradients", files=files, params={"weights": "init", "bn": "nope"})
    assert r.status_code == 400
    assert client.get("/healthz").status_code == 200


def test_lesion_matches_torch(client) -> None:  # noqa: ANN001
    data = png_bytes(seed=4)
    j = client.post(
        "/api/models/resnet20/lesion", files={"image": ("a.png", data, "image/png")}, params={"weights": "init"}
    ).json()
    manifest = client.get("/api/models/resnet20", params={"weights": "init"}).json()
    x = torch.from_numpy(prepare(data, manifest["preprocessing"])[0][None])
    model = build("resnet20")
    model.bn_mode = "running"
    with torch.no_grad():
        base = F.softmax(model(x), 1)[0]
        assert j["target"] == int(base.argmax()) and j["base_probability"] == pytest.approx(float(base.max()), rel=1e-4)
        for i, b in enumerate(j["blocks"]):
            branch = torch.ones(1, 9)
            branch[0, i] = 0.0
            p = F.softmax(model(x, branch=branch), 1)[0, j["target"]]
            assert b["probability"] == pytest.approx(float(p), rel=1e-3, abs=1e-6), b["id"]
            assert b["delta"] == pytest.approx(float(p) - float(base.max()), abs=1e-5)


def test_branch_zero_keeps_only_the_shortcut() -> None:
    model = build("resnet20")
    x = torch.randn(1, 3, 32, 32)
    rec: dict[str, torch.Tensor] = {}
    branch = torch.ones(1, 9)
    branch[0, 4] = 0.0
    with torch.no_grad():
        model(x, branch=branch, rec=rec.__setitem__)
    torch.testing.assert_close(rec["layer2.1"], F.relu(rec["layer2.0"]))
