"""In chromium: no CSP violation on any page, and an unexported model shows export progress, then its charts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.lecture.presets import EXAMPLE_PRESET, encode_steps
from tests.browser.live_server import REPO, LiveServer

PAGES = (
    "/",
    "/?model=resnet20&image=shapes-32",
    "/?model=resnet20&image=shapes-32&view=explanations",
    "/architecture",
    "/regression",
    "/lab",
    "/presets",
    "/presets/play?steps=" + encode_steps(EXAMPLE_PRESET),
    "/embed/prediction?model=resnet20&image=shapes-32",
    "/embed/activations?model=resnet20&image=shapes-32",
    "/embed/explain?model=resnet20&image=shapes-32",
    "/embed/explain-strip?model=resnet20&image=shapes-32",
    "/docs",
)
# Collects every CSP violation the page reports (Playwright's init script is not subject to the CSP).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def _violations(page, messages: list[str]) -> list[str]:  # noqa: ANN001
    found = page.evaluate("window.__csp || []")
    return found + [m for m in messages if "Content Security Policy" in m or "Content-Security-Policy" in m]


def test_every_page_runs_under_the_csp(browser, server: LiveServer) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=server.url)
    context.add_init_script(RECORD_VIOLATIONS)
    try:
        for path in PAGES:
            page = context.new_page()
            messages: list[str] = []
            errors: list[str] = []
            page.on("console", lambda m, messages=messages: messages.append(m.text))
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            assert "script-src 'self'" in response.headers["content-security-policy"], path
            if path.startswith("/?"):
                page.wait_for_function("() => window.__resviz && window.__resviz.renders > 0", timeout=60_000)
                chart = "chart-explain" if "view=explanations" in path else "chart-depth"  # the view on screen
                assert page.evaluate(f"document.getElementById('{chart}').data.length") > 0, path
            elif path.startswith("/embed/"):
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            else:  # let the page's modules run and fetch (/docs loads Swagger UI from its CDN, maybe unreachable)
                page.wait_for_load_state("load")
                page.wait_for_timeout(1500)
            assert not _violations(page, messages), (path, _violations(page, messages))
            if path != "/docs":
                assert not errors, (path, errors)
            page.close()
    finally:
        context.close()


@pytest.fixture
def cold_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose models dir holds resnet20 only (copied when the session's export has it)."""
    models = tmp_path / "models"
    models.mkdir()
    done = REPO / "models" / "resnet20"
    if done.exists():
        shutil.copytree(done, models / "resnet20")
    with LiveServer(tmp_path / "data", models=("resnet20",), models_dir=models) as live:
        yield live


def test_unexported_model_shows_progress_then_charts(browser, cold_server: LiveServer, shot) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=cold_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/?model=resnet20&image=shapes-32")
        page.wait_for_function("() => window.__resviz && window.__resviz.renders > 0", timeout=60_000)
        assert page.locator("#export-progress").is_hidden(), "nothing is being exported yet"
        label = page.locator("#model option[value=resnet32]").inner_text()
        assert "exported on first use" in label
        renders = page.evaluate("window.__resviz.renders")
        page.select_option("#model", "resnet32")
        panel = page.locator("#export-progress")
        panel.wait_for(state="visible", timeout=30_000)
        assert "resnet32" in panel.inner_text()
        assert page.locator("#export-progress progress").count() >= 1
        shot(page, "export-progress")
        page.wait_for_function(
            "([n]) => window.__resviz.renders > n || !document.getElementById('error').hidden",
            arg=[renders],
            timeout=300_000,
        )
        assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
        assert page.evaluate("document.getElementById('chart-depth').data.length") > 0
        panel.wait_for(state="hidden", timeout=300_000)
        assert page.evaluate("window.__resviz.state().model") == "resnet32"
    finally:
        context.close()
    assert not errors, errors
