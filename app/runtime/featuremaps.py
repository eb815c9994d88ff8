"""Feature-map thumbnails: channels of a tap as colour-mapped PNGs with the value range used."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

# Viridis, sampled at 9 points and interpolated to 256 entries.
_ANCHORS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    np.float64,
)
LUT = np.stack([np.interp(np.linspace(0, 8, 256), np.arange(9), _ANCHORS[:, i]) for i in range(3)], axis=1).astype(
    np.uint8
)  # (256, 3)


def colorize(a: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(H, W) values to (H, W, 3) uint8 through the viridis LUT over [vmin, vmax]."""
    scale = 255.0 / (vmax - vmin) if vmax > vmin else 0.0
    idx = np.clip((a - vmin) * scale, 0, 255).astype(np.uint8)
    return LUT[idx]


def png_b64(rgb: np.ndarray) -> str:
    """Base64 PNG of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def top_channels(channel_mean: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` channels with the largest mean activation, largest first."""
    k = min(k, channel_mean.size)
    idx = np.argpartition(-channel_mean, k - 1)[:k]
    return [int(i) for i in idx[np.argsort(-channel_mean[idx], kind="stable")]]


def thumbnails(t: np.ndarray, channel_mean: np.ndarray, k: int, image: int = 0) -> dict:
    """Top-k channels of image ``image`` of a tap (N, C, H, W) as PNGs on one shared colour scale."""
    chans = top_channels(channel_mean, k)
    maps = t[image, chans]  # (k, H, W)
    vmin, vmax = float(maps.min()), float(maps.max())
    return {
        "channels": chans,
        "png": [png_b64(colorize(m, vmin, vmax)) for m in maps],
        "vmin": vmin,
        "vmax": vmax,
        "size": [int(t.shape[2]), int(t.shape[3])],
        "colormap": "viridis",
    }
