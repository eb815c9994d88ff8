"""Training data for the CIFAR-sized models: a generated 10-class image set, and a CIFAR-10 loader.

The generated set needs no download and is a pure function of its seed. Every class is defined by
*shape or structure* (stripe orientation, outline, texture), never by colour: foreground and
background colours, position, scale, rotation, phase, frequency, lighting and noise are all drawn at
random, so a network has to learn real spatial features (edges, orientations, corners, periodicity)
to tell the classes apart. Images are rendered at 2x and box-filtered down to 32x32 for anti-aliasing.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CLASSES: tuple[str, ...] = (
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "dots",
    "disc",
    "ring",
    "square",
    "triangle",
    "cross",
)

SIZE = 32
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

_SS = 2  # supersampling factor
_N = SIZE * _SS
# Pixel-centre coordinates in [-1, 1], y pointing down: (N, N) each.
_Y, _X = np.meshgrid((np.arange(_N) + 0.5) / _N * 2 - 1, (np.arange(_N) + 0.5) / _N * 2 - 1, indexing="ij")
_EDGE = 1.5 * 2.0 / _N  # soft-edge width, in image units (1.5 supersampled pixels)

# Difficulty knobs (tuned so ResNet-20 reaches roughly 85-95 % held-out in ~300 steps of batch 64).
_NOISE_MAX = 0.13  # per-pixel Gaussian noise sigma is drawn from [0.02, _NOISE_MAX]
_MIN_CONTRAST = 0.12  # minimum luminance difference between foreground and background
_CLUTTER_MAX = 3  # up to this many random thin line segments drawn over every image


def _rot(theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The coordinate grid rotated by ``theta`` (radians)."""
    c, s = np.cos(theta), np.sin(theta)
    return c * _X + s * _Y, -s * _X + c * _Y


def _soft(d: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (negative inside), with an anti-aliased edge."""
    return np.clip(0.5 - d / _EDGE, 0.0, 1.0)


def _wave(phase: np.ndarray, hardness: float) -> np.ndarray:
    """A periodic profile in [0, 1]: a sine (hardness 0) sharpening to a square wave (hardness 1)."""
    s = np.sin(phase)
    k = 1.0 + 12.0 * hardness
    return 0.5 + 0.5 * np.tanh(k * s) / np.tanh(k)


def _grating(rng: np.random.Generator, theta: float) -> np.ndarray:
    """Stripes across the image at angle ``theta`` with a coarse or fine period and random phase."""
    cycles = rng.uniform(2.0, 3.5) if rng.random() < 0.5 else rng.uniform(5.0, 7.0)  # per image width
    u, _ = _rot(theta + rng.normal(0.0, np.deg2rad(6)))
    return _wave(np.pi * cycles * u + rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.0))


def _checkerboard(rng: np.random.Generator) -> np.ndarray:
    """A checkerboard at a random rotation, scale and offset."""
    cycles = rng.uniform(2.0, 5.0)
    u, v = _rot(rng.uniform(0, np.pi / 2))
    a = np.pi * cycles * u + rng.uniform(0, 2 * np.pi)
    b = np.pi * cycles * v + rng.uniform(0, 2 * np.pi)
    k = 1.0 + 12.0 * rng.uniform(0.3, 1.0)
    return 0.5 + 0.5 * np.tanh(k * np.sin(a) * np.sin(b)) / np.tanh(k)


def _dots(rng: np.random.Generator) -> np.ndarray:
    """A square or hexagonal lattice of round dots."""
    spacing = rng.uniform(0.28, 0.5)
    radius = spacing * rng.uniform(0.2, 0.33)
    u, v = _rot(rng.uniform(0, np.pi))
    u = u / spacing + rng.uniform(0, 1)
    v = v / spacing + rng.uniform(0, 1)
    if rng.random() < 0.5:  # hexagonal: shift every other row by half a period
        u = u + 0.5 * (np.round(v) % 2)
    du, dv = u - np.round(u), v - np.round(v)
    return _soft(np.hypot(du, dv) * spacing - radius)


def _shape(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One outline shape at a random position, size and rotation."""
    r = rng.uniform(0.36, 0.66)
    cx, cy = rng.uniform(-0.92 + r, 0.92 - r, size=2)
    th = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(th), np.sin(th)
    x, y = _X - cx, _Y - cy
    u, v = c * x + s * y, -s * x + c * y
    if kind == "disc":
        d = np.hypot(u, v) - r
    elif kind == "ring":
        width = r * rng.uniform(0.22, 0.4)
        d = np.abs(np.hypot(u, v) - (r - width / 2)) - width / 2
    elif kind == "square":
        h = r * 0.82
        d = np.maximum(np.abs(u), np.abs(v)) - h
    elif kind == "triangle":
        # Equilateral, circumradius r: inside where all three edge half-planes agree.
        angles = th + np.array([np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3])
        d = np.max([-(np.sin(a) * x + np.cos(a) * y) - r / 2 for a in angles], axis=0)
    elif kind == "cross":
        w = r * rng.uniform(0.22, 0.36)
        d = np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - w), np.maximum(np.abs(v) - r, np.abs(u) - w))
    else:  # pragma: no cover - internal
        raise AssertionError(kind)
    return _soft(d)


def _pattern(rng: np.random.Generator, label: int) -> np.ndarray:
    """The class-defining coverage map (N, N) in [0, 1] for ``label``."""
    name = CLASSES[label]
    if name == "horizontal stripes":
        return _grating(rng, np.pi / 2)  # stripes run along x: the wave varies with y
    if name == "vertical stripes":
        return _grating(rng, 0.0)
    if name == "diagonal stripes":
        return _grating(rng, np.pi / 4 if rng.random() < 0.5 else -np.pi / 4)
    if name == "checkerboard":
        return _checkerboard(rng)
    if name == "dots":
        return _dots(rng)
    return _shape(rng, name)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random foreground and background RGB colours with at least a minimum luminance contrast."""
    lum = np.array([0.299, 0.587, 0.114])
    while True:
        fg, bg = rng.uniform(0, 1, size=3), rng.uniform(0, 1, size=3)
        if abs(float((fg - bg) @ lum)) >= _MIN_CONTRAST:
            return fg, bg


def _clutter(rng: np.random.Generator) -> np.ndarray:
    """Coverage of a few thin random line segments, to keep the classes from being trivially clean."""
    out = np.zeros((_N, _N))
    for _ in range(rng.integers(0, _CLUTTER_MAX + 1)):
        p, q = rng.uniform(-1, 1, size=2), rng.uniform(-1, 1, size=2)
        d = q - p
        t = np.clip(((_X - p[0]) * d[0] + (_Y - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        dist = np.hypot(_X - p[0] - t * d[0], _Y - p[1] - t * d[1])
        out = np.maximum(out, _soft(dist - rng.uniform(0.01, 0.03)))
    return out


def _render(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One (32, 32, 3) uint8 image of class ``label`` and its object's coverage (32, 32) in [0, 1]."""
    m = _pattern(rng, label)
    fg, bg = _colours(rng)
    img = bg * (1 - m[..., None]) + fg * m[..., None]
    clutter = _clutter(rng)
    if clutter.any():
        img = img * (1 - clutter[..., None]) + rng.uniform(0, 1, size=3) * clutter[..., None]
    # Soft lighting: a random linear brightness ramp across the image.
    gx, gy = rng.normal(0, 0.12, size=2)
    img = img * (1 + gx * _X + gy * _Y)[..., None]
    img = img.reshape(SIZE, _SS, SIZE, _SS, 3).mean(axis=(1, 3))  # box-filter down to 32x32
    img = img + rng.normal(0, rng.uniform(0.02, _NOISE_MAX), size=img.shape)
    coverage = (m * (1 - clutter)).reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3))  # what clutter leaves visible
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8), coverage


def make_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` generated images (n, 32, 32, 3) uint8 and labels (n,) int64, balanced when 10 divides n."""
    images, labels, _ = make_batch_with_masks(n, rng)
    return images, labels


def make_batch_with_masks(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`make_batch` (the same images for the same generator) and each image's object coverage (n, 32, 32)."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(CLASSES))
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.empty((n, SIZE, SIZE), dtype=np.float64)
    for i, label in enumerate(labels):
        images[i], masks[i] = _render(rng, int(label))
    return images, labels, masks


def to_tensor(images_uint8: np.ndarray) -> Tensor:
    """Images (N, 32, 32, 3) uint8 as a float32 NCHW tensor normalised with the CIFAR mean and std."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def train_stream(batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless normalised training batches (images NCHW float32, labels int64), deterministic by seed."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rng = np.random.default_rng(seed)
    while True:
        images, labels = make_batch(batch_size, rng)
        yield to_tensor(images), torch.from_numpy(labels)


def test_set(n: int = 1000, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out set: ``n`` images (uint8) and labels, from a seed no training run uses."""
    return make_batch(n, np.random.default_rng(seed))


def save_sample_grid(path: Path, per_class: int = 8) -> None:
    """Write a PNG with one row per class: the class name, then ``per_class`` samples at 3x."""
    from PIL import Image, ImageDraw, ImageFont

    scale, pad, label_w = 3, 4, 140
    cell = SIZE * scale
    rng = np.random.default_rng(2024)
    width = label_w + per_class * (cell + pad) + pad
    height = len(CLASSES) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=13)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    for row, name in enumerate(CLASSES):
        y = pad + row * (cell + pad)
        draw.text((pad, y + cell // 2 - 7), name, fill=(0, 0, 0), font=font)
        for col in range(per_class):
            tile = Image.fromarray(_render(rng, row)[0]).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (label_w + pad + col * (cell + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: images (N, 32, 32, 3) uint8 and labels (N,) int64."""
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - only files the user points us to
    except Exception as e:  # unpickling garbage can raise almost anything
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict, got {type(batch).__name__})")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (no 'data' and 'labels' entries)")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIZE * SIZE:
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be {data.shape[0]} integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"{path}: labels must lie in 0..9")
    images = data.reshape(-1, 3, SIZE, SIZE).transpose(0, 2, 3, 1)  # CHW planes -> HWC
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_cifar10(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 from its python batches: (train images, train labels, test images, test labels).

    ``directory`` holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (or is the folder
    that contains ``cifar-10-batches-py``). Images are (N, 32, 32, 3) uint8, labels int64. The batches
    are Python pickles by format, so they are read with ``pickle.load``: only point this at files you
    trust (nothing is ever downloaded). Raises ValueError for a missing or malformed directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"CIFAR-10 directory {str(directory)!r} does not exist or is not a directory")
    if not (directory / "test_batch").exists() and (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise ValueError(
            f"CIFAR-10 directory {str(directory)!r} lacks {', '.join(missing)}; expected the python batches "
            "data_batch_1..data_batch_5 and test_batch (cifar-10-python.tar.gz, extracted)"
        )
    parts = [_cifar_batch(directory / n) for n in names]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    return x_train, y_train, parts[5][0], parts[5][1]
