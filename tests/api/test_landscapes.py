"""The shipped loss landscapes: the reader (app/runtime/landscapes.py) and GET /api/lab/landscapes[/{model}]."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.paths import SHIPPED_LANDSCAPES_DIR, SHIPPED_WEIGHTS_DIR
from app.runtime import landscapes
from app.runtime.preprocess import sha256_bytes

SHIPPED = ("resnet20", "resnet56", "resnet110")


def shipped(stem: str) -> dict:
    return json.loads((SHIPPED_LANDSCAPES_DIR / f"{stem}.json").read_text())


@pytest.fixture
def client(make_client: Callable):  # noqa: ANN201
    return make_client()


def test_the_six_shipped_surfaces_are_listed_with_their_numbers(client) -> None:  # noqa: ANN001
    body = client.get("/api/lab/landscapes").json()
    assert body["models"] == list(SHIPPED)
    assert [(s["depth"], s["plain"]) for s in body["surfaces"]] == [(d, p) for d in (20, 56, 110) for p in (0, 1)]
    for row in body["surfaces"]:
        doc = shipped(row["surface"])
        assert row["centre_loss"] == doc["metrics"]["centre_loss"] and row["grid"] == doc["grid"]
        assert row["rise_05"]["mean"] == doc["metrics"]["rise"][0]["mean"] and row["rise_05"]["radius"] == 0.5
        assert row["rise_10"]["mean"] == doc["metrics"]["rise"][1]["mean"] and row["rise_10"]["radius"] == 1.0
        assert row["local_minima"] == doc["metrics"]["local_minima"]
        assert row["eig_ratio"] == doc["metrics"]["quadratic_fit"]["eig_ratio"]
        log = json.loads((SHIPPED_WEIGHTS_DIR / f"{row['surface']}.log.json").read_text())
        assert row["held_out_accuracy"] == log["held_out"]["accuracy"]
        weights = (SHIPPED_WEIGHTS_DIR / doc["weights_file"]).read_bytes()
        assert row["current"] is (sha256_bytes(weights) == doc["weights_sha256"]) is True
        assert row["command"].startswith(f"resviz landscape {row['model']} --weights {row['weights']} --grid")


@pytest.mark.parametrize("model", SHIPPED)
def test_a_depth_gives_both_surfaces_on_one_colour_scale(client, model: str) -> None:  # noqa: ANN001
    body = client.get(f"/api/lab/landscapes/{model}").json()
    assert body["model"] == model and body["depth"] == int(model.removeprefix("resnet"))
    logs = []
    for kind in ("residual", "plain"):
        s, doc = body[kind], shipped(f"{model}-{kind}")
        n = doc["grid"]
        assert np.array(s["loss"], dtype=float).shape == np.array(s["log10_loss"], dtype=float).shape == (n, n)
        assert len(s["coords"]) == n and len(s["slice"]["alpha"]) == len(s["slice"]["loss"]) == 2 * n - 1
        loss = np.array(doc["loss"], dtype=float)  # null (overflow) -> NaN
        with np.errstate(divide="ignore", invalid="ignore"):
            want = np.log10(loss)
        got = np.array(s["log10_loss"], dtype=float)
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
        assert np.all(np.isnan(got[~np.isfinite(want)]))
        logs.append(want[np.isfinite(want)])
    every = np.concatenate(logs)
    assert body["colour"]["min"] == pytest.approx(every.min()) and body["colour"]["max"] == pytest.approx(every.max())
    res, pl = body["residual"]["rise_05"]["mean"], body["plain"]["rise_05"]["mean"]
    assert body["comparison"]["rise_ratio_05"] == pytest.approx(pl / res)
    assert body["comparison"]["plain_steeper_05"] is (pl > res)


def test_unknown_surfaces_are_a_clear_404(client) -> None:  # noqa: ANN001
    assert client.get("/api/lab/landscapes/..%2F..%2Fetc").status_code == 404  # no route: nothing is read
    for name in ("resnet32", "resnet50", "nothing", "resnet20-plain"):
        r = client.get(f"/api/lab/landscapes/{name}")
        assert r.status_code == 404, name
        assert (
            "no shipped loss landscape" in r.json()["detail"] and "resnet20, resnet56, resnet110" in r.json()["detail"]
        )
        assert r.json()["known"] == list(SHIPPED)


def _surface(directory: Path, model: str, kind: str, loss: list[list[float | None]]) -> None:
    n = len(loss)
    coords = np.linspace(-1, 1, n).tolist()
    doc = {
        "model": model,
        "surface": f"{model}-{kind}",
        "depth": 20,
        "weights": "plain" if kind == "plain" else "trained",
        "plain": kind == "plain",
        "grid": n,
        "coords": coords,
        "loss": loss,
        "accuracy": [[0.5] * n for _ in range(n)],
        "slice": {"alpha": np.linspace(-1, 1, 2 * n - 1).tolist(), "loss": [1.0] * (2 * n - 1)},
        "metrics": {"centre_loss": loss[n // 2][n // 2], "non_finite_points": sum(v is None for r in loss for v in r)},
        "weights_sha256": "0" * 64,
        "bn_statistics": {"source": "re-estimated", "why": "the shipped statistics overflowed"}
        if kind == "plain"
        else {},
    }
    (directory / f"{model}-{kind}.json").write_text(json.dumps(doc))


def test_reader_explains_overflow_re_estimated_statistics_and_stale_weights(tmp_path: Path) -> None:
    _surface(tmp_path, "resnet20", "residual", [[1.0, 10.0, 100.0], [0.1, 0.01, 1.0], [1.0, 1.0, 1.0]])
    _surface(tmp_path, "resnet20", "plain", [[None, 1e20, 2.0], [2.0, 2.3, 2.0], [2.0, 2.0, 2.0]])
    body = landscapes.pair("resnet20", tmp_path)
    assert body["plain"]["log10_loss"][0][:2] == [None, 20.0]
    assert body["colour"]["min"] == pytest.approx(-2.0) and body["colour"]["max"] == pytest.approx(20.0)
    notes = " ".join(body["notes"])
    assert "plain: the shipped statistics overflowed" in notes and "1 grid point overflowed" in notes
    assert "other weights than the shipped ones" in notes  # the sha256 of no real file
    assert json.dumps(body, allow_nan=False)  # nothing non-finite left
    (tmp_path / "resnet20-plain.json").write_text("{not json")
    again = landscapes.pair("resnet20", tmp_path)
    assert again["plain"] is None and again["comparison"] is None and "no plain surface" in " ".join(again["notes"])
    with pytest.raises(landscapes.UnknownLandscape, match="shipped: resnet20"):
        landscapes.pair("resnet56", tmp_path)
    assert math.isfinite(again["colour"]["max"])


def test_landscape_charts_embed_and_export_from_the_shipped_files(client) -> None:  # noqa: ANN001
    import re

    from app.lecture.presets import step_url

    for chart in ("landscape-contour", "landscape-surface", "landscape-slice"):
        page = client.get(f"/embed/{chart}", params={"model": "resnet56"})
        assert page.status_code == 200 and 'href="/lab?model=resnet56"' in page.text
        assert "the shipped residual and plain weights" in page.text
        html = client.get(f"/api/export/{chart}.html", params={"model": "resnet56"}).text
        data = json.loads(re.search(r'<script type="application/json" id="resviz-data">(.*?)</script>', html, re.S)[1])
        assert data["data"] == {"landscape": client.get("/api/lab/landscapes/resnet56").json()}
        missing = client.get(f"/embed/{chart}", params={"model": "resnet32"})
        assert (
            missing.status_code == 404
            and "no shipped loss landscape for" in missing.text
            and "resnet32" in missing.text
        )
        assert client.get(f"/api/export/{chart}.html", params={"model": "resnet32"}).status_code == 404
        step = {"chart": chart, "mode": "page", "query": "model=resnet110", "hide": ""}
        assert step_url(step) == "/lab?model=resnet110"
