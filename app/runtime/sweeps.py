"""The depth sweep precomputed for the built-in probe image, shipped beside the trained weights.

``scripts/depth_sweep.py`` runs the sweep through the ONNX gradient graphs for the probe image
(``app.runtime.samples.probe_png``), every weights choice and both BN modes, and writes
``models/weights/depth-sweep.json``. A row is served from that file only while it still describes
the weights the server would use now (same variant, same file sha256, same export format);
otherwise the server computes it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from app.paths import EXPORT_FORMAT, SHIPPED_WEIGHTS_DIR, shipped_weights
from app.runtime.preprocess import sha256_bytes

PRECOMPUTED_PATH = SHIPPED_WEIGHTS_DIR / "depth-sweep.json"


@lru_cache(maxsize=64)
def _file_sha(path: str, mtime_ns: int, size: int) -> str:
    return sha256_bytes(Path(path).read_bytes())


def weights_fingerprint(name: str, variant: str) -> str | None:
    """sha256 of the shipped state dict behind ``variant`` ("init": None, it is made from a seed)."""
    path = shipped_weights(name, variant)
    if path is None:
        return None
    st = path.stat()
    return _file_sha(str(path), st.st_mtime_ns, st.st_size)


def entry_key(weights: str, bn: str) -> str:
    """Key of one sweep (weights choice and BN mode) in the precomputed file."""
    return f"{weights}|{bn}"


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def load_precomputed(path: Path = PRECOMPUTED_PATH) -> dict:
    """The precomputed file's content ({} when missing or unreadable)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _load(str(path), mtime)


def precomputed_row(
    image_sha: str, weights: str, bn: str, depth: int, variants: list[str], path: Path = PRECOMPUTED_PATH
) -> dict | None:
    """The shipped row for one depth if it still matches the weights in use, else None.

    ``variants`` are the weights the registry has for ``resnet{depth}`` now (to see whether the
    row's fallback choice is still the one the server would make).
    """
    data = load_precomputed(path)
    if data.get("format") != EXPORT_FORMAT or data.get("image_sha256") != image_sha:
        return None
    rows = data.get("sweeps", {}).get(entry_key(weights, bn), [])
    row = next((r for r in rows if r.get("depth") == depth), None)
    if row is None:
        return None
    name = f"resnet{depth}"
    variant = weights if weights in variants else "init"
    plain_variant = "plain" if weights == "trained" and "plain" in variants else variant
    for key, want in (("residual", variant), ("plain", plain_variant)):
        part = row.get(key, {})
        if part.get("weights") != want or part.get("sha256") != weights_fingerprint(name, want):
            return None
    return row


def with_fingerprints(row: dict) -> dict:
    """A computed row with the sha256 of the weights each half used (as the precomputed file stores)."""
    out = {**row}
    for key in ("residual", "plain"):
        out[key] = {**row[key], "sha256": weights_fingerprint(row["model"], row[key]["weights"])}
    return out
