"""The lab's batch-norm section in a real browser: the BN / no-BN curves, gradient norms and the normalisations."""

from __future__ import annotations

import math

import numpy as np

from tests.browser import test_figures
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_figures import FIGURE_JS, api_json, export_figure

offline_page = test_figures.offline  # a page with the network off (the fixture, under this name here)

DRAWN = """(ids) => ids.every((id) => {
  const el = document.getElementById(id);
  return el && el.data && el.data.length && el.data.some((t) => t.y && t.y.length);
})"""
TRACES = """(id) => document.getElementById(id).data.map((t) => ({ name: t.name, x: t.x, y: t.y, type: t.type,
  customdata: t.customdata, xaxis: t.xaxis || 'x', yaxis: t.yaxis || 'y' }))"""
CHARTS = ["chart-bn-loss", "chart-bn-grads", "chart-norms", "chart-norm-channels"]


def _clip(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else min(max(v, 0.03), 30)


def test_lab_draws_the_batch_norm_section(page, offline_page, server, shot) -> None:  # noqa: ANN001
    page.goto("/lab")
    page.wait_for_function(DRAWN, arg=CHARTS, timeout=180_000)
    claims = api_json(server.url, "/api/lab/bn-claims")
    assert claims["runs"], "no BN / no-BN logs shipped"

    # the loss curves: one per run, the server's moving average (raw losses for a diverged run), clipped to the axis
    loss = {t["name"]: t for t in page.evaluate(TRACES, "chart-bn-loss")}
    for r in claims["runs"]:
        name = f"{'plain' if r['plain'] else 'ResNet'}-{r['depth']} {'no BN' if r['norm'] == 'none' else 'BN'}"
        assert name in loss, (name, list(loss))
        want = r["loss"] if r["outcome"] == "diverged" else r["loss_smooth"]
        assert loss[name]["y"] == [_clip(v) for v in want], name
        assert loss[name]["x"] == list(range(len(want)))

    # the gradient norms: a trace per run and recorded step, in that network's panel, the logged values
    grads = page.evaluate(TRACES, "chart-bn-grads")
    panels = {(20, False): "x", (20, True): "x2", (56, False): "x3", (56, True): "x4"}
    expected = 0
    for r in claims["runs"]:
        g = r["grad_norms"]
        if not g:
            continue
        for step, row in zip(g["steps"], g["norms"], strict=True):
            expected += 1
            name = f"{'no BN' if r['norm'] == 'none' else 'BN'}, step {step}"
            axis = panels[(r["depth"], r["plain"])]
            hit = [t for t in grads if t["name"] == name and t["xaxis"] == axis]
            assert len(hit) == 1 and hit[0]["y"] == row, (name, axis)
            assert hit[0]["x"] == list(range(1, len(g["layers"]) + 1))
    assert len(grads) == expected

    # the normalisations: six histograms on shared bins, the API's counts for the image the page chose
    norms = page.evaluate("() => window.__labBn.norms")
    again = api_json(server.url, f"/api/models/resnet20/normalizations?image_id={norms['image_sha256']}", "POST")
    assert again["methods"] == norms["methods"] and again["edges"] == norms["edges"]
    bars = page.evaluate(TRACES, "chart-norms")
    assert [t["type"] for t in bars] == ["bar"] * len(norms["methods"]) == ["bar"] * 6
    centres = (np.asarray(norms["edges"][:-1]) + np.asarray(norms["edges"][1:])) / 2
    for t, m in zip(bars, norms["methods"], strict=True):
        assert t["name"] == m["name"] and t["y"] == m["histogram"]["counts"]
        np.testing.assert_allclose(t["x"], centres, rtol=1e-12)
    channels = page.evaluate(TRACES, "chart-norm-channels")
    assert [t["y"] for t in channels[::2]] == [m["channel_mean"] for m in norms["methods"]]
    assert [t["y"] for t in channels[1::2]] == [m["channel_std"] for m in norms["methods"]]
    captions = {c: page.locator(f"#caption-{c.removeprefix('chart-')}").inner_text() for c in CHARTS}
    assert all(captions.values()), captions
    assert "Weight normalisation" in captions["chart-norms"] and norms["layer"] in captions["chart-norms"]
    assert len(page.locator("#norm-notes li").all()) == 6
    assert page.locator("#bn-runs tr").count() == len(claims["runs"]) + 1
    assert page.locator("#bn-claims .chart-tools").count() == 4, "every chart can be embedded and exported"
    # the standalone exports draw what the lab page draws (same builders, same answers)
    for element, chart in (
        ("chart-bn-loss", "bn-loss"),
        ("chart-bn-grads", "bn-gradnorms"),
        ("chart-norms", "normalizations"),
        ("chart-norm-channels", "normalization-channels"),
    ):
        on_page = page.evaluate(FIGURE_JS, [f"#{element}", f"#caption-{element.removeprefix('chart-')}"])
        export = export_figure(offline_page, server, chart, "model=resnet20&weights=trained&image=set-ring")
        assert export["data"] == on_page["data"] and export["caption"] == on_page["caption"], chart
    shot(page, "lab-bnclaims")
    for c in CHARTS:
        page.locator(f"#{c}").screenshot(path=str(SCREENSHOTS / f"lab-{c}.png"))

    # another layer and group count: drawn again from the endpoint's new answer
    draws = page.evaluate("() => window.__labBn.draws")
    page.select_option("#norm-layer", "layer3.2.conv2")
    page.wait_for_function("(n) => window.__labBn.draws > n", arg=draws, timeout=60_000)
    page.select_option("#norm-groups", "16")
    page.wait_for_function("(n) => window.__labBn.draws > n + 1", arg=draws, timeout=60_000)
    norms = page.evaluate("() => window.__labBn.norms")
    assert norms["layer"] == "layer3.2.conv2" and norms["groups"] == 16 and norms["shape"][1:] == [64, 8, 8]
    bars = page.evaluate(TRACES, "chart-norms")
    assert [t["y"] for t in bars] == [m["histogram"]["counts"] for m in norms["methods"]]
    shot(page, "lab-bnclaims-layer3")
