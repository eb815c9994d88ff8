"""POST /api/models/{name}/explain and ``resviz explain``: the contract, its checks, missing graphs, the CLI."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

from app.api.schemas.analysis import Explanation
from app.cli import main
from app.config import Settings
from app.main import create_app
from app.nets.resnet import build
from app.runtime.preprocess import prepare
from tests.conftest import png_bytes
from tests.runtime.test_exports import Fake

KINDS = ("running", "batch", "explain-running", "explain-batch")
URL = "/api/models/resnet20/explain"


@pytest.fixture
def client(exported: Callable, make_client: Callable) -> TestClient:
    exported("resnet20", kinds=KINDS)
    return make_client()


def _post(client: TestClient, data: bytes, **params: object) -> object:
    return client.post(URL, files={"image": ("a.png", data, "image/png")}, params={"weights": "init", **params})


def _png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_answer_keeps_the_contract(client: TestClient) -> None:
    data = png_bytes(seed=3)
    r = _post(client, data)
    assert r.status_code == 200, r.text
    j = r.json()
    Explanation.model_validate(j, strict=True)
    assert j["method"] == "gradcam" and j["layer"] == "layer3.2" and j["bn"] == "running"
    assert j["model"] == {"name": "resnet20", "weights": "init", "depth": 20}
    assert j["input_shape"] == [32, 32] and j["map_shape"] == [8, 8] and len(j["map"]) == 8
    assert j["range"] == [min(map(min, j["map"])), max(map(max, j["map"]))]
    assert j["layers"] == [{k: j[k] for k in ("layer", "map_shape", "map", "range", "overlay_png")} | {"stage": 3}]
    assert _png(j["overlay_png"]).size == (32, 32) and _png(j["input_png"]).size == (32, 32)
    # the input PNG is the crop the network saw
    manifest = client.get("/api/models/resnet20", params={"weights": "init"}).json()
    crop = np.asarray(prepare(data, manifest["preprocessing"])[1])
    assert np.abs(np.asarray(_png(j["input_png"]), np.int16) - crop).max() <= 1
    # the predicted class and its probability, as torch has them
    x = torch.from_numpy(prepare(data, manifest["preprocessing"])[0][None])
    with torch.no_grad():
        p = F.softmax(build("resnet20")(x), 1)[0]
    assert j["target"] == int(p.argmax()) and j["target_source"] == "predicted top-1"
    assert j["probability"] == pytest.approx(float(p.max()), rel=1e-4)


def test_every_method_and_all_layers(client: TestClient) -> None:
    data = png_bytes(seed=4)
    for method in ("gradcampp", "hirescam", "layercam"):
        j = _post(client, data, method=method, layer="all", gates="all-off", bn="batch").json()
        Explanation.model_validate(j, strict=True)
        assert j["layer"] == "all" and "map" not in j and "overlay_png" not in j
        assert [e["layer"] for e in j["layers"]][:2] == ["relu", "layer1.0"] and len(j["layers"]) == 10
        assert [e["stage"] for e in j["layers"]] == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert all(_png(e["overlay_png"]).size == (32, 32) for e in j["layers"])
    j = _post(client, data, layer="all", overlays="false").json()
    assert all(e["overlay_png"] is None for e in j["layers"]) and j["input_png"] is None
    Explanation.model_validate(j, strict=True)
    for method, params in (("saliency", {}), ("smoothgrad", {"samples": 4}), ("ig", {"steps": 8})):
        j = _post(client, data, method=method, target=2, **params).json()
        Explanation.model_validate(j, strict=True)
        assert j["layer"] == "input" and j["map_shape"] == [32, 32] and j["target"] == 2
        assert j["target_source"] == "chosen" and j["target_label"] == "bird"
    assert j["params"]["steps"] == 8 and set(j["params"]["completeness"]) >= {"attribution_sum", "score_difference"}
    j = _post(client, data, method="smoothgrad", samples=4, bn="batch").json()
    assert j["params"]["samples"] == 4 and any("batch statistics" in n for n in j["notes"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "gradcam++"}, "method must be one of gradcam, gradcampp"),
        ({"layer": "layer9.9"}, "layer must be 'all', the stem 'relu' or a block such as layer3.2"),
        ({"layer": "input"}, "layer must be 'all'"),
        ({"target": "10"}, "target must be a class index in [0, 9]"),
        ({"target": "-1"}, "target must be a class index"),
        ({"target": "cat"}, "target must be a class index or 'predicted'"),
        ({"gates": "1,0"}, "gates has 2 values but this model has 9 blocks"),
        ({"gates": "all-of"}, "gates must be 'all-on', 'all-off'"),
        ({"bn": "train"}, "bn must be one of running, batch"),
        ({"method": "smoothgrad", "samples": "0"}, "samples (SmoothGrad's noisy copies) must be between 1 and 64"),
        ({"method": "smoothgrad", "samples": "65"}, "samples"),
        ({"samples": "many"}, "samples must be an integer"),
        ({"method": "ig", "steps": "129"}, "steps (integrated gradients' steps) must be between 1 and 128"),
        ({"steps": "1.5"}, "steps must be an integer"),
        ({"overlays": "maybe"}, "overlays must be true or false"),
    ],
)
def test_bad_requests_are_400_with_a_message(client: TestClient, params: dict, message: str) -> None:
    r = _post(client, png_bytes(seed=5), **params)
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"], r.json()["detail"]


def test_no_or_two_images_and_a_bad_upload(client: TestClient) -> None:
    assert client.post(URL, params={"weights": "init"}).status_code == 400
    two = [("image", ("a.png", png_bytes(seed=1), "image/png")), ("image", ("b.png", png_bytes(seed=2), "image/png"))]
    r = client.post(URL, files=two, params={"weights": "init"})
    assert r.status_code == 400 and "exactly one image" in r.json()["detail"]
    r = client.post(URL, files={"image": ("a.png", b"not an image", "image/png")}, params={"weights": "init"})
    assert r.status_code == 400
    assert client.post("/api/models/resnet999/explain").status_code == 404


def test_stored_image_by_id_and_the_cache(client: TestClient) -> None:
    data = png_bytes((256, 256), seed=6)
    image_id = client.post("/api/images", files={"image": ("a.png", data, "image/png")}).json()["id"]
    params = {"weights": "init", "image_id": image_id, "method": "layercam", "layer": "layer2.1"}
    first = client.post(URL, params=params)
    assert first.status_code == 200, first.text
    assert first.json()["image"] == image_id and first.json()["map_shape"] == [16, 16]
    assert client.post(URL, params=params).content == first.content


@pytest.fixture
def missing_graphs(tmp_path: Path, exported: Callable, models_dir: Path) -> Iterator[tuple[TestClient, Fake]]:
    """A server whose resnet20@init has its tap graph but no explain graphs, exporting with the fake command."""
    exported("resnet20", kinds=("running",))
    src, dst = models_dir / "resnet20" / "init", tmp_path / "models" / "resnet20" / "init"
    dst.mkdir(parents=True)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["graphs"] = {"running": manifest["graphs"]["running"]}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(src / "running.onnx", dst / "running.onnx")
    shutil.copy(src / manifest["weights_file"]["file"], dst / manifest["weights_file"]["file"])
    fake = Fake(tmp_path)
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data", export_on_start=False)
    with TestClient(create_app(settings, export_command=fake.command)) as client:
        yield client, fake
        fake.release()


def test_missing_graphs_are_exported_on_demand(missing_graphs: tuple[TestClient, Fake]) -> None:
    client, fake = missing_graphs
    r = _post(client, png_bytes(seed=7), bn="batch")
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    assert "explain-batch" in r.json()["export"]["graphs"]
    pending = client.get("/api/exports").json()["pending"]
    assert pending and "explain-batch" in pending[0]["graphs"]


def test_cli_prints_the_endpoints_json(
    tmp_path: Path, client: TestClient, models_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(seed=8))
    base = ["--models-dir", str(models_dir), "explain", str(img), "--model", "resnet20", "--weights", "init"]
    cases = [
        {"method": "hirescam", "layer": "layer2.0", "gates": "all-off"},
        {"method": "ig", "steps": "4", "target": "3", "bn": "batch"},
        {"layer": "all", "overlays": "false"},
    ]
    for params in cases:
        args = [part for key, value in params.items() for part in (f"--{key}", value)]
        assert main([*base, *args, "--json"]) == 0
        cli = json.loads(capsys.readouterr().out)
        api = _post(client, img.read_bytes(), **params).json()
        assert cli == api, params
    assert main([*base, "--method", "smoothgrad", "--samples", "2"]) == 0
    assert "smoothgrad for class" in capsys.readouterr().out
    assert main([*base, "--layer", "layer7.0"]) == 2
    assert "layer must be 'all'" in capsys.readouterr().err
