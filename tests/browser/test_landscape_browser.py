"""The loss landscapes in the degradation lab: both surfaces of a depth on one colour scale, slices overlaid."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_embed_browser import wait_embed

KINDS = ("contour", "surface", "slice")
# A JS function predicate (the pages' CSP has no 'unsafe-eval', so no string expressions).
DRAWN = """([model, after]) => {
  const h = window.__landscape;
  if (!h) return false;
  if (h.error) return true;
  return h.model === model && h.drawn > after &&
    ['contour', 'surface', 'slice'].every((k) => document.getElementById('chart-landscape-' + k).data);
}"""
TRACES = """(id) => document.getElementById(id).data.map((t) => ({
  type: t.type, name: t.name, xaxis: t.xaxis || 'x', yaxis: t.yaxis || 'y', scene: t.scene || null,
  zmin: t.zmin ?? null, zmax: t.zmax ?? null, cmin: t.cmin ?? null, cmax: t.cmax ?? null,
  start: t.contours ? t.contours.start : null, end: t.contours ? t.contours.end : null,
  z: t.z || null, x: t.x || null, y: t.y || null,
}))"""


def api(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.loads(r.read())


def wait_landscape(page, model: str, after: int = 0) -> None:  # noqa: ANN001
    page.wait_for_function(DRAWN, arg=[model, after], timeout=60_000)
    error = page.evaluate("() => window.__landscape.error")
    assert error is None, error


def quiet_lab(page) -> None:  # noqa: ANN001
    """The lab's other sections compute from exported graphs; this test needs only the shipped landscapes."""
    for pattern in ("**/api/lab/fig7*", "**/api/gradients/collapse*"):
        page.route(pattern, lambda route: route.fulfill(status=503, body='{"detail": "not in this test"}'))


def check_pair(page, pair: dict) -> None:  # noqa: ANN001
    contour = page.evaluate(TRACES, "chart-landscape-contour")
    contours = [t for t in contour if t["type"] == "contour"]
    assert [t["name"] for t in contours] == [f"ResNet-{pair['depth']}", f"plain-{pair['depth']}"]
    lo, hi = pair["colour"]["min"], pair["colour"]["max"]
    assert {(t["zmin"], t["zmax"], t["start"], t["end"]) for t in contours} == {(lo, hi, lo, hi)}, "one colour scale"
    assert [(t["xaxis"], t["yaxis"]) for t in contours] == [("x", "y"), ("x2", "y2")], "side by side"
    for t, kind in zip(contours, ("residual", "plain"), strict=True):
        assert t["z"] == pair[kind]["log10_loss"] and t["x"] == pair[kind]["coords"]
    surfaces = [t for t in page.evaluate(TRACES, "chart-landscape-surface") if t["type"] == "surface"]
    assert [t["scene"] for t in surfaces] == ["scene", "scene2"]
    assert {(t["cmin"], t["cmax"]) for t in surfaces} == {(lo, hi)}
    slices = [t for t in page.evaluate(TRACES, "chart-landscape-slice") if t["name"].endswith(" loss")]
    assert [t["name"] for t in slices] == [f"ResNet-{pair['depth']} loss", f"plain-{pair['depth']} loss"]
    assert {(t["xaxis"], t["yaxis"]) for t in slices} == {("x", "y")}, "the two slices on one axis"
    for t, kind in zip(slices, ("residual", "plain"), strict=True):
        assert t["y"] == pair[kind]["slice"]["loss"] and t["x"] == pair[kind]["slice"]["alpha"]


def test_lab_draws_both_surfaces_of_each_depth(page, server) -> None:  # noqa: ANN001
    quiet_lab(page)
    page.goto("/lab?model=resnet56")
    wait_landscape(page, "resnet56")
    pair = api(server.url, "/api/lab/landscapes/resnet56")
    check_pair(page, pair)
    caption = page.locator("#caption-landscape-contour").inner_text()
    plain = pair["plain"]
    assert f"{100 * plain['held_out_accuracy']:.1f}% held-out" in caption and "barely trained" in caption
    assert "local minim" in caption and "eigenvalue ratio" in caption and "r = 0.5" in caption
    rows = page.locator("#landscape-table tr").count()
    assert rows == 1 + 6, "a row per shipped surface"
    page.wait_for_function("() => document.querySelectorAll('#landscape figure .chart-tools').length >= 3")
    tools = page.locator("#landscape figure .chart-tools").evaluate_all("(els) => els.map((e) => e.dataset.chart)")
    assert tools == ["landscape-contour", "landscape-surface", "landscape-slice"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#landscape").screenshot(path=str(SCREENSHOTS / "lab-landscape-resnet56.png"))
    for model in ("resnet110", "resnet20"):
        before = page.evaluate("() => window.__landscape.drawn")
        page.select_option("#landscape-model", model)
        wait_landscape(page, model, before)
        check_pair(page, api(server.url, f"/api/lab/landscapes/{model}"))
        page.locator("#landscape").screenshot(path=str(SCREENSHOTS / f"lab-landscape-{model}.png"))


def test_landscape_embeds_draw_and_a_missing_depth_says_so(page) -> None:  # noqa: ANN001
    for kind in KINDS:
        page.goto(f"/embed/landscape-{kind}?model=resnet110&caption=1")
        wait_embed(page)
        assert "110" in page.locator("#caption").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "embed-landscape-slice.png"))
    response = page.goto("/embed/landscape-contour?model=resnet44")
    assert response.status == 404 and "no shipped loss landscape" in page.content()
