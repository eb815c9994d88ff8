"""Figure JSON in the browser: the builders on real answers, and every export drawing its embed's figure.

The builders of ``static/js/charts/`` are the only ones: the Explore page, the embeds and the standalone
exports draw with them. These tests read what Plotly was given (``el.data``, ``el.layout``) and compare it
with the API's answers, with numpy, and between the app's pages and the offline files.
"""

from __future__ import annotations

import json
import math
import urllib.request

import numpy as np
import pytest

from app.lecture.catalogue import CHARTS as CATALOGUE
from tests.browser.test_embed_browser import wait_embed
from tests.browser.test_explain_browser import DRAWN_JS as EXPLANATIONS_DRAWN
from tests.browser.test_explore import wait_rendered

QUERY = "model=resnet20&image=shapes-32&block=layer2.0&gates=1,1,0,1,1,1,1,0,1"
CHARTS = tuple(CATALOGUE)  # every chart of GET /api/charts
LAB_CHARTS = ("bn-loss", "bn-gradnorms", "normalizations", "normalization-channels")  # the lab's, drawn on /lab
# What Plotly was given: the traces' kind and values, the layout's marks and texts, and the caption.
FIGURE_JS = """([sel, captionSel]) => {
  const el = document.querySelector(sel);
  if (!el || !el.data) return null;
  const keep = ['type', 'mode', 'name', 'x', 'y', 'z', 'text', 'customdata', 'xaxis', 'yaxis', 'width'];
  const cap = captionSel ? document.querySelector(captionSel) : null;
  return {
    data: el.data.map((t) => Object.fromEntries(keep.filter((k) => t[k] !== undefined).map((k) => [k, t[k]]))),
    shapes: el.layout.shapes || [],
    annotations: (el.layout.annotations || []).map((a) => a.text),
    titles: ['xaxis', 'yaxis', 'xaxis2', 'yaxis2'].map((k) => el.layout[k]?.title?.text),
    caption: cap ? cap.textContent : null,
  };
}"""


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=300) as r:
        return r.read().decode()


def api_json(base: str, path: str, method: str = "GET") -> dict:
    req = urllib.request.Request(base + path, method=method)
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


@pytest.fixture
def offline(browser):  # noqa: ANN001, ANN201 - Playwright types
    """A page with the network off whose script errors and console errors (a CSP refusal is one) fail the test."""
    context = browser.new_context(viewport={"width": 1100, "height": 700}, offline=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.route("**/*", lambda route: (problems.append(f"request {route.request.url}"), route.abort()))
    yield page
    context.close()
    assert not problems, problems


def export_figure(page, server, chart: str, query: str = QUERY) -> dict:  # noqa: ANN001
    """Open /api/export/{chart}.html offline and return the figure it drew."""
    page.set_content(fetch(f"{server.url}/api/export/{chart}.html?{query}"), wait_until="load")
    page.wait_for_function("() => ['drawn', 'error'].includes(document.body.dataset.status)", timeout=60_000)
    assert page.evaluate("document.body.dataset.status") == "drawn", page.evaluate("window.__export.error")
    return page.evaluate(FIGURE_JS, ["#chart", "#caption"])


def test_every_export_draws_its_embeds_figure(page, offline, server) -> None:  # noqa: ANN001
    """Same builders, same answers: each offline file draws exactly the figure its embed draws."""
    assert set(LAB_CHARTS) <= set(CHARTS)
    for chart in CHARTS:
        page.goto(f"/embed/{chart}?{QUERY}&caption=1")
        wait_embed(page)
        embed = page.evaluate(FIGURE_JS, ["#chart", "#caption"])
        export = export_figure(offline, server, chart)
        assert export["data"] == embed["data"], chart
        assert export["caption"] == embed["caption"] and export["caption"], chart
        assert export["annotations"] == embed["annotations"] and export["titles"] == embed["titles"], chart
        if chart != "heatmap":  # its marks are the same; its row labels follow the box's height
            assert export["shapes"] == embed["shapes"], chart


@pytest.mark.parametrize("model", ["resnet56", "resnet110"])
def test_lab_exports_draw_their_embeds_figure(page, offline, server, model: str) -> None:  # noqa: ANN001
    """The lab's charts (the shipped shattered-gradients study) at the other depths than QUERY's resnet20."""
    lab = [c for c in CHARTS if CATALOGUE[c].page == "/lab" and c.startswith("shattered-")]
    assert {"shattered-traces", "shattered-autocorr", "shattered-spectra"} == set(lab)
    for chart in lab:  # (the landscapes' other depths: test_landscape_browser; the BN charts take no depth)
        page.goto(f"/embed/{chart}?model={model}&caption=1")
        wait_embed(page)
        embed = page.evaluate(FIGURE_JS, ["#chart", "#caption"])
        export = export_figure(offline, server, chart, f"model={model}")
        assert export["data"] == embed["data"] and export["caption"] == embed["caption"] and export["caption"], chart
        assert export["annotations"] == embed["annotations"] and export["shapes"] == embed["shapes"], chart


def test_explore_page_draws_what_the_exports_draw(page, offline, server) -> None:  # noqa: ANN001
    page.goto(f"/?{QUERY}")
    wait_rendered(page)
    page.wait_for_function("() => window.__resviz.analysisGates() && document.getElementById('chart-heatmap').data")
    page.wait_for_timeout(500)  # the whole analysis follows the summary
    for element, chart in (
        ("chart-depth", "activations"),
        ("chart-histogram", "histogram"),
        ("chart-heatmap", "heatmap"),
        ("chart-prediction", "prediction"),
    ):
        on_page = page.evaluate(FIGURE_JS, [f"#{element}", None])
        assert on_page is not None, element
        assert export_figure(offline, server, chart)["data"] == on_page["data"], chart


def test_explore_explanations_draw_what_the_exports_draw(page, offline, server) -> None:  # noqa: ANN001
    """The Explanations view's two charts, as the page draws them, are the exports' (and so the embeds')."""
    page.goto(f"/?{QUERY}&view=explanations")
    wait_rendered(page)
    page.wait_for_function(EXPLANATIONS_DRAWN, timeout=90_000)
    for element, chart in (("explain", "explain"), ("explain-strip", "explain-strip")):
        on_page = page.evaluate(FIGURE_JS, [f"#chart-{element}", f"#cap-{element}"])
        exported = export_figure(offline, server, chart)
        assert exported["data"] == on_page["data"], chart
        assert exported["caption"] == on_page["caption"] and exported["caption"], chart
        assert exported["annotations"] == on_page["annotations"] and exported["shapes"] == on_page["shapes"], chart


def test_lab_page_draws_what_the_landscape_exports_draw(page, offline, server) -> None:  # noqa: ANN001
    """The lab's loss-landscape charts (page, embed, offline export): one builder, one answer, one figure."""
    from tests.browser.test_landscape_browser import quiet_lab, wait_landscape

    quiet_lab(page)
    page.goto("/lab?model=resnet20")
    wait_landscape(page, "resnet20")
    for kind in ("contour", "surface", "slice"):
        chart = f"landscape-{kind}"
        on_page = page.evaluate(FIGURE_JS, [f"#chart-{chart}", f"#caption-{chart}"])
        export = export_figure(offline, server, chart, "model=resnet20")
        assert export["data"] == on_page["data"] and export["caption"] == on_page["caption"], chart
        assert export["annotations"] == on_page["annotations"] and export["titles"] == on_page["titles"], chart


def _builders(page, server) -> dict:  # noqa: ANN001
    """Every builder run in the page on the API's answers for QUERY (what the embeds fetch)."""
    page.goto("/presets")
    return page.evaluate(
        """async (query) => {
          const q = new URLSearchParams(query);
          const api = await import('/static/js/api.js');
          const { buildFigure } = await import('/static/js/charts/build.js');
          const { featureMapChoice } = await import('/static/js/charts/select.js');
          const sample = await api.fetchSample('shapes-32.png');
          const { id } = await api.uploadImage(sample, 'shapes-32.png');
          const p = (extra = {}) => ({ imageId: id, gates: q.get('gates'), ...extra });
          const analysis = await api.analyze('resnet20', p());
          const sel = { layer: '', block: q.get('block'), channel: null, range: 'common' };
          const choice = featureMapChoice(analysis, sel);
          const target = (await api.gradients('resnet20', p({ gates: 'all-on' }))).target[0];
          const data = {
            analysis,
            featuremap: await api.featureMap('resnet20', p({ tap: choice.tap.id, channel: choice.channel })),
            runs: {
              residual: await api.gradients('resnet20', p({ gates: 'all-on', target })),
              plain: await api.gradients('resnet20', p({ gates: 'all-off', target })),
              current: await api.gradients('resnet20', p({ target })),
            },
            lesion: await api.lesion('resnet20', p({ target })),
          };
          const figs = {};
          for (const chart of ['activations', 'histogram', 'heatmap', 'featuremaps', 'batchnorm', 'gradients',
                               'lesion', 'residuals', 'residual-scatter', 'residual-histogram', 'prediction']) {
            const f = buildFigure(chart, data, sel, { height: 480 });
            figs[chart] = { data: f.data, caption: f.caption, shapes: f.layout.shapes || [] };
          }
          return { figs, data, imageId: id };
        }""",
        QUERY,
    )


def test_builders_on_real_answers(page, server) -> None:  # noqa: ANN001
    """Trace types, counts and key values of every builder's figure against the answers and numpy."""
    out = _builders(page, server)
    figs, data = out["figs"], out["data"]
    a = data["analysis"]
    layers, blocks = a["layers"], a["blocks"]
    n = len(layers)

    act = figs["activations"]["data"]
    kinds = {t["kind"] for t in layers}
    assert [t["type"] for t in act] == ["scatter"] * (3 + 3 * len(kinds))
    assert act[0]["y"] == [t["stats"]["mean"] for t in layers] and act[1]["y"] == [t["stats"]["std"] for t in layers]
    assert sum(len(t["x"]) for t in act[3:]) == 3 * n, "every tap once per row"

    (hist,) = figs["histogram"]["data"]
    block_out = next(t for t in layers if t["id"] == "layer2.0")
    assert hist["type"] == "bar" and hist["y"] == block_out["histogram"]["counts"]
    edges = np.array(block_out["histogram"]["edges"])
    assert np.allclose(hist["x"], (edges[:-1] + edges[1:]) / 2) and np.allclose(hist["width"], np.diff(edges))

    heat, low, high = figs["heatmap"]["data"]
    assert (heat["type"], low["type"], high["type"]) == ("heatmap", "bar", "bar")
    assert len(heat["z"]) == n and all(len(row) == 96 for row in heat["z"])
    lo = min(t["histogram"]["edges"][0] for t in layers)
    hi = max(t["histogram"]["edges"][-1] for t in layers)
    assert heat["x"][0] == pytest.approx(lo + (hi - lo) / 192) and heat["x"][-1] == pytest.approx(hi - (hi - lo) / 192)
    for t, row in zip(layers, heat["z"], strict=True):  # the common grid keeps each tap's in-range count
        kept = sum(10**v * t["histogram"]["sampled"] for v in row if v is not None)
        assert kept == pytest.approx(sum(t["histogram"]["counts"]), rel=1e-4), t["id"]
    for t, x in zip(layers, high["x"], strict=True):
        span = t["histogram"]["edges"][-1] - t["histogram"]["edges"][0]
        assert x == pytest.approx(max(0.0, (t["stats"]["max"] - t["histogram"]["edges"][-1]) / span), abs=1e-12)

    (fm,) = figs["featuremaps"]["data"]
    values = np.array(data["featuremap"]["values"])
    assert fm["type"] == "heatmap" and np.array_equal(np.array(fm["z"]), values)
    assert f"{100 * np.mean(values == 0):.1f}% zeros" in figs["featuremaps"]["caption"]

    before, after, preview = figs["batchnorm"]["data"]
    assert (before["type"], after["type"], preview["type"]) == ("bar", "bar", "scatter")
    bn = next(b for b in a["batchnorm"] if b["id"] == "layer2.0.bn2")  # nearest BN at or before the block output
    assert before["y"] == bn["before"]["histogram"]["counts"] and after["y"] == bn["after"]["histogram"]["counts"]
    e = np.array(bn["before"]["histogram"]["edges"])
    c = np.array(bn["before"]["histogram"]["counts"], dtype=float)
    centres = (e[:-1] + e[1:]) / 2
    mean = np.average(centres, weights=c)
    std = math.sqrt(np.average((centres - mean) ** 2, weights=c))
    assert f"std goes from {_num(std)}" in figs["batchnorm"]["caption"]

    grad = figs["gradients"]["data"]
    assert [t["name"] for t in grad] == ["all shortcuts on (residual)", "all shortcuts off (plain)", "current switches"]
    for t, key in zip(grad, ("residual", "plain", "current"), strict=True):
        assert t["y"] == [b["grad_norm_in"] for b in data["runs"][key]["blocks"]]
    res = [b["grad_norm_in"] for b in data["runs"]["residual"]["blocks"]]
    assert f"{_num(res[0] / res[-1])} (residual)" in figs["gradients"]["caption"]

    (lesion,) = figs["lesion"]["data"]
    assert lesion["type"] == "bar" and lesion["y"] == [b["delta"] for b in data["lesion"]["blocks"]]

    (ratio,) = figs["residuals"]["data"]
    ratios = [b["ratio"] for b in blocks]
    assert ratio["y"] == ratios and f"Median {_num(float(np.median(ratios)))};" in figs["residuals"]["caption"]
    assert f"{sum(r > 1 for r in ratios)} of {len(ratios)} blocks above 1" in figs["residuals"]["caption"]

    points, zero, line = figs["residual-scatter"]["data"]
    block = next(b for b in blocks if b["id"] == "layer2.0")
    x, f = np.array(block["sample"]["x"]), np.array(block["sample"]["f"])
    slope, intercept = np.polyfit(x, f, 1)
    assert points["x"] == block["sample"]["x"] and points["y"] == block["sample"]["f"]
    assert line["x"] == [x.min(), x.max()] and zero["y"] == [0, 0]
    assert np.allclose(line["y"], slope * np.array(line["x"]) + intercept, rtol=1e-9, atol=1e-12)
    assert f"r = {_num(float(np.corrcoef(x, f)[0, 1]), 2)}, slope {_num(slope)}" in figs["residual-scatter"]["caption"]

    (rhist,) = figs["residual-histogram"]["data"]
    h = block["residual_histogram"]
    assert rhist["y"] == h["counts"]
    e, c = np.array(h["edges"]), np.array(h["counts"], dtype=float)
    negative = (c[e[1:] <= 0].sum() + h["underflow"]) / h["sampled"]
    assert f"{100 * negative:.1f}% negative" in figs["residual-histogram"]["caption"]

    (pred,) = figs["prediction"]["data"]
    top = a["prediction"][0]["top"]
    assert pred["x"] == [t["probability"] for t in reversed(top)]


def _num(x: float, digits: int = 3) -> str:
    """static/js/charts/format.js's num() for the numbers these captions show (no exponent form)."""
    assert 1e-3 <= abs(x) < 1e4, x
    return f"{float(f'{x:.{digits}g}'):.15g}"
