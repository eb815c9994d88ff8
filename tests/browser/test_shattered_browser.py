"""The lab's shattered-gradients charts in chromium: what Plotly was given against the shipped study and numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.browser.test_embed_browser import wait_embed
from tests.browser.test_figures import api_json

KEYS = ("traces", "autocorr", "spectra")
DRAWN = "() => ['traces', 'autocorr', 'spectra'].every((k) => document.getElementById(`chart-shattered-${k}`)?.data)"
AT_DEPTH = "(d) => document.getElementById('chart-shattered-traces').data[0].name.startsWith(`ResNet-${d},`)"
FIGURE = """(id) => {
  const el = document.getElementById(id);
  return {
    data: el.data.map((t) => ({ name: t.name, x: t.x, y: t.y, showlegend: t.showlegend })),
    ylog: el.layout.yaxis.type === 'log',
    caption: document.getElementById(id.replace('chart-', 'caption-')).textContent,
  };
}"""
ORDER = [("residual", "init"), ("residual", "trained"), ("plain", "init"), ("plain", "trained")]
LABEL = {"residual": "ResNet", "plain": "plain", "init": "He init", "trained": "trained"}


def _quiet_lab(page) -> None:  # noqa: ANN001
    """Answer the lab's other live measurements at once: this test is about the shipped study only."""
    page.route("**/api/lab/fig7*", lambda r: r.fulfill(json={"bn": "running", "images": 10, "series": []}))
    page.route("**/api/gradients/collapse*", lambda r: r.fulfill(json={"bn": "running", "images": [], "rows": []}))


def _name(depth: int, net: str, weights: str) -> str:
    return f"{LABEL[net]}-{depth}, {LABEL[weights]}"


def _slope(s: float) -> str:
    return f"{s:.2f}".replace("-", "−")


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_shattered_charts_draw_the_study(page, server, shot, depth: int) -> None:  # noqa: ANN001
    study = api_json(server.url, "/api/lab/shattered")
    runs = {(r["net"], r["weights"]): r for r in study["runs"] if r["depth"] == depth}
    _quiet_lab(page)
    page.goto("/lab")
    page.wait_for_function(DRAWN, timeout=60_000)
    page.select_option("#shattered-depth", str(depth))
    page.wait_for_function(AT_DEPTH, arg=depth)
    fig = {k: page.evaluate(FIGURE, f"chart-shattered-{k}") for k in KEYS}

    # Traces: four panels, each the stored trace standardised with the stored mean and std.
    traces = fig["traces"]["data"]
    assert [t["name"] for t in traces] == [_name(depth, n, w) for n, w in ORDER]
    for t, key in zip(traces, ORDER, strict=True):
        d = runs[key]["direction"]
        if not d["std"]:
            assert t["y"] == [] and runs[key]["notes"], key
            assert runs[key]["notes"][0] in fig["traces"]["caption"]
            continue
        want = (np.array(d["trace"], np.float64) - d["mean"]) / d["std"]
        np.testing.assert_allclose(t["y"], want, rtol=1e-12)
        assert t["x"] == study["t"] and abs(np.std(t["y"]) - 1) < 2e-3

    # Autocorrelations: the stored ones, lags 0..P/4, starting at 1.
    with_acf = [
        k
        for k in [("residual", "init"), ("plain", "init"), ("residual", "trained"), ("plain", "trained")]
        if runs[k]["direction"]["autocorr"]
    ]
    acf = fig["autocorr"]["data"]
    assert [t["name"] for t in acf] == [_name(depth, *k) for k in with_acf]
    for t, key in zip(acf, with_acf, strict=True):
        assert t["x"] == study["lags"] and t["y"] == runs[key]["direction"]["autocorr"] and t["y"][0] == 1

    # Spectra: each periodogram over its variance, its fitted line, and the white and brown references.
    spectra = fig["spectra"]["data"]
    assert fig["spectra"]["ylog"]
    freq = np.array(study["freq"], np.float64)
    for key in with_acf:
        d = runs[key]["direction"]
        s = d["spectrum"]
        name = f"{_name(depth, *key)} (slope {_slope(s['slope'])})"
        curve = next(t for t in spectra if t["name"] == name)
        np.testing.assert_allclose(curve["y"], np.array(s["power"]) / d["std"] ** 2, rtol=1e-12)
        line = next(t for t in spectra if t["name"] == f"fit, {_name(depth, *key)}")
        fitted = np.polyfit(np.log10(line["x"]), np.log10(line["y"]), 1)[0]
        assert fitted == pytest.approx(s["slope"], abs=2e-3) and line["showlegend"] is False  # ends rounded
        assert f"{_name(depth, *key).split(',')[0]} {_slope(s['slope'])}" in fig["spectra"]["caption"]
    white = next(t for t in spectra if t["name"] == "white noise, slope 0")
    brown = next(t for t in spectra if t["name"] == "brown noise, slope −2")
    assert white["x"] == [freq[0], freq[-1]] and white["y"] == [1, 1]
    assert np.polyfit(np.log10(brown["x"]), np.log10(brown["y"]), 1)[0] == pytest.approx(-2)
    ref = study["reference"]
    assert f"{_slope(ref['brown']['mean'])} ± " in fig["spectra"]["caption"]

    assert page.locator("#shattered .chart-tools").count() == 3, "share tools under each chart"
    rows = page.locator("#shattered-table tr").count()
    assert rows == 1 + len(study["summary"])
    assert page.locator("#error").is_hidden()
    page.locator("#shattered").scroll_into_view_if_needed()
    shot(page, f"shattered-lab-{depth}")


def test_shattered_embed_draws_one_depth(page, shot) -> None:  # noqa: ANN001
    page.goto("/embed/shattered-spectra?model=resnet110&caption=1")
    wait_embed(page)
    caption = page.locator("#caption").inner_text()
    assert "ResNet-110" in caption and "plain-110" in caption
    names = page.evaluate("document.getElementById('chart').data.map((t) => t.name)")
    assert any(n.startswith("plain-110, He init") for n in names) and not any("plain-110, trained" in n for n in names)
    shot(page, "shattered-embed-spectra-110")


def test_shattered_study_failure_is_shown(page) -> None:  # noqa: ANN001
    _quiet_lab(page)
    page.route("**/api/lab/shattered", lambda r: r.fulfill(status=500, body=json.dumps({"detail": "boom"})))
    page.goto("/lab")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    assert "Shattered gradients failed" in page.locator("#error").inner_text()
    assert "Shattered gradients failed" in page.locator("#chart-shattered-spectra").get_attribute("data-message")
