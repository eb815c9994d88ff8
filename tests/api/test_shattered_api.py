"""POST /api/models/{name}/shattered (checks, answer shape) and GET /api/lab/shattered (the shipped study)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.schemas.shattered import Shattered, ShatteredLab
from app.paths import EXPORT_FORMAT
from app.runtime import shattered as sh
from app.runtime.preprocess import sha256_bytes
from app.runtime.samples import sample_bytes

URL = "/api/models/{}/shattered"
SAMPLE_ID = sha256_bytes(sample_bytes("set-disc"))


@pytest.fixture
def client(exported: Callable, make_client: Callable) -> TestClient:
    exported("resnet20", kinds=("running",))
    return make_client(export_on_demand=False)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("resnet50", {}, "CIFAR ResNets up to ResNet-110"),
        ("resnet1202", {}, "CIFAR ResNets up to ResNet-110"),
        ("resnet20", {"points": "8"}, "points must be between 16 and 512"),
        ("resnet20", {"points": "1000"}, "points must be between 16 and 512"),
        ("resnet20", {"points": "many"}, "points must be an integer"),
        ("resnet20", {"seed": "-1"}, "seed must be between"),
        ("resnet20", {"target": "10"}, "target must be a class index in [0, 9]"),
        ("resnet20", {"target": "dog"}, "target must be a class index or 'predicted'"),
        ("resnet20", {"gates": "0.5"}, "gates has 1 values but this model has 9 blocks"),
    ],
)
def test_bad_requests_are_400(client: TestClient, name: str, params: dict, message: str) -> None:
    r = client.post(URL.format(name), params={"image_id": SAMPLE_ID, "weights": "init", **params})
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]


def test_one_image_exactly(client: TestClient) -> None:
    r = client.post(URL.format("resnet20"))
    assert r.status_code == 400 and "exactly one image" in r.json()["detail"]
    r = client.post(URL.format("resnet20"), params={"image_id": [SAMPLE_ID, SAMPLE_ID]})
    assert r.status_code == 400


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.post(URL.format("resnet21"), params={"image_id": SAMPLE_ID})
    assert r.status_code == 404 and "resnet20" in r.json()["known"]


def test_without_the_explain_graph_it_is_404(exported: Callable, models_dir, tmp_path) -> None:  # noqa: ANN001
    """Exports on demand are off and the explain graph is not exported: 404 with the export command, not 500."""
    import shutil

    from app.config import Settings
    from app.main import create_app

    exported("resnet20", kinds=("running",))
    only_running = tmp_path / "models"
    shutil.copytree(models_dir / "resnet20" / "init", only_running / "resnet20" / "init")
    for f in (only_running / "resnet20" / "init").glob("explain-*.onnx"):
        f.unlink()
    settings = Settings(
        models_dir=only_running,
        data_dir=tmp_path / "data",
        export_on_start=False,
        warm_on_start=False,
        export_on_demand=False,
    )
    with TestClient(create_app(settings)) as client:
        r = client.post(URL.format("resnet20"), params={"image_id": SAMPLE_ID, "weights": "init"})
    assert r.status_code == 404, r.text
    assert "not exported" in r.json()["detail"] and "resviz export resnet20" in r.json()["detail"]


def test_answer_shape(exported: Callable, make_client: Callable) -> None:
    exported("resnet20", "init", kinds=("running", sh.KIND))
    client = make_client(export_on_demand=False)
    params = {"image_id": SAMPLE_ID, "weights": "init", "points": "32", "seed": "4", "gates": "all-off"}
    r = client.post(URL.format("resnet20"), params=params)
    assert r.status_code == 200, r.text
    doc = r.json()
    Shattered.model_validate(doc, strict=True)
    assert doc["points"] == 32 and doc["seed"] == 4 and doc["gates"] == [0.0] * 9 and doc["bn"] == "running"
    assert doc["target_source"] == "predicted top-1 at x0" and doc["image_sha256"] == SAMPLE_ID
    assert len(doc["t"]) == 32 and doc["lags"] == list(range(9)) and doc["freq"] == list(range(1, 17))
    for key in ("direction", "pixel_gradient"):
        s = doc[key]
        assert len(s["trace"]) == 32 and len(s["autocorr"]) == 9 and len(s["spectrum"]["power"]) == 16
        assert s["autocorr"][0] == pytest.approx(1.0) and s["std"] == pytest.approx(np.std(s["trace"]))
    assert doc["span"] == pytest.approx(np.sqrt(3 * 32 * 32))
    files = {"image": ("disc.png", sample_bytes("set-disc"), "image/png")}
    same = client.post(URL.format("resnet20"), files=files, data={k: v for k, v in params.items() if k != "image_id"})
    assert same.json()["direction"] == doc["direction"], "a multipart upload of the same image, the same answer"


# ---------------------------------------------------------------- the shipped study


def _shipped() -> dict:
    assert sh.SHIPPED_PATH.exists(), "models/weights/shattered.json is missing: run python scripts/shattered.py"
    return json.loads(sh.SHIPPED_PATH.read_text())


def test_shipped_study_is_small_and_says_how_it_was_made() -> None:
    assert sh.SHIPPED_PATH.stat().st_size < 300_000
    doc = _shipped()
    assert doc["command"].startswith("python scripts/shattered.py") and doc["graph"] == "explain-running.onnx"
    assert isinstance(doc["format"], int) and doc["image"]["sha256"] and doc["image"]["label"] == "disc"
    runs = {(r["depth"], r["net"], r["weights"]) for r in doc["runs"]}
    assert runs == {(d, n, w) for d in (20, 56, 110) for n in ("residual", "plain") for w in ("init", "trained")}
    for r in doc["runs"]:
        assert r["variant"] == ("init" if r["weights"] == "init" else "trained" if r["net"] == "residual" else "plain")


def test_shipped_numbers_are_those_of_the_shipped_traces() -> None:
    """Each stored slope and lag-1 autocorrelation, recomputed with numpy from the stored (rounded) trace."""
    doc = _shipped()
    p = doc["points"]
    k = np.arange(1, p // 2 + 1)
    for r in doc["runs"]:
        for key in ("direction", "pixel_gradient"):
            s = r[key]
            if s["std"] in (None, 0.0):
                assert s["spectrum"]["slope"] is None and r["notes"], (r["depth"], r["net"], r["weights"])
                continue
            g = np.array(s["trace"], np.float64)
            d = g - g.mean()
            power = (np.abs(np.fft.rfft(d)) ** 2 / p)[1 : p // 2 + 1]
            slope = np.polyfit(np.log10(k), np.log10(power), 1)[0]
            assert s["spectrum"]["slope"] == pytest.approx(slope, abs=0.01), (r["depth"], r["net"], key)
            lag1 = (d[:-1] @ d[1:]) / (d @ d)
            assert s["lag1"] == pytest.approx(lag1, abs=2e-3)
            assert s["std"] == pytest.approx(g.std(), rel=1e-3)


def test_lab_serves_the_study_with_its_summary(make_client: Callable) -> None:
    client = make_client()
    r = client.get("/api/lab/shattered")
    assert r.status_code == 200
    lab = r.json()
    ShatteredLab.model_validate(lab, strict=True)
    doc = _shipped()
    assert lab["runs"] == doc["runs"] and lab["depths"] == [20, 56, 110]
    assert len(lab["summary"]) == 6
    by = {(x["depth"], x["net"], x["weights"]): x for x in doc["runs"]}
    for row in lab["summary"]:
        for net in ("residual", "plain"):
            run = by[(row["depth"], net, row["weights"])]
            assert row[f"{net}_slope"] == run["direction"]["spectrum"]["slope"]
            assert row[f"{net}_lag1"] == run["direction"]["lag1"]
            assert row[f"{net}_pixel_slope"] == run["pixel_gradient"]["spectrum"]["slope"]
    assert (doc["format"] == EXPORT_FORMAT) == (not any("export format" in n for n in lab["notes"]))


def test_a_stale_study_says_so(tmp_path) -> None:  # noqa: ANN001
    doc = _shipped()
    stale = {**doc, "format": EXPORT_FORMAT - 1, "runs": [{**doc["runs"][2], "sha256": "0" * 64}]}
    path = tmp_path / "shattered.json"
    path.write_text(json.dumps(stale))
    notes = sh.lab_study(path)["notes"]
    assert any(f"export format {EXPORT_FORMAT - 1}" in n for n in notes)
    assert any("resnet20@trained changed" in n for n in notes)
    assert sh.lab_study(tmp_path / "missing.json") is None


def test_shattered_charts_embed_and_export(make_client: Callable) -> None:
    """The model of a chart link picks the depth: one of the study's, else 400; the embed links the lab."""
    client = make_client()
    r = client.get("/embed/shattered-spectra", params={"model": "resnet56", "caption": "1"})
    assert r.status_code == 200, r.text
    assert 'href="/lab?model=resnet56"' in r.text and "ResNet-56 and plain-56" in r.text
    r = client.get("/embed/shattered-traces", params={"model": "resnet32"})
    assert r.status_code == 400 and "resnet20, resnet56, resnet110" in r.text
    r = client.get("/api/export/shattered-autocorr.html", params={"model": "resnet110"})
    assert r.status_code == 200 and "resviz-shattered-autocorr-resnet110" in r.headers["content-disposition"]
    assert client.get("/api/export/shattered-autocorr.html", params={"model": "resnet18"}).status_code == 400
    from app.lecture.presets import step_url

    step = {"chart": "shattered-traces", "mode": "page", "query": "model=resnet56", "hide": ""}
    assert step_url(step) == "/lab?model=resnet56"
    assert step_url({**step, "mode": "embed"}) == "/embed/shattered-traces?model=resnet56"
