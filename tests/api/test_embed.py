"""Lecture mode: chart catalogue, embeds that survive restarts, CSP, readable errors, offline export, presets, store."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.lecture.catalogue import CHARTS, EXPLAIN_CHARTS
from app.lecture.presets import EXAMPLE_PRESET, decode_steps, encode_steps
from app.lecture.standalone import network_references
from app.main import create_app
from app.runtime.store import ImageStore, StoreFullError
from tests.conftest import png_bytes

GRAPHS = ("running", "batch", "stats-running", "stats-batch", "grad-running", "grad-batch", "lesion", "explain-running")
REQUIRED = {
    "activations",
    "histogram",
    "heatmap",
    "featuremaps",
    "batchnorm",
    "gradients",
    "depth-sweep",
    "lesion",
    "residuals",
    "residual-scatter",
    "prediction",
}
BASE = {"model": "resnet20", "weights": "init"}
EXPLAIN_SEL = {"method": "gradcam", "target": None, "opacity": 0.5, "samples": 16, "steps": 32}  # a link's defaults
DEFAULT_CSP = "frame-ancestors 'self' file: http: https:"
# What an offline document must not contain (besides network_references' broader check).
FORBIDDEN = re.compile(r"""src\s*=\s*["']?\s*http|href\s*=\s*["']?\s*http|@import|url\(\s*["']?\s*http""", re.I)


@pytest.fixture
def client(exported: Callable, make_client: Callable) -> TestClient:
    exported("resnet20", kinds=GRAPHS)
    return make_client()


def _upload(client: TestClient, data: bytes, name: str = "x.png") -> str:
    r = client.post("/api/images", files={"image": (name, data, "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _config(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="embed-config">(.*?)</script>', html, re.S)
    assert m, "the embed page carries its configuration"
    return json.loads(m.group(1))


def _export_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="resviz-data">(.*?)</script>', html, re.S)
    assert m, "the export carries the chart's answers as JSON"
    return json.loads(m.group(1))


def _analysis(client: TestClient, image_id: str, **params: str) -> dict:
    r = client.post("/api/models/resnet20/analyze", params={"image_id": image_id, **BASE, **params})
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- catalogue and pages


def test_chart_catalogue(client: TestClient) -> None:
    r = client.get("/api/charts")
    assert r.status_code == 200
    rows = {c["id"]: c for c in r.json()}
    assert REQUIRED <= set(rows)
    for c in rows.values():
        assert c["title"] and c["endpoints"] and c["embed"] == f"/embed/{c['id']}"
        assert all(re.match(r"^(GET|POST) /api/", e) for e in c["endpoints"])
    assert rows["depth-sweep"]["image"] is False and rows["depth-sweep"]["endpoints"] == [
        "GET /api/gradients/depth-sweep"
    ]
    assert "POST /api/models/{model}/gradients" in rows["gradients"]["endpoints"]
    assert "GET /api/models/{model}/featuremap" in rows["featuremaps"]["endpoints"]
    page = client.get("/").text
    assert 'href="/presets"' in page, "the nav links the lecture page"
    for where in {c["page"] for c in rows.values()}:
        ids = set(re.findall(r'id="(chart-[a-z-]+)"', client.get(where).text))
        on = {c["element"] for c in rows.values() if c["page"] == where}
        assert on <= ids, f"every chart names its element on its page ({where}): {on - ids}"
    assert {c["id"] for c in rows.values() if c["page"] == "/lab"} >= {
        "shattered-traces",
        "shattered-spectra",
        "landscape-contour",
        "landscape-surface",
        "landscape-slice",
        "bn-loss",
        "bn-gradnorms",
        "normalizations",
        "normalization-channels",
    }


def test_every_embed_renders_with_its_data(client: TestClient) -> None:
    """Each chart's page answers 200 and every data endpoint it needs answers too (sample image by name)."""
    for chart in CHARTS:
        r = client.get(f"/embed/{chart}", params={**BASE, "image": "shapes-32", "block": "layer2.0"})
        assert r.status_code == 200, (chart, r.text[:400])
        assert r.headers["content-type"].startswith("text/html")
        cfg = _config(r.text)
        assert cfg["chart"] == chart and cfg["model"] == "resnet20" and cfg["block"] == "layer2.0"
        assert '<script type="module" src="/static/js/embed.js">' in r.text
        assert 'class="site-header"' not in r.text, "an embed is the chart alone"
        if not CHARTS[chart].image:  # the depth sweep, the batch-norm claims
            assert cfg["image_id"] is None
            if chart in ("bn-loss", "bn-gradnorms"):
                assert client.get("/api/lab/bn-claims").status_code == 200
            continue
        if chart.startswith("landscape-"):
            assert cfg["image_id"] is None and client.get("/api/lab/landscapes/resnet20").status_code == 200
            continue
        image_id = cfg["image_id"]
        assert re.fullmatch(r"[0-9a-f]{64}", image_id)
        a = _analysis(client, image_id)
        assert len(a["layers"]) == 50
        q = {"image_id": image_id, **BASE}
        target = a["prediction"][0]["top"][0]["index"]
        if chart == "featuremaps":
            r = client.get("/api/models/resnet20/featuremap", params={**q, "tap": "layer2.0", "channel": 0})
            assert r.status_code == 200 and len(r.json()["values"]) == 16
        elif chart == "gradients":
            for gates in ("all-on", "all-off"):
                r = client.post("/api/models/resnet20/gradients", params={**q, "gates": gates, "target": target})
                assert r.status_code == 200 and len(r.json()["blocks"]) == 9
        elif chart == "lesion":
            r = client.post("/api/models/resnet20/lesion", params={**q, "target": target})
            assert r.status_code == 200 and len(r.json()["blocks"]) == 9
        elif chart in EXPLAIN_CHARTS:
            assert cfg["explain_layer"] == "layer2.0" and cfg["method"] == "gradcam" and cfg["target"] is None
            layer = "layer2.0" if chart == "explain" else "all"
            answer = _explain(client, image_id, method="gradcam", layer=layer, target="predicted")
            assert answer["target"] == target and len(answer["layers"]) == (1 if chart == "explain" else 10)
        elif chart in ("normalizations", "normalization-channels"):
            r = client.post("/api/models/resnet20/normalizations", params={**q, "layer": "layer2.0.conv1"})
            assert r.status_code == 200 and r.json()["shape"][1:] == [32, 16, 16]
    assert client.app.state.store.list() == [], "an embed serves samples by their hash and stores nothing"


def test_stored_image_embed_survives_restart(exported: Callable, models_dir: Path, data_dir: Path) -> None:
    exported("resnet20")
    settings = Settings(models_dir=models_dir, data_dir=data_dir, export_on_start=False)
    data = png_bytes((36, 28), seed=11)
    with TestClient(create_app(settings)) as first:
        image_id = _upload(first, data, "lecture.png")
        before = first.get("/embed/residuals", params={**BASE, "image": image_id})
        assert before.status_code == 200
    with TestClient(create_app(Settings(models_dir=models_dir, data_dir=data_dir, export_on_start=False))) as second:
        listed = {i["id"]: i for i in second.app.state.store.list()}
        assert listed[image_id]["name"] == "lecture.png" and listed[image_id]["bytes"] == len(data)
        assert second.get(f"/api/images/{image_id}").content == data
        r = second.get("/embed/residuals", params={**BASE, "image": image_id, "gates": "all-off"})
        assert r.status_code == 200, r.text
        cfg = _config(r.text)
        assert cfg["image_id"] == image_id and cfg["gates"] == "all-off"
        a = _analysis(second, image_id, gates="all-off")
        assert a["input"]["images"] == [image_id] and all(b["gate"] == 0 for b in a["blocks"])
        exported_html = second.get("/api/export/residuals.html", params={**BASE, "image": image_id})
        assert exported_html.status_code == 200
        blocks = _export_data(exported_html.text)["data"]["analysis"]["blocks"]
        assert blocks == _analysis(second, image_id)["blocks"]


# ---------------------------------------------------------------- frame policy


def _ancestors(r: object) -> str:
    """The frame-ancestors directive of a response's CSP (the app adds script-src and more before it)."""
    csp = r.headers["content-security-policy"]  # type: ignore[attr-defined]
    return next(d.strip() for d in csp.split(";") if d.strip().startswith("frame-ancestors"))


def test_csp_headers(client: TestClient, make_client: Callable) -> None:
    for path in ("/embed/prediction?model=resnet20&weights=init&image=shapes-32", "/embed/nope", "/embed/prediction"):
        assert _ancestors(client.get(path)) == DEFAULT_CSP, path
    for path in ("/", "/presets", "/api/charts"):
        assert _ancestors(client.get(path)) == "frame-ancestors 'self'", path
    standalone = client.get("/api/export/prediction.html?weights=init&image=shapes-32")
    assert standalone.headers["content-security-policy"] == "frame-ancestors 'self'", "its own policy is a meta tag"
    wide = make_client(embed_frame_ancestors="'self' https://lms.example.edu")
    r = wide.get("/embed/prediction", params={**BASE, "image": "shapes-32"})
    assert _ancestors(r) == "frame-ancestors 'self' https://lms.example.edu"
    assert _ancestors(wide.get("/presets")) == "frame-ancestors 'self'"


# ---------------------------------------------------------------- readable errors


def test_unknown_image_and_chart_are_404_pages(client: TestClient) -> None:
    missing = "ab" * 32
    r = client.get("/embed/activations", params={**BASE, "image": missing})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert f"no stored image with id {missing}" in r.text and 'role="alert"' in r.text
    assert _ancestors(r) == DEFAULT_CSP, "the message shows inside the reader's iframe"
    r = client.get("/embed/activations", params={**BASE, "image": "cat.jpg"})
    assert r.status_code == 404 and "neither a stored image id" in r.text and "shapes-32" in r.text
    r = client.get("/embed/piechart", params={**BASE, "image": "shapes-32"})
    assert r.status_code == 404 and "unknown chart" in r.text and "residual-scatter" in r.text
    r = client.get("/api/export/activations.html", params={**BASE, "image": missing})
    assert r.status_code == 404 and f"no stored image with id {missing}" in r.json()["detail"]
    assert client.get("/api/export/piechart.html").status_code == 404


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"gates": "on,off"}, 400, "gates must be"),
        ({"gates": "1,1,1"}, 400, "gates has 3 values but this model has 9 blocks"),
        ({"gates": ",".join(["2"] * 9)}, 400, "every gate must lie in [0, 1]"),
        ({"bn": "train"}, 400, "bn must be one of running, batch"),
        ({"model": "vgg19"}, 404, "unknown model 'vgg19'"),
        ({"weights": "nope"}, 404, "unknown weights 'nope'"),
        ({"channel": "-1"}, 400, "channel must be a whole number"),
        ({"range": "wide"}, 400, "range must be one of common, own"),
        ({"layer": "layer9.9"}, 400, "unknown layer 'layer9.9' for resnet20"),
        ({"block": "layer1.7"}, 400, "unknown block 'layer1.7' for resnet20"),
        ({"image": ""}, 400, "needs an image"),
    ],
)
def test_malformed_parameters(client: TestClient, params: dict, status: int, message: str) -> None:
    q = {**BASE, "image": "shapes-32", **params}
    r = client.get("/embed/histogram", params=q)
    assert r.status_code == status and r.headers["content-type"].startswith("text/html")
    assert message.replace("'", "&#39;") in r.text, r.text
    r = client.get("/api/export/histogram.html", params=q)
    assert r.status_code == status and message in r.json()["detail"]


# ---------------------------------------------------------------- offline export


def _assert_offline(html: str) -> None:
    assert not FORBIDDEN.search(html), FORBIDDEN.search(html).group(0)
    assert network_references(html) == []
    assert "<script src" not in html and "<link" not in html, "no external script or style"
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "Plotly.newPlot" in html and len(html) > 3_000_000, "plotly.js is inlined"
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src")).split()[1:]
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 2, "plotly.js and the chart builders, nothing else runs"
    digests = [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts]
    assert sorted(script_src) == sorted(f"'sha256-{d}'" for d in digests), "each inline script allowed by its hash"
    assert "unsafe" not in policy.split("style-src")[0], "no unsafe-inline or unsafe-eval for scripts"
    assert "depthFigure" in scripts[1] and "buildFigure" in scripts[1], "the app's builders travel with the data"


def test_export_every_chart_offline_with_data(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = {
        "bn": "running",
        "weights": "init",
        "layer": "first block's first conv (dL/dW norm)",
        "depths": [20, 32, 44, 56, 110],
        "residual": [0.5, 0.45, 0.4, 0.41, 0.39],
        "plain": [0.5, 0.2, 0.05, 0.01, 1e-4],
        "rows": [],
    }
    from app.runtime.service import Payload

    monkeypatch.setattr(client.app.state.service, "depth_sweep", lambda blob, weights, bn: Payload.of(sweep))
    image_id = _upload(client, png_bytes((32, 32), seed=3))
    analysis = _analysis(client, image_id)
    for chart in CHARTS:
        r = client.get(f"/api/export/{chart}.html", params={**BASE, "image": image_id, "layer": "layer1.1.bn2"})
        assert r.status_code == 200, (chart, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert "resviz-" + chart in r.headers["content-disposition"]
        html = r.text
        _assert_offline(html)
        doc = _export_data(html)
        sel = {"layer": "layer1.1.bn2", "block": "", "channel": None, "range": "common"}
        if chart in EXPLAIN_CHARTS:  # a BN tap is no explain layer, and no block is chosen: the last block
            sel |= {**EXPLAIN_SEL, "explain_layer": "layer3.2"}
        assert doc["chart"] == chart and doc["sel"] == sel
        assert CHARTS[chart].title.replace("'", "&#x27;") in html
        data = doc["data"]
        if chart == "depth-sweep":
            assert data == {"sweep": sweep}
            continue
        if chart in EXPLAIN_CHARTS:
            _check_explain_export(client, image_id, chart, data)
            continue
        if chart.startswith("shattered-"):
            assert data == {"shattered": client.get("/api/lab/shattered").json(), "model": "resnet20"}
            continue
        if chart.startswith("landscape-"):
            assert data == {"landscape": client.get("/api/lab/landscapes/resnet20").json()}
            continue
        if chart in ("bn-loss", "bn-gradnorms"):
            assert data == {"bnclaims": client.get("/api/lab/bn-claims").json()}
            continue
        if chart in ("normalizations", "normalization-channels"):  # the BN of the link's layer: its conv input
            q = {**BASE, "image_id": image_id, "layer": "layer1.1.bn2"}
            assert data == {"norms": client.post("/api/models/resnet20/normalizations", params=q).json()}
            assert data["norms"]["layer"] == "layer1.1.conv2"
            continue
        # The answers are the API's, as the embed page fetches them (the analysis and what else the chart reads).
        assert data["analysis"] == analysis
        if chart == "featuremaps":
            top = analysis["feature_maps"]["layer1.0"]["channels"][0]
            assert (data["featuremap"]["tap"], data["featuremap"]["channel"]) == ("layer1.0", top), "tap at or before"
            assert data["featuremap"]["summary"]["zero_fraction"] is not None
        elif chart == "gradients":
            assert set(data["runs"]) == {"residual", "plain"}
            assert data["runs"]["plain"]["gates"] == [0.0] * 9 and data["runs"]["residual"]["gates"] == [1.0] * 9
            assert data["runs"]["plain"]["target"] == data["runs"]["residual"]["target"], "one pinned target"
        elif chart == "lesion":
            assert len(data["lesion"]["blocks"]) == 9
        else:
            assert set(data) == {"analysis"}, chart
    r = client.get("/api/export/prediction.html", params={**BASE, "image": "shapes-32", "download": "1"})
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")


def _explain(client: TestClient, image_id: str, **params: str) -> dict:
    q = {"image_id": image_id, **BASE, "overlays": "false", "samples": "16", "steps": "32", **params}
    r = client.post("/api/models/resnet20/explain", params=q)
    assert r.status_code == 200, r.text
    return r.json()


def _check_explain_export(client: TestClient, image_id: str, chart: str, data: dict) -> None:
    """An explain export carries the endpoint's answers, as the embed asks for them (static/js/embed.js)."""
    if chart == "explain":
        assert set(data) == {"explanation"}
        want = _explain(client, image_id, method="gradcam", layer="layer3.2", target="predicted")
        assert data["explanation"] == want and want["map_shape"] == [8, 8]
        return
    assert set(data) == {"strips"} and set(data["strips"]) == {"residual", "plain"}
    residual = _explain(client, image_id, method="gradcam", layer="all", target="predicted", gates="all-on")
    target = str(residual["target"])
    plain = _explain(client, image_id, method="gradcam", layer="all", target=target, gates="all-off")
    assert data["strips"] == {"residual": residual, "plain": plain}
    assert [e["layer"] for e in residual["layers"]] == ["relu", *(f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3))]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"method": "cam"}, 400, "method must be one of gradcam, gradcampp, hirescam, layercam, saliency"),
        ({"target": "cat"}, 400, "target must be a class index"),
        ({"target": "10"}, 400, "target must be a class index from 0 to 9 for resnet20, got 10"),
        ({"opacity": "1.5"}, 400, "opacity must be a number from 0 to 1"),
        ({"opacity": "half"}, 400, "opacity must be a number from 0 to 1"),
        ({"samples": "0"}, 400, "samples must be a whole number from 1 to 64"),
        ({"steps": "many"}, 400, "steps must be a whole number from 1 to 128"),
        ({"layer": "layer9.9"}, 400, "unknown layer 'layer9.9' for resnet20"),
    ],
)
def test_malformed_explain_links(client: TestClient, params: dict, status: int, message: str) -> None:
    q = {**BASE, "image": "shapes-32", **params}
    for chart in EXPLAIN_CHARTS:
        r = client.get(f"/embed/{chart}", params=q)
        assert r.status_code == status and message.replace("'", "&#39;") in r.text, (chart, r.text[-600:])
        r = client.get(f"/api/export/{chart}.html", params=q)
        assert r.status_code == status and message in r.json()["detail"], chart


@pytest.mark.parametrize(
    ("params", "layer"),
    [
        ({}, "layer3.2"),  # the last block
        ({"block": "layer2.0"}, "layer2.0"),
        ({"layer": "relu", "block": "layer2.0"}, "relu"),  # the stem
        ({"layer": "layer1.1.bn2", "block": "layer1.1"}, "layer1.1"),  # a tap that is no block: the chosen block
        ({"layer": "layer1.1.bn2"}, "layer3.2"),
    ],
)
def test_explain_link_layer_and_config(client: TestClient, params: dict, layer: str) -> None:
    """An explain embed carries its resolved layer and the explanation's fields (what embed.js asks for)."""
    q = {**BASE, "image": "shapes-32", "method": "smoothgrad", "samples": "8", "target": "3", **params}
    cfg = _config(client.get("/embed/explain", params=q).text)
    assert cfg["explain_layer"] == layer
    assert {k: cfg[k] for k in EXPLAIN_SEL} == {**EXPLAIN_SEL, "method": "smoothgrad", "samples": 8, "target": 3}
    open_url = _open_url(client, q)
    assert "method=smoothgrad" in open_url and "samples=8" in open_url and "view=explanations" in open_url
    plain = _config(client.get("/embed/explain-strip", params={**BASE, "image": "shapes-32"}).text)
    assert plain["method"] == "gradcam" and plain["target"] is None and plain["explain_layer"] == "layer3.2"


def _open_url(client: TestClient, q: dict) -> str:
    """The embed's 'open in resviz' link (the Explore page with the same view)."""
    m = re.search(r'class="embed-open" href="([^"]*)"', client.get("/embed/explain", params=q).text)
    assert m
    return m.group(1).replace("&amp;", "&")


# ---------------------------------------------------------------- the store: evicts the oldest unpinned, atomic


def test_full_store_evicts_the_oldest_unpinned_and_keeps_pinned(
    exported: Callable, make_client: Callable, data_dir: Path
) -> None:
    exported("resnet20")
    blobs = [png_bytes((24, 24), seed=i) for i in range(5)]
    size = max(len(b) for b in blobs)
    client = make_client(store_max_bytes=3 * size)
    store = client.app.state.store
    ids = []
    for i, b in enumerate(blobs[:3]):
        ids.append(_upload(client, b, f"{i}.png"))
        os.utime(data_dir / "images" / ids[-1], (1_000 + i, 1_000 + i))  # stored in this order
    r = client.post(f"/api/images/{ids[0]}/pin")
    assert r.status_code == 200 and r.json()["pinned"] is True and store.is_pinned(ids[0])
    ids.append(_upload(client, blobs[3], "3.png"))  # over budget: the oldest unpinned (ids[1]) goes
    assert not store.exists(ids[1]), "the oldest unpinned image was evicted"
    assert client.get(f"/api/images/{ids[1]}").status_code == 404
    for i in (0, 2, 3):
        assert client.get(f"/api/images/{ids[i]}").content == blobs[i]
    assert client.get("/embed/prediction", params={**BASE, "image": ids[0]}).status_code == 200
    assert store.stats()["images"] == 3 and store.stats()["bytes"] <= 3 * size
    assert not [p.name for p in (data_dir / "images").iterdir() if p.name.startswith(".")], "no temporary files left"

    for i in (2, 3):
        assert client.post(f"/api/images/{ids[i]}/pin").status_code == 200
    r = client.post("/api/images", files={"image": ("4.png", blobs[4], "image/png")})
    assert r.status_code == 507, "every image is pinned: nothing may be evicted"
    assert "pinned" in r.json()["detail"] and "resviz images unpin" in r.json()["detail"]
    assert all(store.exists(i) for i in (ids[0], ids[2], ids[3]))
    again = client.post("/api/images", files={"image": ("0.png", blobs[0], "image/png")})
    assert again.status_code == 201 and again.json()["created"] is False, "a stored image can be sent again"
    r = client.get("/embed/prediction", params={**BASE, "image": "grating-32"})
    assert r.status_code == 200, "a sample needs no room in the store: a full store does not stop its embeds"
    assert all(store.exists(i) for i in (ids[0], ids[2], ids[3])), "and it evicted nothing"


def test_store_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.runtime.store as store_module

    store = ImageStore(tmp_path, 10_000)
    data = png_bytes((8, 8))
    image_id = "cd" * 32

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(StoreFullError, match="disk is full"):
        store.put(image_id, data)
    assert not store.exists(image_id) and store.list() == []
    assert list((tmp_path / "images").iterdir()) == [], "no partial or temporary file is left behind"
    monkeypatch.undo()
    assert store.put(image_id, data) is True and store.get(image_id) == data
    assert ImageStore(tmp_path, 10_000).list()[0]["id"] == image_id, "a new store on the same directory sees it"


# ---------------------------------------------------------------- presets


def test_presets_pages_and_links(client: TestClient) -> None:
    r = client.get("/presets")
    assert r.status_code == 200 and 'src="/static/js/presets.js"' in r.text and 'aria-current="page">Lecture' in r.text
    encoded = encode_steps(EXAMPLE_PRESET)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encoded), "base64url without padding"
    steps = decode_steps(encoded)
    assert [s["chart"] for s in steps] == [s["chart"] for s in EXAMPLE_PRESET]
    assert steps[0]["url"] == "/embed/prediction?model=resnet20&weights=trained&image=set-ring"
    assert steps[-1]["url"].startswith(
        "/?model=resnet20&image=shapes-32&view=residuals&hide=nav,controls,strip,tabs,share"
    )
    r = client.get("/presets/play", params={"steps": encoded})
    assert r.status_code == 200
    m = re.search(r'<script type="application/json" id="presets-data">(.*?)</script>', r.text, re.S)
    data = json.loads(m.group(1))
    assert data["mode"] == "play" and [s["url"] for s in data["steps"]] == [s["url"] for s in steps]
    for s in steps[:3]:  # the steps' embed links work
        assert client.get(s["url"].replace("model=resnet20", "model=resnet20&weights=init")).status_code == 200
    for bad, message in [
        ("!!!", "not base64url-encoded JSON"),
        (encode_steps([{"chart": "piechart"}]), "unknown chart"),
        ("", "names no steps"),
    ]:
        r = client.get("/presets/play", params={"steps": bad})
        assert r.status_code == 400 and message in r.text, bad
    evil = encode_steps([{"chart": "prediction", "query": "model=resnet20&next=https://evil.example"}])
    assert decode_steps(evil)[0]["url"] == "/embed/prediction?model=resnet20", "steps only point at this server"


def test_example_lecture_predictions_use_trained_cifar_weights() -> None:
    """Every step of the example lecture that shows a prediction names trained weights of a CIFAR model."""
    from urllib.parse import parse_qs

    from app.specs import SPECS

    for step in EXAMPLE_PRESET:
        if step["chart"] in ("prediction", "gradients", "lesion"):
            q = {k: v[0] for k, v in parse_qs(step["query"]).items()}
            assert SPECS[q["model"]].family == "cifar" and q.get("weights") == "trained", step
            assert q["image"].startswith("set-"), "a picture from the data set the model was trained on"
