"""Lecture mode in a real browser: offline export, an embed on another origin, embeds across a restart, presets."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.browser.live_server import REPO, LiveServer, free_port

SAMPLE = REPO / "static" / "samples" / "shapes-32.png"
EMBED_STATUS = "() => document.body && ['drawn', 'error'].includes(document.body.dataset.status)"
TRACES_JS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el || !el.data) return 0;
  const finite = (a) => (a || []).flat(2).filter((v) => typeof v === 'number' && Number.isFinite(v)).length;
  return el.data.reduce((n, t) => n + finite(t.x) + finite(t.y) + finite(t.z), 0);
}"""


def wait_embed(frame) -> None:  # noqa: ANN001 - a Playwright Page or Frame
    """Wait until an embed has drawn (or failed), and require it drew values."""
    frame.wait_for_function(EMBED_STATUS, timeout=90_000)
    status = frame.evaluate("document.body.dataset.status")
    assert status == "drawn", frame.evaluate("window.__embed && window.__embed.error") or frame.content()[:600]
    assert frame.evaluate(TRACES_JS, "#chart.js-plotly-plot") > 0, "the embedded chart has no values"


def frame_with(page, part: str, timeout: float = 30):  # noqa: ANN001, ANN201 - Playwright types
    """The page's frame whose URL contains ``part`` (waiting for it to appear)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in page.frames:
            if part in f.url:
                return f
        page.wait_for_timeout(100)
    raise AssertionError(f"no frame with {part!r} in its URL: {[f.url for f in page.frames]}")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read().decode()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on another port: another origin than the resviz server."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path
    httpd.shutdown()
    httpd.server_close()


def test_exported_html_renders_with_the_network_off(browser, server, shot) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1100, "height": 700}, offline=True)
    requests: list[str] = []
    problems: list[str] = []
    try:
        page = context.new_page()
        page.route("**/*", lambda route: (requests.append(route.request.url), route.abort()))
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        for chart, extra in [
            ("activations", "&block=layer2.0"),
            ("heatmap", ""),
            ("residual-scatter", "&block=layer3.0"),
        ]:
            html = fetch(f"{server.url}/api/export/{chart}.html?model=resnet20&image=shapes-32{extra}")
            page.set_content(html, wait_until="load")
            page.wait_for_function("() => document.body.dataset.status === 'drawn'", timeout=30_000)
            assert page.evaluate(TRACES_JS, "#chart") > 0, chart
            assert page.locator("#chart .main-svg").count() >= 1
            assert page.locator(".caption").inner_text().strip(), "the caption travels with the chart"
            shot(page, f"embed-export-offline-{chart}")
        assert not [u for u in requests if u.startswith(("http:", "https:"))], requests
        assert not problems, problems
    finally:
        context.close()


def test_chart_embedded_on_another_origin_draws(page, server, other_origin, shot) -> None:  # noqa: ANN001
    origin, root = other_origin
    src = f"{server.url}/embed/activations?model=resnet20&image=shapes-32&block=layer2.1"
    src2 = f"{server.url}/embed/gradients?model=resnet20&image=grating-32&gates=all-off&caption=1"
    (root / "slides.html").write_text(
        "<!doctype html><html><body style='font-family:sans-serif'><h1>Lecture 7: residual networks</h1>"
        f'<iframe id="one" src="{src}" width="800" height="450" style="border:0"></iframe>'
        f'<iframe id="two" src="{src2}" width="800" height="450" style="border:1px solid #ccc"></iframe>'
        "</body></html>"
    )
    page.goto(f"{origin}/slides.html")
    assert page.evaluate("location.origin") != server.url
    for part in ("/embed/activations", "/embed/gradients"):
        wait_embed(frame_with(page, part))
    frame = frame_with(page, "/embed/activations")
    assert frame.evaluate("document.getElementById('chart').getBoundingClientRect().height") > 350, "fills its iframe"
    shot(page, "embed-other-origin")


def test_unknown_image_message_shows_in_the_iframe(page, server, other_origin) -> None:  # noqa: ANN001
    origin, root = other_origin
    src = f"{server.url}/embed/prediction?model=resnet20&image={'0' * 64}"
    (root / "bad.html").write_text(f'<!doctype html><iframe src="{src}" width="700" height="300"></iframe>')
    page.goto(f"{origin}/bad.html")
    frame = page.frame_locator("iframe").first
    assert "no stored image with id" in frame.locator(".embed-message-text").inner_text(timeout=30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "embed-unknown-image.png"))


def test_stored_image_embed_survives_restart(browser, tmp_path: Path, shot) -> None:  # noqa: ANN001
    data_dir = tmp_path / "data"
    context = browser.new_context(viewport={"width": 820, "height": 480})
    try:
        page = context.new_page()
        with LiveServer(data_dir, models=("resnet20",)) as first:
            r = page.request.post(
                f"{first.url}/api/images",
                multipart={"image": {"name": "lecture.png", "mimeType": "image/png", "buffer": SAMPLE.read_bytes()}},
            )
            assert r.status == 201, r.text()
            image_id = r.json()["id"]
            path = f"/embed/residuals?model=resnet20&image={image_id}&block=layer2.0"
            page.goto(first.url + path)
            wait_embed(page)
        with LiveServer(data_dir, models=("resnet20",)) as second:  # a new process on the same data dir
            page.goto(second.url + path)
            wait_embed(page)
            assert page.evaluate("window.__embed.config.image_id") == image_id
            shot(page, "embed-after-restart")
    finally:
        context.close()


def test_main_page_share_tools_and_presets(page, server, shot) -> None:  # noqa: ANN001
    page.goto("/?model=resnet20&image=shapes-32")
    page.wait_for_function("() => window.__resviz && window.__resviz.renders > 0", timeout=90_000)
    tools = page.locator(".chart-tools[data-chart=prediction]")
    tools.wait_for()
    tools.locator("[data-act=embed]").click()
    page.wait_for_function("() => window.__resviz.lastEmbed")
    code = page.evaluate("window.__resviz.lastEmbed")
    assert code.startswith(f'<iframe src="{server.url}/embed/prediction?model=resnet20&amp;image=shapes-32"'), code
    assert 'width="800" height="450"' in code
    if page.locator("#embed-dialog[open]").count():
        page.locator("#embed-dialog button").click()

    with page.expect_download() as dl:
        tools.locator("[data-act=html]").click()
    text = Path(dl.value.path()).read_text()
    assert 'id="resviz-data"' in text and "Plotly.newPlot" in text and dl.value.suggested_filename.endswith(".html")
    with page.expect_download() as dl:
        tools.locator("[data-act=svg]").click()
    assert Path(dl.value.path()).read_text().lstrip().startswith("<svg")
    with page.expect_download() as dl:
        tools.locator("[data-act=png]").click()
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    tools.locator("[data-act=preset]").click()
    page.locator(".chart-tools[data-chart=activations] [data-act=preset]").click()
    shot(page, "embed-main-page-tools")
    assert len(page.evaluate("JSON.parse(localStorage.getItem('resviz.preset.steps'))")) == 2

    page.goto("/presets")
    assert page.locator("#steps > li").count() == 2
    page.locator("#steps > li").nth(1).locator("[data-act=up]").click()
    assert (
        page.locator("#steps > li .step-url")
        .first.inner_text()
        .endswith("/embed/activations?model=resnet20&image=shapes-32")
    )
    page.click("#share")
    url = page.input_value("#share-url")
    assert "/presets/play?steps=" in url
    shot(page, "embed-presets-editor")

    page.goto(url)
    wait_embed(frame_with(page, "/embed/activations"))
    assert page.inner_text("#step-index") == "1"
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.__presets.index === 1")
    page.wait_for_function("() => document.getElementById('stage').src.includes('/embed/prediction')")
    wait_embed(frame_with(page, "/embed/prediction"))
    assert page.url.endswith("#2") and page.is_disabled("#next")
    shot(page, "embed-presets-play")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => window.__presets.index === 0")
