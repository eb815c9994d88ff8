"""The Explore page in a real browser: upload, every view drawn, shortcut switches, errors, URL state."""

from __future__ import annotations

import re

import pytest

from tests.browser.live_server import REPO

SAMPLES = REPO / "static" / "samples"
SAMPLE_URL = "/?model=resnet20&image=shapes-32"

# Per trace, how many finite numbers its x, y and z hold (nested arrays flattened).
TRACE_VALUES_JS = """(id) => {
  const el = document.getElementById(id);
  if (!el || !el.data) return null;
  const finite = (a) => (a || []).flat(2).filter((v) => typeof v === 'number' && Number.isFinite(v)).length;
  return el.data.map((t) => finite(t.x) + finite(t.y) + finite(t.z));
}"""


def renders(page) -> int:
    return page.evaluate("window.__resviz ? window.__resviz.renders : 0")


def wait_rendered(page, after: int = 0) -> None:
    """Wait until the page has finished more draws than ``after`` (analysis or view switch)."""
    page.wait_for_function(
        "([n]) => (window.__resviz && window.__resviz.renders > n) || !document.getElementById('error').hidden",
        arg=[after],
        timeout=60_000,
    )
    error = page.locator("#error")
    assert error.is_hidden(), f"the page shows an error: {error.inner_text()}"


def trace_values(page, chart_id: str) -> list[int]:
    values = page.evaluate(TRACE_VALUES_JS, chart_id)
    assert values is not None, f"#{chart_id} was not drawn by Plotly"
    return values


def assert_drawn(page, *chart_ids: str) -> None:
    for chart_id in chart_ids:
        values = trace_values(page, chart_id)
        assert values and sum(values) > 0, f"#{chart_id} has no values in its traces: {values}"


def open_view(page, view: str) -> None:
    n = renders(page)
    page.click(f"#tabs [data-view={view}]")
    wait_rendered(page, n)


def test_upload_draws_feature_maps_and_charts(page, shot) -> None:
    page.goto("/?model=resnet20")
    page.wait_for_function("() => window.__resviz && window.__resviz.ready")
    page.set_input_files("#file", str(SAMPLES / "shapes-32.png"))
    wait_rendered(page)
    assert re.search(r"[?&]image=[0-9a-f]{64}", page.url), page.url
    assert_drawn(page, "chart-prediction", "chart-depth", "chart-histogram", "chart-heatmap")
    taps = page.evaluate("document.getElementById('layer-slider').max")
    mean_trace_points = sum(trace_values(page, "chart-depth")[3:])  # marker traces after the 3 grey lines
    assert mean_trace_points >= 3 * (int(taps) + 1), "one mean, std and zero fraction per tap"
    assert page.locator("#prediction-card, .prediction-card figcaption").first.inner_text().startswith("Top-5")
    shot(page, "explore-activations")

    open_view(page, "featuremaps")
    cells = page.locator("#fm-grid img")
    assert cells.count() == 8
    loaded = "[...document.querySelectorAll('#fm-grid img')].every((i) => i.complete && i.naturalWidth > 0)"
    assert page.evaluate(loaded)
    page.wait_for_function("() => document.getElementById('chart-channel').data")
    assert page.evaluate("document.getElementById('chart-channel').data[0].z.length") == 32
    second = cells.nth(1).locator("xpath=..").get_attribute("data-channel")
    cells.nth(1).click()
    page.wait_for_function("(c) => new URL(location).searchParams.get('channel') === c", arg=second)
    page.wait_for_function(
        "(c) => document.getElementById('chart-channel').layout.title.text.includes('channel ' + c)", arg=second
    )
    page.fill("#fm-overlay", "0.5")
    page.dispatch_event("#fm-overlay", "input")
    page.wait_for_function("() => (document.getElementById('chart-channel').layout.images || []).length === 1")
    shot(page, "explore-featuremaps")


def test_batchnorm_and_residual_views(page, shot) -> None:
    page.goto(f"{SAMPLE_URL}&view=batchnorm&bn=batch&layer=layer1.1.bn1&channel=2")
    wait_rendered(page)
    assert_drawn(page, "chart-bn")
    steps = page.locator("#bn-steps").inner_text()
    assert "μ_B" in steps and "channel 2" in steps and re.search(r"\d\.\d", steps)
    check = page.locator("#bn-check").inner_text()
    predicted, measured = (v.rstrip(".") for v in re.findall(r"std (-?[\d.e-]+)", check)[:2])
    assert abs(float(predicted) - float(measured)) <= 0.02 * abs(float(measured)) + 1e-3, check
    before = trace_values(page, "chart-bn")
    page.fill("#bn-gamma", "2")
    page.dispatch_event("#bn-gamma", "input")
    page.wait_for_function("() => document.getElementById('bn-gamma-value').textContent === '2'")
    preview_x = page.evaluate("document.getElementById('chart-bn').data[2].x")
    assert len(preview_x) == before[2] // 2 and preview_x[-1] > preview_x[0]
    shot(page, "explore-batchnorm")

    open_view(page, "residuals")
    assert_drawn(page, "chart-ratio", "chart-scatter", "chart-residual-hist")
    assert len(page.evaluate("document.getElementById('chart-scatter').data[0].x")) > 500
    n = renders(page)
    page.click('.blk[data-block="layer3.0"]')
    page.wait_for_function("() => document.getElementById('res-block').value === 'layer3.0'")
    page.wait_for_function(
        "() => document.getElementById('chart-scatter').layout.xaxis.title.text.includes('layer3.0')"
    )
    assert renders(page) == n, "selecting a block redraws charts without a new analysis"
    shot(page, "explore-residuals")


def test_shortcut_switch_changes_gradients(page, shot) -> None:
    page.goto(f"{SAMPLE_URL}&view=gradients")
    wait_rendered(page)
    n = renders(page)
    page.click('.blk[data-block="layer2.0"] .switch')
    wait_rendered(page, n)
    assert "gates=1,1,1,0,1,1,1,1,1" in page.url
    assert page.evaluate("window.__resviz.analysisGates()") == [1, 1, 1, 0, 1, 1, 1, 1, 1]
    assert page.locator('.blk[data-block="layer2.0"]').get_attribute("class").split().count("off") == 1
    grad = page.locator("#chart-grad")
    if "placeholder" in (grad.get_attribute("class") or ""):
        shot(page, "explore-gradients")
        pytest.xfail(f"gradients endpoint not on this server yet: {grad.get_attribute('data-message')}")
    runs = page.evaluate("document.getElementById('chart-grad').data.map((t) => ({name: t.name, y: t.y}))")
    assert len(runs) == 3, runs
    residual, current = runs[0]["y"], runs[2]["y"]
    assert all(v > 0 for v in residual + current)
    assert residual != current, "switching a shortcut off changes the gradient norms"
    shot(page, "explore-gradients")


def test_bad_file_shows_a_readable_error(page, shot, tmp_path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_text("this is a text file, not a PNG\n")
    page.goto("/?model=resnet20")
    page.wait_for_function("() => window.__resviz && window.__resviz.ready")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error .error-text").inner_text()
    assert message.startswith("not-an-image.png: ")
    assert "Internal Server Error" not in message and len(message) > len("not-an-image.png: ") + 10
    assert "image=" not in page.url
    shot(page, "error-bad-file")


def test_url_state_survives_reload(page) -> None:
    page.goto("/?model=resnet20")
    page.wait_for_function("() => window.__resviz && window.__resviz.ready")
    page.click('#sample-list [data-sample="shapes-32"]')
    wait_rendered(page)
    assert "image=shapes-32" in page.url
    page.check('input[name="bn"][value="batch"]')
    n = renders(page)
    page.click('.blk[data-block="layer2.0"] .switch')
    wait_rendered(page, n)
    open_view(page, "batchnorm")
    page.click('.blk[data-block="layer2.1"]')
    page.wait_for_function("() => document.getElementById('bn-layer').value === 'layer2.1.bn2'")
    page.fill("#bn-channel", "3")
    page.dispatch_event("#bn-channel", "change")
    page.wait_for_function("() => new URL(location).searchParams.get('channel') === '3'")

    snapshot_js = """() => ({
      state: window.__resviz.state(),
      gates: window.__resviz.analysisGates(),
      bnLayer: document.getElementById('bn-layer').value,
      channel: document.getElementById('bn-channel').value,
      batch: document.querySelector('input[name="bn"][value="batch"]').checked,
      off: [...document.querySelectorAll('.blk.off')].map((e) => e.dataset.block),
      selected: document.querySelector('.blk.selected')?.dataset.block,
      tab: document.querySelector('#tabs [aria-selected="true"]').dataset.view,
    })"""
    before = page.evaluate(snapshot_js)
    assert before["off"] == ["layer2.0"] and before["selected"] == "layer2.1" and before["batch"]
    url = page.url
    page.reload()
    wait_rendered(page)
    after = page.evaluate(snapshot_js)
    assert page.url == url
    assert after == before


def test_hide_parameter_makes_a_lecturer_preset(page, shot) -> None:
    page.goto(f"{SAMPLE_URL}&view=residuals&block=layer3.1&hide=controls,strip,nav,gradients")
    wait_rendered(page)
    for selector in ("#controls", "#strip", ".site-header", '#tabs [data-view="gradients"]'):
        assert page.locator(selector).is_hidden(), selector
    assert page.locator('#tabs [data-view="activations"]').is_visible()
    assert_drawn(page, "chart-ratio", "chart-scatter")
    assert page.evaluate("document.getElementById('res-block').value") == "layer3.1"
    shot(page, "lecturer-preset")


def test_pure_modules_in_the_page(page) -> None:
    page.goto("/")
    result = page.evaluate(
        """async () => {
          const select = await import('/static/js/charts/select.js');
          const state = await import('/static/js/state.js');
          const bn = await import('/static/js/charts/batchnorm.js');
          const a = {
            layers: [
              { id: 'conv1', kind: 'conv', shape: [1, 4] },
              { id: 'layer1.0.bn1', kind: 'bn', shape: [1, 4] },
              { id: 'layer1.0', kind: 'block', shape: [1, 4] },
              { id: 'layer1.1.bn1', kind: 'bn', shape: [1, 4] },
            ],
            blocks: [{ id: 'layer1.0' }, { id: 'layer1.1' }],
            batchnorm: [{ id: 'layer1.0.bn1', channels: 4 }, { id: 'layer1.1.bn1', channels: 4 }],
            feature_maps: { 'layer1.0': { channels: [3, 1] } },
          };
          const url = '?model=resnet18&gates=1,0,1&bn=batch&view=gradients&channel=3&hide=controls,strip';
          const s = state.parseState(url);
          const steps = bn.bnSteps(
            { mode: 'batch', used_mean: [2], used_var: [4], eps: 0, gamma: [3], beta: [1] },
            { shape: [1, 1, 2, 2], channel_mean: [2], channel_std: [2] },
            { channel_mean: [1], channel_std: [3] },
            0,
            { eps: 0, gamma: 3, beta: 1 },
          );
          return {
            chosen: [{ layer: '', block: '' }, { block: 'layer1.0' }].map((sel) => select.chosenLayer(a, sel).id),
            bn: [{ layer: 'layer1.0', channel: 9 }, { layer: 'conv1' }].map((sel) => select.bnChoice(a, sel).bn.id),
            fmap: [select.featureMapChoice(a, { layer: 'layer1.1.bn1', channel: null }).channel],
            block: select.chosenBlock(a, { block: 'nope' }).id,
            query: state.toQuery(s),
            roundTrip: JSON.stringify(state.parseState('?' + state.toQuery(s))) === JSON.stringify(s),
            gates: state.gatesArray('all-off', 3),
            param: state.gatesParam([1, 1, 1]),
            steps: [steps.m, steps.examples[2].xHat, steps.examples[2].y, steps.predictedMean, steps.predictedStd],
          };
        }"""
    )
    assert result["chosen"] == ["layer1.0", "layer1.0"], "the first block output, or the chosen block's"
    assert result["bn"] == ["layer1.0.bn1", "layer1.0.bn1"], "the nearest BN at or before the tap, else after it"
    assert result["fmap"] == [3] and result["block"] == "layer1.0"
    assert result["query"] == "model=resnet18&gates=1,0,1&bn=batch&view=gradients&channel=3&hide=controls,strip"
    assert result["roundTrip"]
    assert result["gates"] == [0, 0, 0] and result["param"] == "all-on"
    # x = mu_B + sigma_B = 4: x_hat = (4 - 2) / sqrt(4) = 1, y = 3 * 1 + 1 = 4; channel mean -> beta, std -> |gamma|
    assert result["steps"] == [4, 1, 4, 1, 3]
