"""HTTP API: listing, manifests, analysis, and every kind of bad input (clear 4xx, nothing lost)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import png_bytes


@pytest.fixture
def client(exported: Callable, make_client: Callable):  # noqa: ANN201
    exported("resnet20")
    return make_client(max_upload_bytes=200_000, max_batch=3)


def _analyze(client, data: bytes | list[bytes], name: str = "resnet20", **params: str):  # noqa: ANN001, ANN202
    blobs = data if isinstance(data, list) else [data]
    files = [("image", (f"x{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    return client.post(f"/api/models/{name}/analyze", files=files, params={"weights": "init", **params})


def test_health_models_manifest(client) -> None:  # noqa: ANN001
    assert client.get("/healthz").json() == {"status": "ok"}
    rows = client.get("/api/models").json()
    by = {r["name"]: r for r in rows}
    assert len(rows) == 11 and by["resnet50"]["params"] == 25_557_032 and by["resnet20"]["family"] == "cifar"
    assert by["resnet101"]["depth"] == 101 and by["resnet18"]["blocks"] == 8
    m = client.get("/api/models/resnet20", params={"weights": "init"}).json()
    assert m["name"] == "resnet20" and len(m["taps"]) == 50


def test_unknown_model_404_lists_known(client) -> None:  # noqa: ANN001
    r = client.get("/api/models/resnet9")
    assert r.status_code == 404 and "resnet50" in r.json()["detail"] and "resnet20" in r.json()["known"]
    r = _analyze(client, png_bytes(), name="vgg19")
    assert r.status_code == 404 and "unknown model 'vgg19'" in r.json()["detail"]
    r = client.get("/api/models/resnet20", params={"weights": "nope"})
    assert r.status_code == 404 and "unknown weights" in r.json()["detail"]


def test_analyze_json_contract(client) -> None:  # noqa: ANN001
    r = _analyze(client, png_bytes())
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["model"]["name"] == "resnet20" and j["input"]["shape"] == [1, 3, 32, 32]
    top = j["prediction"][0]["top"]
    assert len(top) == 5 and abs(sum(t["probability"] for t in top)) <= 1.0 + 1e-6
    assert top[0]["probability"] >= top[1]["probability"]
    assert len(j["layers"]) == 50 and len(j["batchnorm"]) == 19 and len(j["blocks"]) == 9
    layer = j["layers"][0]
    assert set(layer["stats"]) == {"mean", "std", "min", "max", "zero_fraction", "l2"}
    h = layer["histogram"]
    assert len(h["edges"]) == len(h["counts"]) + 1 and h["underflow"] + h["overflow"] + sum(h["counts"]) == h["sampled"]
    b = j["blocks"][0]
    assert {"norm_x", "norm_f", "norm_h", "ratio", "gate", "stage", "sample"} <= set(b)
    assert len(b["sample"]["x"]) == len(b["sample"]["f"]) <= 2100
    assert set(j["feature_maps"]) == {"relu"} | {b["id"] for b in j["blocks"]}


def test_gzip_and_cache(client) -> None:  # noqa: ANN001
    data = png_bytes(seed=5)
    r1 = _analyze(client, data)
    r2 = _analyze(client, data)
    assert r1.content == r2.content
    assert r1.headers.get("content-encoding") == "gzip"
    service = client.app.state.service
    assert service.cache.hits >= 1


def test_batch_of_images_and_limit(client) -> None:  # noqa: ANN001
    r = _analyze(client, [png_bytes(seed=i) for i in range(2)])
    assert r.status_code == 200 and r.json()["input"]["shape"][0] == 2 and len(r.json()["prediction"]) == 2
    r = _analyze(client, [png_bytes(seed=i) for i in range(4)])
    assert r.status_code == 400 and "at most 3" in r.json()["detail"]


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ("1,0", "has 2 values but this model has 9 blocks"),
        ("nan," * 8 + "nan", "finite"),
        (",".join(["1"] * 8 + ["1.5"]), "[0, 1]"),
        ("abc", "could not read"),
        (",".join(["-0.1"] * 9), "[0, 1]"),
    ],
)
def test_bad_gates(client, gates: str, message: str) -> None:  # noqa: ANN001
    r = _analyze(client, png_bytes(), gates=gates)
    assert r.status_code == 400 and message in r.json()["detail"]


def test_bad_bn_and_params(client) -> None:  # noqa: ANN001
    r = _analyze(client, png_bytes(), bn="training")
    assert r.status_code == 400 and "bn must be one of running, batch" in r.json()["detail"]
    r = _analyze(client, png_bytes(), k="lots")
    assert r.status_code == 400 and "k must be an integer" in r.json()["detail"]
    r = client.post("/api/models/resnet20/analyze", params={"weights": "init"})
    assert r.status_code == 400 and "no image" in r.json()["detail"]


def _bomb_png(w: int = 20_000, h: int = 20_000) -> bytes:
    """A tiny PNG whose header claims w x h pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg() -> bytes:
    return png_bytes(size=(64, 48), fmt="JPEG")


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"hello, I am text", 400, "not an image"),
        (b"", 400, "empty"),
        (png_bytes(size=(64, 64))[:200], 400, "damaged or truncated"),
        (_jpeg()[: len(_jpeg()) // 2], 400, "damaged or truncated"),
        (_bomb_png(), 400, "too large"),
        (_bomb_png(9000, 9000), 400, "9000 x 9000 pixels"),
    ],
)
def test_bad_images(client, data_dir: Path, data: bytes, status: int, message: str) -> None:  # noqa: ANN001
    r = _analyze(client, data)
    assert r.status_code == status and message in r.json()["detail"], r.text
    r = client.post("/api/images", files={"image": ("x.png", data, "image/png")})
    assert r.status_code == status and message in r.json()["detail"]
    assert client.get("/healthz").status_code == 200
    assert not (data_dir / "images").exists() or not any((data_dir / "images").iterdir())


def test_upload_over_limit_refused_before_buffering(client) -> None:  # noqa: ANN001
    big = b"\0" * 300_000
    r = client.post("/api/models/resnet20/analyze", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    # no Content-Length (chunked): refused while streaming
    def gen():  # noqa: ANN202
        for _ in range(40):
            yield b"\0" * 10_000

    r = client.post("/api/images", content=gen(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_unusual_image_modes_accepted(client) -> None:  # noqa: ANN001
    rgb = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    i16 = Image.fromarray((np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16))
    cases = {
        "cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "16bit": _encode(i16, "PNG"),
        "palette": _encode(rgb.convert("P"), "PNG"),
        "grey": _encode(rgb.convert("L"), "PNG"),
        "rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "animated": gif.getvalue(),
    }
    for name, data in cases.items():
        r = _analyze(client, data)
        assert r.status_code == 200, (name, r.text)


def test_exif_orientation_applied() -> None:
    from app.runtime.preprocess import decode_image

    im = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _encode(im, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (20, 60)


def test_store_and_analyze_by_id(client, data_dir: Path) -> None:  # noqa: ANN001
    data = png_bytes(seed=9)
    r = client.post("/api/images", files={"image": ("cat.png", data, "image/png")})
    assert r.status_code == 201
    image_id = r.json()["id"]
    assert client.get(f"/api/images/{image_id}").content == data
    r = client.post("/api/models/resnet20/analyze", params={"image_id": image_id, "weights": "init"})
    assert r.status_code == 200 and r.json()["input"]["images"] == [image_id]
    r = client.post("/api/models/resnet20/analyze", params={"image_id": "0" * 64, "weights": "init"})
    assert r.status_code == 400 and "no stored image" in r.json()["detail"]
    fm = client.get(
        "/api/models/resnet20/featuremap",
        params={"image_id": image_id, "tap": "layer1.0", "channel": 3, "weights": "init"},
    ).json()
    assert fm["shape"] == [32, 32] and len(fm["values"]) == 32
    r = client.get(
        "/api/models/resnet20/featuremap",
        params={"image_id": image_id, "tap": "layer1.0", "channel": 99, "weights": "init"},
    )
    assert r.status_code == 400 and "channel must be in [0, 15]" in r.json()["detail"]
