"""The documented JSON contract holds for real answers; the schema shows every answer, request body and parameter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from app.api.schemas import analysis as a
from app.api.schemas import responses as r
from app.api.schemas import shattered as sh
from tests.conftest import png_bytes

KINDS = ("running", "batch", "stats-running", "stats-batch", "grad-running", "grad-batch", "lesion")
TOKEN = "contract-token"


@pytest.fixture
def client(exported: Callable, make_client: Callable):  # noqa: ANN201
    exported("resnet20", kinds=KINDS)
    return make_client(admin_token=TOKEN)


def _valid(model: type[BaseModel], response) -> dict | list:  # noqa: ANN001
    assert response.status_code < 300, response.text
    body = response.json()
    items = body if isinstance(body, list) else [body]
    for item in items:
        model.model_validate(item, strict=True)
    return body


def _files(*blobs: bytes) -> list:
    return [("image", (f"x{i}.png", b, "image/png")) for i, b in enumerate(blobs)]


def test_explorer_answers_match_their_models(client) -> None:  # noqa: ANN001
    url = "/api/models/resnet20"
    img, other = png_bytes(seed=1), png_bytes(seed=2)
    full = _valid(a.Analysis, client.post(f"{url}/analyze", files=_files(img, other), params={"weights": "init"}))
    assert full["sections"] == "all" and full["batchnorm"] and full["feature_maps"]
    params = {"weights": "init", "sections": "summary", "gates": "all-off", "bn": "batch"}
    summary = _valid(a.Analysis, client.post(f"{url}/analyze", files=_files(img), params=params))
    assert summary["sections"] == "summary" and "batchnorm" not in summary
    image_id = client.post("/api/images", files=_files(png_bytes((256, 256), seed=3))).json()["id"]
    fm = {"weights": "init", "image_id": image_id, "tap": "layer1.0", "channel": 3}
    _valid(a.FeatureMap, client.get(f"{url}/featuremap", params=fm))
    grads = _valid(a.Gradients, client.post(f"{url}/gradients", files=_files(img), params={"weights": "init"}))
    assert grads["target_source"] == "predicted top-1"
    chosen = {"weights": "init", "target": "3"}
    _valid(a.Gradients, client.post(f"{url}/gradients", files=_files(img, other), params=chosen))
    _valid(a.Lesion, client.post(f"{url}/lesion", files=_files(img), params=chosen))
    sweep = {"weights": "init", "depths": "20"}
    _valid(a.DepthSweep, client.get("/api/gradients/depth-sweep", params=sweep))


def test_other_answers_match_their_models(client) -> None:  # noqa: ANN001
    admin = {"Authorization": f"Bearer {TOKEN}"}
    _valid(r.Health, client.get("/healthz"))
    _valid(r.Readiness, client.get("/readyz"))
    _valid(r.ModelRow, client.get("/api/models"))
    _valid(r.Manifest, client.get("/api/models/resnet20", params={"weights": "init"}))
    stored = _valid(r.StoredImage, client.post("/api/images", files=_files(png_bytes((256, 300)))))
    _valid(r.ImageEntry, client.get("/api/images", headers=admin))
    _valid(r.StoreStats, client.get("/api/images/stats", headers=admin))
    _valid(r.PinState, client.post(f"/api/images/{stored['id']}/pin"))
    _valid(r.PinState, client.delete(f"/api/images/{stored['id']}/pin", headers=admin))
    _valid(r.Deleted, client.delete(f"/api/images/{stored['id']}", headers=admin))
    _valid(r.LabTraining, client.get("/api/lab/training"))
    _valid(sh.ShatteredLab, client.get("/api/lab/shattered"))
    _valid(r.LandscapeList, client.get("/api/lab/landscapes"))
    _valid(r.LandscapePair, client.get("/api/lab/landscapes/resnet56"))
    _valid(r.Chapter, client.get("/api/chapter", params={"n": "9"}))
    _valid(r.Dataset, client.get("/api/regression/datasets"))
    _valid(r.Regression, client.post("/api/regression", json={"dataset": "curved", "degree": 2}))
    _valid(r.Exports, client.get("/api/exports"))


def test_fig7_matches_its_model(exported: Callable, models_dir) -> None:  # noqa: ANN001
    from app.api.lab import fig7
    from app.runtime.registry import ModelRegistry

    for variant in ("trained", "plain"):
        exported("resnet20", variant, kinds=("stats-running",))
    out = fig7(ModelRegistry(models_dir), "running", names=("resnet20",))
    assert r.Fig7.model_validate(out, strict=True).series


def test_schema_shows_every_answer_and_body(client) -> None:  # noqa: ANN001
    spec = client.get("/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in spec["paths"].items() for m, op in item.items()}

    def answer(method: str, path: str, status: str = "200") -> str:
        return ops[(method, path)]["responses"][status]["content"]["application/json"]["schema"].get("$ref", "")

    assert answer("POST", "/api/models/{name}/analyze").endswith("/Analysis")
    assert answer("POST", "/api/models/{name}/gradients").endswith("/Gradients")
    assert answer("POST", "/api/models/{name}/lesion").endswith("/Lesion")
    assert answer("GET", "/api/models/{name}/featuremap").endswith("/FeatureMap")
    assert answer("POST", "/api/images", "201").endswith("/StoredImage")
    assert answer("GET", "/readyz").endswith("/Readiness")
    for path in ("analyze", "gradients", "lesion"):
        op = ops[("POST", f"/api/models/{{name}}/{path}")]
        form = op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
        assert form["image"]["items"]["format"] == "binary" and "weights" in form
        assert {"image_id", "weights", "gates"} <= {p["name"] for p in op["parameters"]}
    upload = ops[("POST", "/api/images")]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["image"]
    for (method, path), op in ops.items():
        if path.startswith("/api/export/"):  # app/api/embed.py's own route, described there
            continue
        for p in op.get("parameters", []):
            assert p.get("description"), f"{method} {path}: parameter {p['name']} has no description"
