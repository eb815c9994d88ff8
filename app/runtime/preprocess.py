"""Decode uploads safely and turn them into the float32 NCHW tensor a model expects."""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(ValueError):
    """An upload that is not a usable image, with a message a person understands."""


def decode_image(data: bytes, max_pixels: int = 20_000_000, min_side: int | None = None) -> Image.Image:
    """An RGB image from file bytes: first frame, EXIF orientation applied; size checked before decoding.

    With ``min_side``, a JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) whose
    shorter side is still at least ``min_side`` (Pillow's draft mode): a 12-megapixel photo for a
    224-pixel model then costs a few MB instead of 36. ``max_pixels`` bounds what is decoded.
    """
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size  # read from the header; no pixels decoded yet
            if w < 1 or h < 1:
                raise ImageError("the image has no pixels")
            if min_side and im.format == "JPEG" and min(w, h) > min_side:
                im.draft("RGB", (min_side, min_side))  # scale chosen so that both sides stay >= min_side
            dw, dh = im.size
            if dw * dh > max_pixels:
                raise ImageError(f"the image is too large: {w} x {h} pixels, more than the limit of {max_pixels:,}")
            if getattr(im, "is_animated", False):
                im.seek(0)  # first frame
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("the file is not an image Pillow can read (PNG, JPEG, GIF, WebP, BMP, TIFF ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image is damaged or truncated: {exc}") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the picture
        pass
    return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode (CMYK, 16-bit, palette, grey, alpha) to 8-bit RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    return im.convert("RGB")


def resize_and_crop(im: Image.Image, resize_shorter: int, crop: int) -> Image.Image:
    """Resize the shorter side to ``resize_shorter`` and center-crop ``crop`` x ``crop``."""
    if im.size == (crop, crop):
        return im  # already at the input size: not resampled
    w, h = im.size
    scale = resize_shorter / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    return im.crop((left, top, left + crop, top + crop))


def to_tensor(im: Image.Image, mean: list[float], std: list[float]) -> np.ndarray:
    """(3, H, W) float32, scaled to [0, 1] and normalised per channel."""
    a = np.asarray(im, dtype=np.float32) / 255.0  # (H, W, 3)
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def prepare(data: bytes, preprocessing: dict, max_pixels: int = 20_000_000) -> tuple[np.ndarray, Image.Image]:
    """Model input (3, H, W) and the cropped RGB image shown beside the charts."""
    im = decode_image(data, max_pixels, min_side=preprocessing["resize_shorter"])
    im = resize_and_crop(im, preprocessing["resize_shorter"], preprocessing["crop"])
    return to_tensor(im, preprocessing["mean"], preprocessing["std"]), im


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels."""
    try:
        return Image.open(io.BytesIO(data)).size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageError("the file is not an image Pillow can read (PNG, JPEG, GIF, WebP, BMP, TIFF ...)") from None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of some bytes (image ids and cache keys)."""
    return hashlib.sha256(data).hexdigest()
