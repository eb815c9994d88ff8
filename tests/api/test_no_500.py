"""Requests beyond what the schema describes (broken forms, odd JSON numbers, deep nesting) answer 4xx, never 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import png_bytes


@pytest.fixture
def client(make_client: Callable):  # noqa: ANN201
    return make_client()


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"dataset": "curved", "degree": Infinity}', "degree must be a whole number"),
        (b'{"dataset": "curved", "degree": -Infinity}', "degree must be a whole number"),
        (b'{"dataset": "curved", "degree": NaN}', "degree must be a whole number"),
        (b'{"dataset": "curved", "degree": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_regression_odd_json_is_400(client, body: bytes, message: str) -> None:  # noqa: ANN001
    r = client.post("/api/regression", content=body, headers=JSON)
    assert r.status_code == 400 and message in r.json()["detail"]


def test_broken_multipart_is_400(client) -> None:  # noqa: ANN001
    url = "/api/models/resnet20/analyze"
    r = client.post(url, content=b"abc", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["detail"]
    r = client.post(url, content=b"--xx\r\nfoo\r\n", headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    extra = [(f"f{i}", ("f", b"x")) for i in range(3)]
    r = client.post("/api/images", files=[("image", ("a.png", png_bytes())), *extra])
    assert r.status_code == 400 and "Too many files" in r.json()["detail"]
