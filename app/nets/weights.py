"""Weights: He-init, the shipped trained CIFAR models, imported and fetched torchvision state dicts."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

from app.nets.resnet import build
from app.paths import VARIANT_RE, shipped_weights, user_weights
from app.specs import SPECS

# torchvision's published ImageNet weights (the "V1" recipe); the hex in each name is the
# start of the file's sha256, which we check as torchvision does.
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}
TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"


class WeightsError(ValueError):
    """A weights file that cannot be used, with a message saying why."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Load a state dict safely (``weights_only``), as float32, or raise WeightsError."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a directory, not a weights file")
    if not path.exists():
        raise WeightsError(f"{path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure mode becomes one clear message
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains Python objects other than tensors (a pickle that could run code), refused"
        else:
            reason = f"it is not a readable torch state dict (truncated or corrupt?): {text}"
        raise WeightsError(f"cannot load {path}: {reason}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"cannot load {path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in obj.items()}


def check_state_dict(name: str, state: dict[str, Tensor]) -> None:
    """Raise WeightsError naming the first missing, unexpected or mis-shaped key for model ``name``."""
    expected = build(name).state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"weights do not fit {name}: missing key {missing[0]!r} ({len(missing)} missing)")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise WeightsError(
            f"weights do not fit {name}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"weights do not fit {name}: {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )


def load_variant(name: str, variant: str, models_dir: Path) -> tuple[dict[str, Tensor] | None, str, str | None]:
    """State dict (None for He-init), a description of its source, and the file's sha256."""
    if variant == "init":
        return None, "He initialisation (kaiming normal, fan_out), seed 0", None
    path = shipped_weights(name, variant) or user_weights(models_dir, name, variant)
    if not path.exists():
        raise WeightsError(f"no weights {variant!r} for {name}; import or fetch them first")
    state = read_state_dict(path)
    check_state_dict(name, state)
    return state, str(path), sha256_file(path)


def _validate_variant(variant: str) -> None:
    if not VARIANT_RE.match(variant) or variant in ("init", "trained", "plain"):
        raise WeightsError(
            f"invalid weights name {variant!r}: use lower-case letters, digits, - and _ "
            "(init, trained and plain are reserved)"
        )


def import_weights(path: Path, name: str, models_dir: Path, variant: str = "imported") -> Path:
    """Check a torchvision-format state dict against ``name`` and store it as weights ``variant``."""
    if name not in SPECS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    _validate_variant(variant)
    state = read_state_dict(Path(path))
    check_state_dict(name, state)
    dest = user_weights(models_dir, name, variant)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, dest)
    return dest


def fetch_weights(name: str, models_dir: Path, base_url: str = TORCHVISION_BASE_URL, timeout: float = 10.0) -> Path:
    """Download torchvision's ImageNet weights for ``name``, check the hash, store as ``imagenet``."""
    if name not in TORCHVISION_FILES:
        raise WeightsError(f"no published ImageNet weights for {name!r}; available: {', '.join(TORCHVISION_FILES)}")
    filename = TORCHVISION_FILES[name]
    url = base_url.rstrip("/") + "/" + filename
    dest = user_weights(models_dir, name, "imagenet")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{filename}.{os.getpid()}.download")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"cannot download {url}: {reason}. No network? Download the file elsewhere and "
            f"run `resviz weights import {filename} --model {name} --as imagenet`."
        ) from None
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    digest = sha256_file(tmp)
    if not digest.startswith(prefix):
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"hash mismatch for {url}: sha256 {digest[:12]}..., expected prefix {prefix}")
    try:
        state = read_state_dict(tmp)
        check_state_dict(name, state)
    except WeightsError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest
