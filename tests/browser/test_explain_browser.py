"""The Explanations view in a real browser: the map over the input and every layer's map, shortcuts on and off.

The figures are checked against the explain endpoint's answers the page received (read from the network),
with numpy: the overlay's heatmap is the answer's map divided by its maximum, each strip tile is its
layer's map divided by its own maximum and repeated up to the tile's size.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import numpy as np

from tests.browser.test_explore import SAMPLE_URL, wait_rendered

BLOCKS = 9  # ResNet-20: 3 stages of 3 blocks
EXPLAIN_URL = f"{SAMPLE_URL}&view=explanations"
METHOD_PAPERS = {
    "gradcam": "Selvaraju et al. 2017",
    "gradcampp": "Chattopadhay et al. 2018",
    "hirescam": "Draelos & Carin 2020",
    "layercam": "Jiang et al. 2021",
    "saliency": "Simonyan et al. 2014",
    "smoothgrad": "Smilkov et al. 2017",
    "ig": "Sundararajan et al. 2017",
}
# Both charts drawn by Plotly: the overlay (input image + map) and the strips (one heatmap per strip).
DRAWN_JS = """() => {
  const o = document.getElementById('chart-explain');
  const s = document.getElementById('chart-explain-strip');
  return Boolean(o && o.data && o.data.length === 2 && s && s.data && s.data.length === 2);
}"""
OVERLAY_JS = """() => {
  const el = document.getElementById('chart-explain');
  const [image, heat] = el.data;
  return {
    types: el.data.map((t) => t.type), source: image.source, z: heat.z, opacity: heat.opacity, zsmooth: heat.zsmooth,
    x0: heat.x0, dx: heat.dx, y0: heat.y0, dy: heat.dy,
    yrange: el.layout.yaxis.range, scaleanchor: el.layout.yaxis.scaleanchor,
    ticks: [el.layout.xaxis.showticklabels, el.layout.yaxis.showticklabels], title: el.layout.title.text,
    caption: document.getElementById('cap-explain').textContent,
  };
}"""
STRIP_JS = """() => {
  const el = document.getElementById('chart-explain-strip');
  return {
    traces: el.data.map((t) => ({ type: t.type, name: t.name, z: t.z, y0: t.y0, meta: t.meta })),
    annotations: (el.layout.annotations || []).map((a) => a.text),
    caption: document.getElementById('cap-explain-strip').textContent,
  };
}"""


class Answers:
    """Every explain request the page makes, and the answers it gets (parsed when asked for)."""

    def __init__(self, page) -> None:  # noqa: ANN001 - a Playwright Page
        self.requests: list[dict] = []
        self.responses: list = []
        page.on("request", lambda r: self.requests.append(self.params(r.url)) if "/explain" in r.url else None)
        page.on("response", lambda r: self.responses.append(r) if "/explain" in r.url else None)

    @staticmethod
    def params(url: str) -> dict:
        return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}

    def answer(self, **wanted: str) -> dict:
        """The (last) answer whose request had these parameters."""
        for r in reversed(self.responses):
            p = self.params(r.url)
            if all(p.get(k) == v for k, v in wanted.items()):
                assert r.status == 200, (r.status, r.text()[:300])
                return json.loads(r.text())
        raise AssertionError(f"no explain request with {wanted}: {[self.params(r.url) for r in self.responses]}")


def open_explanations(page, answers: Answers, url: str = EXPLAIN_URL) -> None:  # noqa: ANN001
    page.goto(url)
    wait_rendered(page)
    page.wait_for_function(DRAWN_JS, timeout=90_000)
    for el in ("#chart-explain", "#chart-explain-strip"):
        assert "placeholder" not in (page.locator(el).get_attribute("class") or ""), page.locator(el).get_attribute(
            "data-message"
        )


def check_overlay(fig: dict, answer: dict) -> None:
    """The overlay draws the answer's input image and its map / max, stretched over the input."""
    assert fig["types"] == ["image", "heatmap"]
    assert fig["source"] == answer["input_png"] and fig["source"].startswith("data:image/png;base64,")
    h, w = answer["map_shape"]
    H, W = answer["input_shape"]
    z = np.array(fig["z"], dtype=float)  # null -> nan
    assert z.shape == (h, w) == np.array(answer["map"]).shape
    m = np.array(answer["map"], dtype=float)
    lo, hi = min(0.0, np.nanmin(m)), max(0.0, np.nanmax(m))
    scale = max(-lo, hi) if lo < 0 else hi  # the largest |value| of a signed map, else the largest value
    np.testing.assert_allclose(z, m / scale if scale > 0 else np.zeros_like(m), rtol=1e-12, equal_nan=True)
    assert np.nanmax(np.abs(z)) == 1.0 or scale <= 0
    np.testing.assert_allclose(answer["range"], [np.nanmin(m), np.nanmax(m)], rtol=1e-5)
    assert fig["dx"] * w == W and fig["dy"] * h == H, "the map covers the whole input"
    assert fig["x0"] - fig["dx"] / 2 == -0.5 and fig["y0"] - fig["dy"] / 2 == -0.5
    assert fig["yrange"] == [H - 0.5, -0.5] and fig["scaleanchor"] == "x", "y downwards, square pixels"
    assert fig["ticks"] == [False, False] and fig["zsmooth"] == "best"


def check_strip(trace: dict, answer: dict, blocks: int) -> None:
    """One tile per layer (stem + every block), each the layer's map / its max, repeated to the tile size."""
    tiles = trace["meta"]["tiles"]
    size = trace["meta"]["tile"]
    assert [t["layer"] for t in tiles] == [entry["layer"] for entry in answer["layers"]]
    assert len(tiles) == 1 + blocks and answer["layers"][0]["stage"] == 0
    z = np.array(trace["z"], dtype=float)
    cells = [
        np.isfinite(np.array(e["map"], dtype=float)).sum() * (size // e["map_shape"][0]) ** 2 for e in answer["layers"]
    ]
    assert np.isfinite(z).sum() == sum(cells), "nothing drawn outside the tiles"
    for tile, entry in zip(tiles, answer["layers"], strict=True):
        m = np.array(entry["map"], dtype=float)
        hi = np.nanmax(m)
        f = size // m.shape[0]
        assert f * m.shape[0] == size, "CIFAR maps (32, 16, 8) repeat exactly into a 32-cell tile"
        want = np.kron(m / hi if hi > 0 else np.zeros_like(m), np.ones((f, f)))
        r0, c0 = tile["y0"] - trace["y0"], tile["x0"]
        got = z[r0 : r0 + size, c0 : c0 + size]
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True, err_msg=entry["layer"])


def test_explanations_default_state(page, shot) -> None:  # noqa: ANN001
    answers = Answers(page)
    open_explanations(page, answers)
    manifest = page.evaluate("async () => (await fetch('/api/models/resnet20')).json()")
    last = manifest["blocks"][-1]["id"]
    assert page.evaluate("document.getElementById('cam-layer').value") == last, "default: the last block"
    assert page.evaluate("document.getElementById('cam-method').value") == "gradcam"
    options = page.evaluate("[...document.getElementById('cam-layer').options].map((o) => o.value)")
    assert options == ["relu", *(b["id"] for b in manifest["blocks"])], "the stem, then every block"

    single = answers.answer(layer=last)
    assert single["layer"] == last and single["method"] == "gradcam" and single["target_source"] == "predicted top-1"
    overlay = page.evaluate(OVERLAY_JS)
    check_overlay(overlay, single)
    assert overlay["opacity"] == 0.5
    assert "Grad-CAM (Selvaraju et al. 2017) at " + last in overlay["caption"]
    assert "predicted top-1" in overlay["caption"] and "not a segmentation" in overlay["caption"]

    residual = answers.answer(layer="all", gates="all-on")
    plain = answers.answer(layer="all", gates="all-off")
    assert answers.params(answers.responses[-1].url)["overlays"] == "false"
    plain_request = next(r for r in answers.requests if r.get("layer") == "all" and r.get("gates") == "all-off")
    assert plain_request["target"] == str(residual["target"]), "the all-off strip explains the same class"
    assert plain["target"] == residual["target"] and plain["gates"] == [0.0] * BLOCKS
    strip = page.evaluate(STRIP_JS)
    assert [t["type"] for t in strip["traces"]] == ["heatmap", "heatmap"]
    assert [t["meta"]["run"] for t in strip["traces"]] == ["residual", "plain"]
    check_strip(strip["traces"][0], residual, BLOCKS)
    check_strip(strip["traces"][1], plain, BLOCKS)
    assert sum(t in ("stem", "stem (0)") for t in strip["annotations"]) == 2, "the stem labelled in both strips"
    assert "all shortcuts on (residual)" in " ".join(strip["annotations"])
    assert "every shortcut off" in strip["caption"] and "own maximum" in strip["caption"]
    shot(page, "explain-default")

    # The opacity slider redraws the map from the answer on screen: no request.
    before = len(answers.requests)
    page.fill("#cam-opacity", "0.85")
    page.dispatch_event("#cam-opacity", "input")
    page.wait_for_function("() => document.getElementById('chart-explain').data[1].opacity === 0.85")
    assert page.evaluate("document.getElementById('cam-opacity-value').textContent") == "85%"
    assert len(answers.requests) == before, "moving the opacity slider asks nothing of the server"
    page.wait_for_function("() => new URL(location).searchParams.get('opacity') === '0.85'")
    shot(page, "explain-opacity")

    # SmoothGrad: a map at the input (input resolution), the samples field shown, the strips stay Grad-CAM.
    n = len(answers.requests)
    page.select_option("#cam-method", "smoothgrad")
    page.wait_for_function("() => document.getElementById('chart-explain').layout.title.text.startsWith('SmoothGrad')")
    assert len(answers.requests) == n + 1, "one new request, for the map (the strips keep their answers)"
    smooth = answers.answer(method="smoothgrad")
    assert answers.params(answers.responses[-1].url)["samples"] == "16"
    assert smooth["layer"] == "input" and smooth["map_shape"] == smooth["input_shape"] == [32, 32]
    check_overlay(page.evaluate(OVERLAY_JS), smooth)
    assert page.locator("#cam-samples-field").is_visible() and page.locator("#cam-steps-field").is_hidden()
    assert page.evaluate("document.getElementById('cam-layer').disabled")
    assert "Smilkov et al. 2017" in page.evaluate("document.getElementById('cap-explain').textContent")
    page.wait_for_function(
        "() => document.getElementById('cap-explain-strip').textContent.includes('The strips show Grad-CAM')"
    )
    assert page.evaluate(OVERLAY_JS)["opacity"] == 0.85, "the opacity stays"
    shot(page, "explain-smoothgrad")


def test_chosen_class_and_layer(page, shot) -> None:  # noqa: ANN001
    answers = Answers(page)
    open_explanations(page, answers, f"{EXPLAIN_URL}&method=layercam&layer=layer2.1")
    first = answers.answer(layer="layer2.1", method="layercam")
    chosen = (first["target"] + 1) % 10
    page.select_option("#cam-target", str(chosen))
    page.wait_for_function(
        "(t) => document.getElementById('cap-explain').textContent.includes('(' + t + '), your choice')", arg=chosen
    )
    single = answers.answer(layer="layer2.1", target=str(chosen))
    assert single["target_source"] == "chosen" and single["target"] == chosen
    check_overlay(page.evaluate(OVERLAY_JS), single)
    page.wait_for_function(
        "(t) => document.getElementById('cap-explain-strip').textContent.includes('(' + t + '), your choice')",
        arg=chosen,
    )
    strip = page.evaluate(STRIP_JS)
    for trace, gates in zip(strip["traces"], ("all-on", "all-off"), strict=True):
        check_strip(trace, answers.answer(layer="all", gates=gates, target=str(chosen), method="layercam"), BLOCKS)

    # A click on the stem's tile shows the stem's map above.
    stem = strip["traces"][0]["meta"]["tiles"][0]
    assert stem["layer"] == "relu"
    layout = page.evaluate(
        "() => { const l = document.getElementById('chart-explain-strip')._fullLayout; "
        "return { x: l.xaxis.range, y: l.yaxis.range, xo: l.xaxis._offset, xl: l.xaxis._length, "
        "yo: l.yaxis._offset, yl: l.yaxis._length }; }"
    )
    half = strip["traces"][0]["meta"]["tile"] / 2
    (x0, x1), (y0, y1) = layout["x"], layout["y"]  # y: bottom, top (the axis runs downwards: y0 > y1)
    px = layout["xo"] + (stem["x0"] + half - x0) / (x1 - x0) * layout["xl"]
    py = layout["yo"] + (y1 - (stem["y0"] + half)) / (y1 - y0) * layout["yl"]
    page.locator("#chart-explain-strip").click(position={"x": px, "y": py})
    page.wait_for_function("() => document.getElementById('cam-layer').value === 'relu'")
    page.wait_for_function("() => document.getElementById('chart-explain').layout.title.text.includes('relu')")
    assert answers.answer(layer="relu")["map_shape"] == [32, 32]
    shot(page, "explain-chosen")


def test_captions_name_each_method(page) -> None:  # noqa: ANN001
    """Every method's caption names its paper and what the map is; the target's source is said."""
    page.goto("/")
    captions = page.evaluate(
        """async () => {
          const { overlayFigure, METHODS } = await import('/static/js/charts/explain.js');
          const base = {
            model: { name: 'resnet20', weights: 'trained', depth: 20 }, target: 5, target_label: 'disc',
            probability: 0.93, gates: [1, 1, 1], bn: 'running', input_shape: [32, 32],
            input_png: 'data:image/png;base64,', params: {}, notes: [],
          };
          const map = (h, v) => Array.from({ length: h }, (_, i) => Array.from({ length: h }, (_, j) => v * (i + j)));
          return METHODS.map((m) => {
            const cam = m.cam;
            const ex = { ...base, method: m.id, layer: cam ? 'layer3.2' : 'input', map_shape: cam ? [8, 8] : [32, 32],
              map: map(cam ? 8 : 32, m.id === 'ig' ? -1 : 1), range: m.id === 'ig' ? [-62, 0] : [0, cam ? 14 : 62],
              target_source: m.id === 'hirescam' ? 'chosen' : 'predicted top-1' };
            return [m.id, overlayFigure(ex, { opacity: 0.3 }).caption, overlayFigure(ex).data[1].opacity];
          });
        }"""
    )
    assert [c[0] for c in captions] == list(METHOD_PAPERS)
    for method, caption, opacity in captions:
        assert METHOD_PAPERS[method] in caption, (method, caption)
        assert "not a segmentation" in caption and "not a causal proof" in caption
        assert opacity == 0.5, "the default opacity"
        if method == "hirescam":
            assert "your choice" in caption and "equals Grad-CAM" in caption
        else:
            assert "the predicted top-1 class (p = 0.93)" in caption
    by = dict((m, c) for m, c, _ in captions)
    assert "at layer3.2 for class “disc” (5)" in by["gradcam"] and "8×8, upsampled" in by["gradcam"]
    assert "coarse regions" in by["gradcam"] and "before the softmax" in by["gradcam"]
    assert "n = 16" in by["smoothgrad"] and "m = 32 steps" in by["ig"]
    assert "blue lowers it" in by["ig"], "a signed map says what its colours mean"
