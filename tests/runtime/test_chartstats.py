"""The statistics the charts show (app.runtime.chartstats) against independent numpy computations and in the answers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.runtime import chartstats
from tests.conftest import png_bytes

GRAPHS = ("running", "batch", "stats-running", "stats-batch", "grad-running", "grad-batch")


def _hist(values: np.ndarray, bins: int = 16, lo: float | None = None, hi: float | None = None) -> dict:
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    under, over = int((values < lo).sum()), int((values > hi).sum())
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "underflow": under,
        "overflow": over,
        "sampled": values.size,
    }


def test_fit_is_pearson_and_least_squares() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = 0.3 * x + rng.normal(scale=0.5, size=500)
    fit = chartstats.fit(x.tolist(), y.tolist())
    slope, intercept = np.polyfit(x, y, 1)
    assert fit["r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert fit["slope"] == pytest.approx(slope, rel=1e-10)
    assert fit["my"] - fit["slope"] * fit["mx"] == pytest.approx(intercept, rel=1e-9, abs=1e-12)
    assert (fit["xmin"], fit["xmax"]) == (x.min(), x.max())
    flat = chartstats.fit([1.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert flat["r"] is None and flat["slope"] is None, "no variation in x: no line"
    assert chartstats.fit([], [])["r"] is None
    assert chartstats.fit([1.0, None, 3.0], [1.0, 2.0, 3.0])["slope"] is None, "a value that was not finite"


def test_hist_moments_weight_the_bin_centres() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(loc=-0.2, scale=1.5, size=4000)
    h = _hist(v, 32, -3.0, 3.0)
    m = chartstats.hist_moments(h)
    e, c = np.array(h["edges"]), np.array(h["counts"], dtype=float)
    centres = (e[:-1] + e[1:]) / 2
    mean = np.average(centres, weights=c)
    assert m["n"] == c.sum() and m["mean"] == pytest.approx(mean)
    assert m["std"] == pytest.approx(np.sqrt(np.average((centres - mean) ** 2, weights=c)))
    assert m["negative"] == pytest.approx((c[e[1:] <= 0].sum() + h["underflow"]) / v.size)
    empty = chartstats.hist_moments({"edges": [0, 1], "counts": [0], "underflow": 0, "sampled": 0})
    assert (empty["mean"], empty["std"], empty["negative"]) == (0.0, 0.0, None)


def _rebin_by_sampling(h: dict, lo: float, hi: float, bins: int, per_bin: int = 20_000) -> np.ndarray:
    """Each source bin's count spread as many evenly spaced points, histogrammed on the common grid."""
    out = np.zeros(bins)
    e = h["edges"]
    for i, k in enumerate(h["counts"]):
        if k and e[i + 1] > e[i]:
            points = e[i] + (np.arange(per_bin) + 0.5) / per_bin * (e[i + 1] - e[i])
            out += np.histogram(points, bins=bins, range=(lo, hi))[0] * k / per_bin
    return out


def test_rebin_spreads_each_bin_uniformly() -> None:
    rng = np.random.default_rng(2)
    h = _hist(rng.gamma(2.0, size=3000), 24)
    lo, hi = -1.0, 15.0
    got = chartstats.rebin(np.array([h["edges"]]), np.array([h["counts"]]), lo, hi, 40)[0]
    assert got.sum() == pytest.approx(sum(h["counts"])), "every count lands on the grid"
    assert np.allclose(got, _rebin_by_sampling(h, lo, hi, 40), atol=1e-2 * max(h["counts"]))
    degenerate = {"edges": [1.0, 1.0, 2.0], "counts": [5, 3]}
    got = chartstats.rebin(np.array([degenerate["edges"]]), np.array([degenerate["counts"]]), 0.0, 2.0, 4)[0]
    assert got.tolist() == [0.0, 0.0, 1.5, 1.5], "a bin of zero width has nowhere to spread"


def test_heatmap_rows_tails_and_spans() -> None:
    rng = np.random.default_rng(3)
    layers = []
    for i, scale in enumerate((0.5, 2.0, 1.0)):
        v = rng.normal(scale=scale, size=2000)
        h = _hist(v, 16, *np.quantile(v, [0.01, 0.99]))
        layers.append({"id": f"t{i}", "histogram": h, "stats": {"min": float(v.min()), "max": float(v.max())}})
    hm = chartstats.heatmap(layers, bins=48)
    lo = min(t["histogram"]["edges"][0] for t in layers)
    hi = max(t["histogram"]["edges"][-1] for t in layers)
    assert (hm["lo"], hm["hi"], hm["bins"]) == (lo, hi, 48)
    for t, row in zip(layers, hm["rows"], strict=True):
        full = np.zeros(48)
        full[row["start"] : row["start"] + len(row["counts"])] = row["counts"]
        assert np.allclose(full, _rebin_by_sampling(t["histogram"], lo, hi, 48), atol=0.02 * max(row["counts"]))
        e = t["histogram"]["edges"]
        tail = hm["tails"][layers.index(t)]
        assert tail["low"] == pytest.approx((e[0] - t["stats"]["min"]) / (e[-1] - e[0]))
        assert tail["high"] == pytest.approx((t["stats"]["max"] - e[-1]) / (e[-1] - e[0]))
    spans = [t["histogram"]["edges"][-1] - t["histogram"]["edges"][0] for t in layers]
    assert hm["widest"] == {"id": "t1", "span": max(spans)} and hm["narrowest"] == {"id": "t0", "span": min(spans)}


def test_median_ratios_and_depth_summary() -> None:
    ratios = [0.4, None, 1.3, 0.2, 2.5, float("nan")]
    blocks = [{"id": f"b{i}", "ratio": r} for i, r in enumerate(ratios)]
    s = chartstats.ratio_summary(blocks)
    assert s["median"] == np.median([0.4, 1.3, 0.2, 2.5]) and (s["above_one"], s["count"]) == (2, 4)
    assert s["smallest"] == {"id": "b3", "ratio": 0.2} and s["largest"] == {"id": "b4", "ratio": 2.5}
    assert chartstats.ratio_summary([])["median"] is None
    layers = [
        {"id": "a", "kind": "block", "stats": {"mean": 1.0, "std": 2.0, "zero_fraction": 0.5}},
        {"id": "b", "kind": "bn", "stats": {"mean": -0.5, "std": 0.9, "zero_fraction": 0.0}},
        {"id": "c", "kind": "bn", "stats": {"mean": 0.1, "std": 1.1, "zero_fraction": 0.0}},
        {"id": "d", "kind": "block", "stats": {"mean": 1.0, "std": 5.0, "zero_fraction": 0.3}},
    ]
    d = chartstats.depth_summary(layers)
    assert d["first_block"] == {"id": "a", "std": 2.0} and d["last_block"] == {"id": "d", "std": 5.0}
    assert d["std_ratio"] == 2.5 and (d["bn_std_min"], d["bn_std_max"]) == (0.9, 1.1)
    assert d["bn_abs_mean"] == pytest.approx(0.3) and d["block_zero_fraction"] == pytest.approx(0.4)


def test_moving_average_and_means() -> None:
    rng = np.random.default_rng(4)
    v = rng.random(100)
    w = 7
    expected = [v[max(0, i - w + 1) : i + 1].mean() for i in range(v.size)]
    assert np.allclose(chartstats.moving_average(v.tolist(), w), expected)
    gaps = [1.0, None, 3.0, float("inf"), None, None]
    assert chartstats.moving_average(gaps, 2) == [1.0, 1.0, 3.0, 3.0, None, None]
    assert chartstats.finite_mean(gaps) == 2.0 and chartstats.finite_mean([None]) is None
    assert chartstats.channel_summary([[0.0, 1.0], [3.0, 0.0]]) == {"mean": 1.0, "zero_fraction": 0.5}
    assert chartstats.gradient_spread([{"grad_norm_in": 6.0}, {"grad_norm_in": 2.0}]) == 3.0
    assert chartstats.gradient_spread([{"grad_norm_in": 6.0}, {"grad_norm_in": None}]) is None


@pytest.fixture
def client(exported: Callable, make_client: Callable) -> TestClient:
    exported("resnet20", kinds=GRAPHS)
    return make_client()


def test_answers_carry_the_statistics(client: TestClient) -> None:
    """The analysis (summary and whole), feature-map and gradient answers carry what their charts show."""
    r = client.post("/api/images", files={"image": ("x.png", png_bytes((32, 32), seed=5), "image/png")})
    q = {"image_id": r.json()["id"], "weights": "init"}
    summary = client.post("/api/models/resnet20/analyze", params={**q, "sections": "summary"}).json()
    a = client.post("/api/models/resnet20/analyze", params=q).json()
    assert summary["chart_stats"]["heatmap"] == a["chart_stats"]["heatmap"], "one measurement, the same grid"
    assert summary["chart_stats"]["depth"] == a["chart_stats"]["depth"]
    hm = a["chart_stats"]["heatmap"]
    assert len(hm["rows"]) == len(a["layers"]) and hm["bins"] == chartstats.COMMON_BINS
    for t, row in zip(a["layers"], hm["rows"], strict=True):
        assert sum(row["counts"]) == pytest.approx(sum(t["histogram"]["counts"]), rel=1e-5), t["id"]
    ratios = [b["ratio"] for b in a["blocks"]]
    assert a["chart_stats"]["ratios"]["median"] == pytest.approx(np.median(ratios))
    for b in a["blocks"]:
        x, f = np.array(b["sample"]["x"]), np.array(b["sample"]["f"])
        assert b["fit"]["r"] == pytest.approx(np.corrcoef(x, f)[0, 1], rel=1e-9)
        assert b["fit"]["slope"] == pytest.approx(np.polyfit(x, f, 1)[0], rel=1e-8)
        e = np.array(b["residual_histogram"]["edges"])
        c = np.array(b["residual_histogram"]["counts"], dtype=float)
        mean = np.average((e[:-1] + e[1:]) / 2, weights=c)
        assert b["residual_moments"]["mean"] == pytest.approx(mean)
    for bn in a["batchnorm"]:
        for side in ("before", "after"):
            c = np.array(bn[side]["histogram"]["counts"], dtype=float)
            assert bn[side]["moments"]["n"] == c.sum()
    fm = client.get("/api/models/resnet20/featuremap", params={**q, "tap": "layer1.0", "channel": 2}).json()
    values = np.array(fm["values"])
    assert fm["summary"]["mean"] == pytest.approx(values.mean())
    assert fm["summary"]["zero_fraction"] == pytest.approx(np.mean(values == 0))
    g = client.post("/api/models/resnet20/gradients", params=q).json()
    assert g["spread"] == pytest.approx(g["blocks"][0]["grad_norm_in"] / g["blocks"][-1]["grad_norm_in"])
