"""Private by default (operator token, rate limit, pins, disk full) and the headers on every page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.lecture.presets import EXAMPLE_PRESET, encode_steps
from app.security import RateLimiter, same_origin
from tests.conftest import png_bytes

TOKEN = "s3cret-operator-token"
PAGES = (
    "/",
    "/architecture",
    "/regression",
    "/lab",
    "/presets",
    "/presets/play?steps=" + encode_steps(EXAMPLE_PRESET),
    "/embed/prediction?model=resnet20&weights=init&image=shapes-32",
    "/docs",
)


@pytest.fixture
def client(exported: Callable, make_client: Callable) -> TestClient:
    """A client on an exported resnet20 (init), no operator token."""
    exported("resnet20")
    return make_client()


def _upload(client: TestClient, data: bytes, name: str = "student-photo.png", **kw: object):  # noqa: ANN202
    return client.post("/api/images", files={"image": (name, data, "image/png")}, **kw)


# ---------------------------------------------------------------- private by default


def test_listing_and_management_are_off_without_a_token(client: TestClient) -> None:
    image_id = _upload(client, png_bytes(seed=1)).json()["id"]
    for method, url in (
        ("GET", "/api/images"),
        ("GET", "/api/images/stats"),
        ("DELETE", f"/api/images/{image_id}"),
        ("DELETE", f"/api/images/{image_id}/pin"),
    ):
        r = client.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403, (method, url, r.text)
        assert "resviz images" in r.json()["detail"] and "RESVIZ_ADMIN_TOKEN" in r.json()["detail"]
    assert client.get(f"/api/images/{image_id}").status_code == 200, "the id is the key: the image is still there"


def test_operator_token_gates_listing_stats_pin_and_delete(make_client: Callable, exported: Callable) -> None:
    exported("resnet20")
    client = make_client(admin_token=TOKEN)
    data = png_bytes(seed=2)
    image_id = _upload(client, data).json()["id"]
    for bad in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.get("/api/images", headers=bad)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", bad
        assert client.delete(f"/api/images/{image_id}", headers=bad).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    listed = client.get("/api/images", headers=ok).json()
    assert [(i["id"], i["name"], i["pinned"]) for i in listed] == [(image_id, "student-photo.png", False)]
    assert client.post(f"/api/images/{image_id}/pin", headers=ok).json()["pinned"] is True
    stats = client.get("/api/images/stats", headers=ok).json()
    assert stats["images"] == 1 and stats["pinned_images"] == 1 and stats["bytes"] == len(data)
    assert client.delete(f"/api/images/{image_id}/pin", headers=ok).json()["pinned"] is False
    assert client.delete(f"/api/images/{image_id}", headers=ok).json()["deleted"] is True
    assert client.get(f"/api/images/{image_id}").status_code == 404
    assert client.get("/api/images", headers=ok).json() == []


def test_the_original_name_is_not_shown_to_others(client: TestClient) -> None:
    r = _upload(client, png_bytes(seed=3), name="alice-at-home.png")
    assert r.status_code == 201 and "alice" not in r.text
    image_id = r.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{64}", image_id), "a 256-bit content hash"
    got = client.get(f"/api/images/{image_id}")
    assert "alice" not in str(got.headers) and got.headers["cache-control"].startswith("private")
    page = client.get("/embed/prediction", params={"model": "resnet20", "weights": "init", "image": image_id})
    assert page.status_code == 200 and "alice" not in page.text
    assert client.post(f"/api/images/{'ab' * 32}/pin").status_code == 404, "only a stored image can be pinned"


def test_uploads_are_rate_limited_per_address(exported: Callable, make_client: Callable) -> None:
    exported("resnet20")
    client = make_client(upload_rate_per_minute=1, upload_burst=3)
    codes = [_upload(client, png_bytes(seed=10 + i)).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    r = _upload(client, png_bytes(seed=20))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert "too many uploads" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200, "other requests are not limited"


def test_rate_limiter_refills_and_keeps_clients_apart() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0, "another address has its own bucket"
    now[0] = 10.0
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0


def test_disk_full_is_507_not_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.runtime.store as store_module

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", full)
    r = _upload(client, png_bytes(seed=4))
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]


# ---------------------------------------------------------------- headers


def test_security_headers_on_every_page(client: TestClient) -> None:
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:200])
        csp = r.headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
        assert directives["script-src"][0] == "'self'" and "'unsafe-inline'" not in directives["script-src"], path
        assert "'unsafe-eval'" not in csp and "frame-ancestors" in directives, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin", path
        inline = [m for m in re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S) if m[1].strip()]
        assert all('type="application/json"' in attrs for attrs, _ in inline), (path, "inline script")
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", r.text), (path, "inline event handler")
    assert client.get("/api/models").headers["x-content-type-options"] == "nosniff"


def test_standalone_export_keeps_its_own_policy(client: TestClient) -> None:
    r = client.get("/api/export/prediction.html", params={"weights": "init", "image": "shapes-32"})
    assert r.status_code == 200 and "default-src 'none'" in r.text
    assert "script-src 'self'" not in r.headers["content-security-policy"], "its inline scripts must run offline"


# ---------------------------------------------------------------- same origin for changes


def test_cross_origin_post_is_refused(client: TestClient) -> None:
    data = png_bytes(seed=5)
    r = _upload(client, data, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["detail"]
    assert _upload(client, data, headers={"Origin": "null"}).status_code == 403
    r = client.post(f"/api/models/resnet20/analyze?weights=init&image_id={'ab' * 32}", headers={"Origin": "http://x"})
    assert r.status_code == 403
    assert _upload(client, data, headers={"Origin": "http://testserver"}).status_code == 201, "same origin"
    assert _upload(client, data).status_code == 201, "no Origin (curl, the CLI)"
    assert client.get("/api/models", headers={"Origin": "https://evil.example"}).status_code == 200, "reads pass"


def test_trusted_origins_and_same_origin_rule(make_client: Callable, exported: Callable) -> None:
    exported("resnet20")
    client = make_client(trusted_origins=("https://lms.example.edu",))
    r = _upload(client, png_bytes(seed=6), headers={"Origin": "https://lms.example.edu"})
    assert r.status_code == 201
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("https://127.0.0.1:8000.evil.example", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000")


def test_export_pending_page_for_a_browser(tmp_path: Path) -> None:
    """An HTML page that needs a graph still exporting says so and reloads itself (503, no script)."""
    import sys

    from app.config import Settings
    from app.main import create_app

    gate = tmp_path / "gate"
    fake = str(Path(__file__).resolve().parents[1] / "fake_export.py")

    def command(name: str, variant: str, kinds: list[str]) -> list[str]:
        return [sys.executable, fake, name, variant, ",".join(kinds), str(tmp_path / "runs"), str(gate)]

    settings = Settings(models_dir=tmp_path / "m", data_dir=tmp_path / "d", export_on_start=False)
    with TestClient(create_app(settings, export_command=command)) as client:
        r = client.get(
            "/embed/prediction",
            params={"model": "resnet20", "weights": "init", "image": "shapes-32", "layer": "conv1"},
            headers={"Accept": "text/html"},
        )
        gate.touch()
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html"), r.text[:300]
        assert 'http-equiv="refresh"' in r.text and ("being exported" in r.text or "queued" in r.text)
        assert int(r.headers["retry-after"]) >= 1


def test_cli_manages_the_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from app.cli import main
    from app.runtime.store import ImageStore

    store = ImageStore(tmp_path, 10**6)
    data = png_bytes(seed=7)
    image_id = "ef" * 32
    store.put(image_id, data, name="kept.png")
    base = ["images", "--data-dir", str(tmp_path)]
    assert main([*base, "pin", image_id]) == 0 and store.is_pinned(image_id)
    assert main([*base, "list"]) == 0 and "pinned  kept.png" in capsys.readouterr().out
    assert main([*base, "stats"]) == 0 and '"pinned_images": 1' in capsys.readouterr().out
    assert main([*base, "unpin", image_id]) == 0 and not store.is_pinned(image_id)
    assert main([*base, "delete", image_id]) == 0 and not store.exists(image_id)
    assert main([*base, "pin", image_id]) == 2 and "no stored image" in capsys.readouterr().err
