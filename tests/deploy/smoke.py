"""A smoke subset of the API over real HTTP (urllib, 127.0.0.1 only): pages, upload, analysis, gradients,
lesion, embed and chart export. Shared by the torch-free install test and the Ray Serve test."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

TIMEOUT_S = 60


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict:
        """The body as JSON."""
        return json.loads(self.body)


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One request to 127.0.0.1; an HTTP error status is an answer, not an exception."""
    assert urlsplit(url).hostname == "127.0.0.1", "tests talk to this machine only"
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def multipart(data: bytes, filename: str = "photo.png", ctype: str = "image/png") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file in the field ``image``, and its headers."""
    boundary = "resviztest"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(base: str, data: bytes) -> Reply:
    """POST /api/images."""
    body, headers = multipart(data)
    return request(f"{base}/api/images", "POST", body, headers)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Block until /healthz answers 200 (raise if ``proc`` exits first or the time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if request(f"{base}/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{base} did not answer /healthz within {timeout:.0f} s")


def smoke(base: str, image: bytes, model: str = "resnet20", weights: str = "init") -> list[str]:
    """Pages, upload, analysis, gradients, lesion, embed and export against ``base``: what went wrong (or nothing)."""
    problems: list[str] = []

    def check(what: str, reply: Reply, status: int = 200, contains: bytes = b"") -> Reply:
        if reply.status != status or contains not in reply.body:
            problems.append(f"{what}: {reply.status} {reply.body[:200]!r}")
        return reply

    pages = ("/", "/architecture", "/lab", "/presets", "/docs", "/static/js/main.js", "/static/vendor/plotly.min.js")
    for path in pages:
        check(f"GET {path}", request(f"{base}{path}"))
    check("GET /readyz", request(f"{base}/readyz"), contains=b"providers")
    up = check("upload", upload(base, image), 201, b'"id"')
    if up.status != 201:
        return problems
    image_id = up.json()["id"]
    q = urlencode({"image_id": image_id, "weights": weights})
    r = check("analyze", request(f"{base}/api/models/{model}/analyze?{q}", "POST"), contains=b'"prediction"')
    if r.status == 200 and len(r.json()["layers"]) < 10:
        problems.append("analyze: too few layers")
    check("gradients", request(f"{base}/api/models/{model}/gradients?{q}", "POST"), contains=b'"blocks"')
    check("lesion", request(f"{base}/api/models/{model}/lesion?{q}", "POST"), contains=b'"base_probability"')
    link = urlencode({"model": model, "weights": weights, "image": image_id})
    check("embed", request(f"{base}/embed/activations?{link}"), contains=b"embed-config")
    check("export", request(f"{base}/api/export/activations.html?{link}"), contains=b"Plotly")
    return problems
