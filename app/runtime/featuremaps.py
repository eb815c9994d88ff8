"""Feature-map thumbnails: channels of a tap as colour-mapped PNGs with the value range used.

Thumbnails are 8-bit palette PNGs (the palette is the colour map) written directly with zlib:
a third of the bytes of RGB and no per-image PIL overhead, which matters at 136 per answer.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

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


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PALETTE = _chunk(b"PLTE", LUT.tobytes())
_END = _chunk(b"IEND", b"")


def levels(a: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Values to colour-map indices 0..255 over [vmin, vmax] (uint8, same shape)."""
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        return np.zeros(a.shape, np.uint8)  # an overflowed tap: drawn flat, its range sent as null
    scale = 255.0 / (vmax - vmin) if vmax > vmin else 0.0
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.clip((a - vmin) * scale, 0, 255), nan=0.0).astype(np.uint8)


def png_indexed(idx: np.ndarray) -> bytes:
    """A PNG of an (H, W) uint8 image of colour-map indices, with the viridis palette."""
    h, w = idx.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each scanline starts with filter type 0 (none)
    rows[:, 1:] = idx
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))  # 8 bits, palette colour
    return _SIGNATURE + header + _PALETTE + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _END


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
        "png": [base64.b64encode(png_indexed(m)).decode("ascii") for m in levels(maps, vmin, vmax)],
        "vmin": vmin,
        "vmax": vmax,
        "size": [int(t.shape[2]), int(t.shape[3])],
        "colormap": "viridis",
    }
