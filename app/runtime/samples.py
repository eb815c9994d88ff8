"""Built-in images: the sample pictures of static/samples/ and a deterministic probe image.

Samples are read-only and addressed by name or by the sha256 of their bytes, exactly like a
stored upload, so a link to a sample never writes anything to the image store.
"""

from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from typing import Protocol

import numpy as np
from PIL import Image

from app.paths import SAMPLES_DIR


class _Store(Protocol):
    def get(self, image_id: str) -> bytes: ...


@lru_cache(maxsize=1)
def samples() -> dict[str, str]:
    """Built-in sample images: name -> file in static/samples/."""
    rows = json.loads((SAMPLES_DIR / "index.json").read_text())
    return {r["name"]: r["file"] for r in rows}


@lru_cache(maxsize=4)
def samples_of_size(size: int) -> tuple[str, ...]:
    """Names of the built-in samples drawn at ``size`` pixels (the 32 px ones for the CIFAR models)."""
    rows = json.loads((SAMPLES_DIR / "index.json").read_text())
    return tuple(r["name"] for r in rows if r.get("size") == size)


def sample_bytes(name: str) -> bytes:
    """The bytes of a built-in sample image (by name)."""
    return _read(samples()[name])


@lru_cache(maxsize=64)
def _read(file: str) -> bytes:
    return (SAMPLES_DIR / file).read_bytes()


@lru_cache(maxsize=1)
def sample_hashes() -> dict[str, str]:
    """sha256 of each sample's bytes -> its file name."""
    return {hashlib.sha256(_read(f)).hexdigest(): f for f in samples().values()}


def stored_or_sample(store: _Store, image_id: str) -> bytes:
    """Bytes of a built-in sample (by its hash) or else of a stored image; KeyError if neither."""
    file = sample_hashes().get(image_id)
    return _read(file) if file is not None else store.get(image_id)


@lru_cache
def probe_png(size: int = 64) -> bytes:
    """A colour grating with a disc, as PNG bytes (the same every time)."""
    y, x = np.mgrid[0:size, 0:size] / size
    r = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (x * 0.8 + y * 0.6))
    g = 0.5 + 0.5 * np.cos(2 * np.pi * 2 * y)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2) < 0.05
    b = np.where(disc, 1.0, 0.2)
    rgb = (np.stack([r, g, b], axis=2) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()
