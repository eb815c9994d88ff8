"""Browser-test fixtures: the real server (resnet20) in a subprocess and headless chromium via Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.live_server import CHROMIUM, REPO, LiveServer, launch_chromium

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the ``browser`` marker."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app on a free port, with the repo's models/ cache and a temporary data dir."""
    with LiveServer(tmp_path_factory.mktemp("browser-data"), models=("resnet20",)) as live:
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian chromium, one for the session."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make browser-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def checked_page(browser, base_url: str, timeout_ms: int) -> Iterator[object]:  # noqa: ANN001
    """A fresh page (own context) on ``base_url`` whose uncaught script errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=base_url)
    p = context.new_page()
    p.set_default_timeout(timeout_ms)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser, server: LiveServer) -> Iterator[object]:  # noqa: ANN001
    """A fresh page on the test server whose uncaught script errors fail the test."""
    yield from checked_page(browser, server.url, 30_000)


@pytest.fixture
def shot() -> object:
    """Save a full-page screenshot to test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _shot(page, name: str) -> Path:  # noqa: ANN001
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot
