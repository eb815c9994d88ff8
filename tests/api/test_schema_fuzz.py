"""Every operation of the OpenAPI schema, fuzzed by schemathesis against a live server: no 5xx, answers as documented.

The server runs in this process (uvicorn on 127.0.0.1, a free port) with resnet20 exported; exports on
demand are off, so a graph that is not there is a 404, not a queued export. Examples are bounded per
operation and derandomized: the same requests every run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.paths import SERVING_GRAPHS

KINDS = SERVING_GRAPHS  # every graph a server answers from, so the fuzz gets real answers
TOKEN = "fuzz-admin-token"
EXAMPLES = int(os.environ.get("RESVIZ_FUZZ_EXAMPLES", "15"))  # generated requests per operation, plus explicit ones
# Operations whose error statuses the schema does not list yet (app/api/embed.py declares its own routes).
STATUSES_UNDOCUMENTED = {"GET /api/export/{chart}.html"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_url(exported: Callable, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn in a thread, on the session's exported resnet20."""
    import uvicorn

    from app.config import Settings
    from app.main import create_app

    exported("resnet20", kinds=KINDS)
    settings = Settings(
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("fuzz-data"),
        default_models=("resnet20",),
        export_on_start=False,
        export_on_demand=False,
        warm_on_start=False,
        admin_token=TOKEN,
        upload_rate_per_minute=1e6,
        upload_burst=1_000_000,
        max_upload_bytes=2_000_000,
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="fuzz-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fuzz server did not start")
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One HTTP session for the run, with the operator token (so the operator routes are reached too)."""
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        yield s


def _openapi() -> dict:
    """The app's OpenAPI schema (built without starting the app: it does not depend on the settings)."""
    from app.main import create_app

    return create_app().openapi()


schema = schemathesis.openapi.from_dict(_openapi())


def test_served_schema_is_the_one_fuzzed(live_url: str) -> None:
    assert requests.get(f"{live_url}/openapi.json", timeout=10).json() == _openapi()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_operation(case: schemathesis.Case, live_url: str, session: requests.Session) -> None:
    response = case.call(base_url=live_url, session=session, timeout=60)
    checks = CHECKS
    if case.operation.label in STATUSES_UNDOCUMENTED:
        checks = [c for c in CHECKS if c is not status_code_conformance]
    case.validate_response(response, checks=checks)
