"""The shipped loss landscapes (``models/landscapes/*.json``, made by ``resviz landscape``): one reader, cached.

Each file is one surface of Li et al. 2018 around a shipped CIFAR network (``app/nets/landscape.py`` computes it
with torch and ONNX Runtime; ``scripts/landscapes.sh`` recomputes the set). The server only reads them: the
list of surfaces with their numbers (``catalogue``), and per depth the residual and plain surfaces side by side
(``pair``) with what their charts need: the log10 of every loss, one colour range for both, the numbers of the
captions and the comparisons between the two. A file is read again when it changes on disk.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from app.paths import SHIPPED_LANDSCAPES_DIR, SHIPPED_WEIGHTS_DIR
from app.runtime.sweeps import weights_fingerprint

KINDS = ("residual", "plain")


class UnknownLandscape(LookupError):
    """No shipped surface for the model asked for; the message (and ``known``) names the ones there are."""

    def __init__(self, message: str, known: list[str]) -> None:
        super().__init__(message)
        self.known = known


def _stats(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime, size) of every surface file, the cache's key."""
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


@lru_cache(maxsize=4)
def _read(directory: str, stats: tuple[tuple[str, int, int], ...]) -> dict[str, dict]:
    """Every readable surface of ``directory`` by its stem (``resnet56-plain``); unreadable files are skipped."""
    out = {}
    for name, _, _ in stats:
        try:
            doc = json.loads((Path(directory) / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("model"), str) and isinstance(doc.get("loss"), list):
            out[name.removesuffix(".json")] = doc
    return out


def surfaces(directory: Path = SHIPPED_LANDSCAPES_DIR) -> dict[str, dict]:
    """The shipped surfaces by stem, read once per file version."""
    return _read(str(directory), _stats(directory))


def _log10(x: float | None) -> float | None:
    return math.log10(x) if isinstance(x, int | float) and math.isfinite(x) and x > 0 else None


@lru_cache(maxsize=32)
def _log_accuracy(path: str, mtime_ns: int) -> float | None:
    try:
        return float(json.loads(Path(path).read_text())["held_out"]["accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _held_out(surface: str) -> float | None:
    """Held-out accuracy of the shipped run behind a surface (its training log, read once per version), if any."""
    path = SHIPPED_WEIGHTS_DIR / f"{surface}.log.json"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _log_accuracy(str(path), mtime)


def _rise(metrics: dict, key: str, radius: float) -> dict:
    found = next((r for r in metrics.get(key, []) if r.get("radius") == radius), None)
    return found or {"radius": radius, "mean": None, "max": None}


def summary(doc: dict) -> dict:
    """The numbers of one surface that the captions and tables show."""
    m = doc.get("metrics", {})
    fit = m.get("quadratic_fit", {})
    coords = doc.get("coords") or [0.0]
    centre = len(coords) // 2
    accuracy = doc.get("accuracy") or [[None]]
    weights_now = weights_fingerprint(doc["model"], doc.get("weights", ""))
    stem = doc.get("surface", "")
    return {
        "surface": stem,
        "model": doc["model"],
        "depth": doc.get("depth"),
        "weights": doc.get("weights"),
        "plain": bool(doc.get("plain")),
        "grid": doc.get("grid"),
        "span": doc.get("span"),
        "images": doc.get("images"),
        "seed": doc.get("seed"),
        "command": doc.get("command"),
        "wall_time_s": doc.get("wall_time_s"),
        "seconds_per_point": doc.get("seconds_per_point"),
        "centre_loss": m.get("centre_loss"),
        "centre_accuracy": accuracy[centre][centre] if len(accuracy) > centre else None,
        "held_out_accuracy": _held_out(stem),
        "rise_05": _rise(m, "rise", 0.5),
        "rise_10": _rise(m, "rise", 1.0),
        "slice_rise_05": _rise(m, "slice_rise", 0.5),
        "slice_rise_10": _rise(m, "slice_rise", 1.0),
        "local_minima": m.get("local_minima"),
        "centre_is_minimum": m.get("centre_is_minimum"),
        "eig_ratio": fit.get("eig_ratio"),
        "eigenvalues": fit.get("eigenvalues"),
        "convex": fit.get("convex"),
        "fit_radius": fit.get("radius"),
        "fit_points": fit.get("points"),
        "max_loss": m.get("max_loss"),
        "non_finite_points": m.get("non_finite_points"),
        "bn_statistics": (doc.get("bn_statistics") or {}).get("source", "shipped"),
        "backend": doc.get("backend"),
        "current": weights_now is not None and weights_now == doc.get("weights_sha256"),
    }


def catalogue(directory: Path = SHIPPED_LANDSCAPES_DIR) -> dict:
    """Every shipped surface's numbers (no grids), shallow models first, residual before plain."""
    rows = [summary(doc) for doc in surfaces(directory).values()]
    rows.sort(key=lambda r: (r["depth"] or 0, r["plain"]))
    depth = {r["model"]: r["depth"] or 0 for r in rows}
    return {"surfaces": rows, "models": sorted(depth, key=lambda n: (depth[n], n))}


def _grid_log10(rows: list[list[float | None]]) -> list[list[float | None]]:
    return [[_log10(v) for v in row] for row in rows]


def _surface_answer(doc: dict) -> dict:
    """One surface for the charts: its numbers, grids (and their log10) and its 1-D slice."""
    sl = doc.get("slice", {})
    return {
        **summary(doc),
        "coords": doc["coords"],
        "loss": doc["loss"],
        "log10_loss": _grid_log10(doc["loss"]),
        "accuracy": doc.get("accuracy"),
        "local_minima_at": (doc.get("metrics") or {}).get("local_minima_at", []),
        "slice": {
            "alpha": sl.get("alpha", []),
            "loss": sl.get("loss", []),
            "log10_loss": [_log10(v) for v in sl.get("loss", [])],
            "accuracy": sl.get("accuracy", []),
        },
        "bn_statistics_detail": doc.get("bn_statistics"),
    }


def _range(values: list[float | None]) -> dict:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return {"min": min(finite), "max": max(finite)} if finite else {"min": None, "max": None}


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not den > 0:
        return None
    value = num / den
    return value if math.isfinite(value) else None


def pair(model: str, directory: Path = SHIPPED_LANDSCAPES_DIR) -> dict:
    """The residual and plain surfaces of one depth, on one colour range, with their comparisons and notes."""
    docs = surfaces(directory)
    halves = {kind: docs.get(f"{model}-{kind}") for kind in KINDS}
    if not any(halves.values()):
        shipped = catalogue(directory)["models"]
        known = ", ".join(shipped) or "none (run scripts/landscapes.sh)"
        raise UnknownLandscape(f"no shipped loss landscape for {model[:60]!r}; shipped: {known}", shipped)
    out: dict = {"model": model, "depth": None, "notes": []}
    for kind in KINDS:
        doc = halves[kind]
        out[kind] = _surface_answer(doc) if doc else None
        if doc is None:
            out["notes"].append(f"no {kind} surface is shipped for {model}")
            continue
        out["depth"] = doc.get("depth")
        s = out[kind]
        if s["bn_statistics"] != "shipped":
            out["notes"].append(f"{kind}: {doc['bn_statistics'].get('why', 'BN statistics re-estimated')}")
        if s["non_finite_points"]:
            n = s["non_finite_points"]
            out["notes"].append(f"{kind}: {n} grid point{'s' if n != 1 else ''} overflowed float32 (drawn as gaps)")
        if not s["current"]:
            out["notes"].append(f"{kind}: computed for other weights than the shipped ones now (sha256 differs)")
    present = [out[k] for k in KINDS if out[k]]
    grid_values = [v for s in present for row in s["log10_loss"] for v in row]
    slice_values = [v for s in present for v in s["slice"]["log10_loss"]]
    out["colour"] = {"quantity": "log10 of the training loss", **_range(grid_values)}
    out["slice_range"] = {"quantity": "log10 of the training loss", **_range(slice_values)}
    res, pl = out["residual"], out["plain"]
    if res and pl:
        out["comparison"] = {
            "rise_ratio_05": _ratio(pl["rise_05"]["mean"], res["rise_05"]["mean"]),
            "rise_ratio_10": _ratio(pl["rise_10"]["mean"], res["rise_10"]["mean"]),
            "plain_steeper_05": _greater(pl["rise_05"]["mean"], res["rise_05"]["mean"]),
            "plain_steeper_10": _greater(pl["rise_10"]["mean"], res["rise_10"]["mean"]),
            "more_minima": "plain"
            if (pl["local_minima"] or 0) > (res["local_minima"] or 0)
            else "residual"
            if (res["local_minima"] or 0) > (pl["local_minima"] or 0)
            else "same",
            "centre_loss_ratio": _ratio(pl["centre_loss"], res["centre_loss"]),
            "slice_rise_ratio_05": _ratio(pl["slice_rise_05"]["mean"], res["slice_rise_05"]["mean"]),
            "slice_rise_ratio_10": _ratio(pl["slice_rise_10"]["mean"], res["slice_rise_10"]["mean"]),
        }
    else:
        out["comparison"] = None
    return out


def _greater(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a > b
