"""A built-in, deterministic probe image for views that need one when the user gave none."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image


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
