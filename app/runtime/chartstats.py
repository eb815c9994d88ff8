"""The statistics the charts show, computed once here and sent in the JSON answers (numpy only).

The front end (``static/js/charts/``) only draws: the correlation and least-squares slope of each
block's F(x) against x, histogram moments, every tap's histogram spread onto one common grid, the
tails beyond each histogram's range, medians and means of the captions. ``annotate`` adds them to an
analysis answer (summary or whole); ``channel_summary``, ``gradient_spread``, ``moving_average`` and
``finite_mean`` serve the feature-map, gradient and lab answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.runtime.stats import compact

COMMON_BINS = 96  # columns of the depth x value heatmap on its common range


def _num(x: float) -> float | None:
    """A float for JSON, None where it is not a finite number."""
    x = float(x)
    return x if np.isfinite(x) else None


def _array(values: Sequence[Any]) -> np.ndarray:
    """Values as float64 (None, as a not-finite number arrives, becomes NaN)."""
    return np.array(values, dtype=np.float64)


def _padded(rows: list[list[Any]], fill: float) -> np.ndarray:
    """Rows of possibly different lengths as one float64 matrix, padded with ``fill``."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), fill)
    for i, r in enumerate(rows):
        out[i, : len(r)] = _array(r)
    return out


def hist_moments(hist: dict) -> dict:
    """Count, mean and std of a histogram (bin centres weighted by counts), and its fraction of negative values."""
    edges, counts = _array(hist["edges"]), _array(hist["counts"])
    centres = (edges[:-1] + edges[1:]) / 2
    n = float(counts.sum())
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float((counts * centres).sum() / n) if n else 0.0
        var = float((counts * centres * centres).sum() / n - mean * mean) if n else 0.0
        below = float(counts[edges[1:] <= 0].sum()) + hist.get("underflow", 0)
    sampled = hist.get("sampled") or 0
    return {
        "n": n,
        "mean": _num(mean),
        "std": _num(np.sqrt(max(var, 0.0))) if np.isfinite(var) else None,
        "negative": below / sampled if sampled else None,
    }


def fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson r, least-squares slope and means of y against x, and the range of x (None where undefined)."""
    n = min(len(x), len(y))
    a, b = _array(x[:n]), _array(y[:n])
    if n == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return {"r": None, "slope": None, "mx": None, "my": None, "xmin": None, "xmax": None}
    mx, my = float(a.mean()), float(b.mean())
    dx, dy = a - mx, b - my
    cxy, cxx, cyy = float(dx @ dy), float(dx @ dx), float(dy @ dy)
    return {
        "r": cxy / np.sqrt(cxx * cyy) if cxx > 0 and cyy > 0 else None,
        "slope": cxy / cxx if cxx > 0 else None,
        "mx": mx,
        "my": my,
        "xmin": float(a.min()),
        "xmax": float(a.max()),
    }


def _rebin_exact(edges: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Overlap of every source bin with every grid bin, for rows whose edges are not all finite."""
    a, b = edges[:, :-1, None], edges[:, 1:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = np.minimum(b, grid[1:]) - np.maximum(a, grid[:-1])
        share = np.where(overlap > 0, overlap / (b - a), 0.0)
    ok = np.isfinite(share).all(axis=2) & (counts > 0) & np.isfinite(counts)
    return np.einsum("ls,lsj->lj", np.where(ok, counts, 0.0), np.where(ok[:, :, None], share, 0.0))


def rebin(edges: np.ndarray, counts: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Histograms (rows of ``edges`` and ``counts``) spread onto ``bins`` equal bins over [lo, hi].

    Each source bin's count is spread uniformly over its width; a bin of zero or not-finite width
    contributes nothing (it has no extent to spread over). The spread is the difference of the
    piecewise-linear cumulative count at the grid's edges (one interpolation per row).
    """
    edges, counts = np.atleast_2d(np.asarray(edges, np.float64)), np.atleast_2d(np.asarray(counts, np.float64))
    grid = lo + (hi - lo) / bins * np.arange(bins + 1)
    with np.errstate(invalid="ignore"):
        width = edges[:, 1:] - edges[:, :-1]
        ok = np.isfinite(width) & (width > 0) & (counts > 0) & np.isfinite(counts)
    kept = np.where(ok, counts, 0.0)
    out = np.zeros((edges.shape[0], bins))
    finite = np.isfinite(edges).all(axis=1)
    for i in np.flatnonzero(finite & ok.any(axis=1)):
        cum = np.concatenate([[0.0], np.cumsum(kept[i])])
        out[i] = np.diff(np.interp(grid, edges[i], cum))
    odd = np.flatnonzero(~finite)
    if odd.size:
        out[odd] = _rebin_exact(edges[odd], counts[odd], grid)
    return out


def heatmap(layers: list[dict], bins: int = COMMON_BINS) -> dict:
    """Every tap's histogram on one common grid (rows: first non-empty column and the counts from there).

    Also each tap's tails (how far its min and max reach beyond its histogram range, in units of
    the range's width) and the widest and narrowest ranges.
    """
    edges = _padded([t["histogram"]["edges"] for t in layers], np.nan)
    counts = _padded([t["histogram"]["counts"] for t in layers], 0.0)
    ends = _array([[t["histogram"]["edges"][0], t["histogram"]["edges"][-1]] for t in layers]).reshape(-1, 2)
    finite = ends[np.isfinite(ends)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    grid = rebin(edges, counts, lo, hi, bins) if hi > lo else np.zeros((len(layers), bins))
    rounded = compact(grid)  # one pass for every row
    nonzero = grid != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    last = np.where(nonzero.any(axis=1), bins - nonzero[:, ::-1].argmax(axis=1), 0)
    rows = [{"start": int(a), "counts": r[a:b]} for r, a, b in zip(rounded, first.tolist(), last.tolist(), strict=True)]
    with np.errstate(invalid="ignore"):
        span = ends[:, 1] - ends[:, 0]
        width = np.where(span != 0, span, 1.0)
        mins = _array([t["stats"].get("min") for t in layers])
        maxs = _array([t["stats"].get("max") for t in layers])
        low = np.maximum(0.0, (ends[:, 0] - mins) / width)
        high = np.maximum(0.0, (maxs - ends[:, 1]) / width)
    tails = [{"low": _num(a), "high": _num(b)} for a, b in zip(low, high, strict=True)]
    sized = np.flatnonzero(np.isfinite(span))
    wide = int(sized[np.argmax(span[sized])]) if sized.size else None
    narrow = int(sized[np.argmin(span[sized])]) if sized.size else None
    return {
        "lo": lo,
        "hi": hi,
        "bins": bins,
        "rows": rows,
        "tails": tails,
        "widest": {"id": layers[wide]["id"], "span": float(span[wide])}
        if wide is not None
        else {"id": None, "span": None},
        "narrowest": {"id": layers[narrow]["id"], "span": float(span[narrow])}
        if narrow is not None
        else {"id": None, "span": None},
    }


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and bool(np.isfinite(x))


def _mean(values: list[float]) -> float | None:
    v = _array(values)
    return _num(v.mean()) if v.size else None


def depth_summary(layers: list[dict]) -> dict:
    """The numbers of the depth chart's caption: block outputs' std first to last, BN outputs' spread, zeros."""
    blocks = [t for t in layers if t["kind"] == "block"]
    bns = [t for t in layers if t["kind"] == "bn"]
    out: dict[str, Any] = {"first_block": None, "last_block": None, "std_ratio": None}
    if blocks:
        first, last = blocks[0], blocks[-1]
        out["first_block"] = {"id": first["id"], "std": first["stats"]["std"]}
        out["last_block"] = {"id": last["id"], "std": last["stats"]["std"]}
        s0, s1 = first["stats"]["std"], last["stats"]["std"]
        if _finite(s0) and _finite(s1):
            out["std_ratio"] = s1 / s0 if s0 else None
    stds = [t["stats"]["std"] for t in bns]
    out["bn_std_min"] = _num(np.nanmin(_array(stds))) if stds and any(_finite(s) for s in stds) else None
    out["bn_std_max"] = _num(np.nanmax(_array(stds))) if stds and any(_finite(s) for s in stds) else None
    out["bn_abs_mean"] = _mean([abs(t["stats"]["mean"]) if _finite(t["stats"]["mean"]) else None for t in bns])
    out["block_zero_fraction"] = _mean([t["stats"]["zero_fraction"] for t in blocks]) if blocks else 0.0
    return out


def median(values: Sequence[float | None]) -> float | None:
    """Median of the finite values (None when there are none)."""
    v = _array(values)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def ratio_summary(blocks: list[dict]) -> dict:
    """‖F(x)‖ / ‖x‖ over the blocks: median, how many above 1, the smallest and the largest."""
    rows = [(b["id"], b["ratio"]) for b in blocks if _finite(b.get("ratio"))]
    if not rows:
        return {"median": None, "above_one": 0, "count": 0, "smallest": None, "largest": None}
    lo = min(rows, key=lambda r: r[1])
    hi = max(rows, key=lambda r: r[1])
    return {
        "median": median([r for _, r in rows]),
        "above_one": sum(1 for _, r in rows if r > 1),
        "count": len(rows),
        "smallest": {"id": lo[0], "ratio": lo[1]},
        "largest": {"id": hi[0], "ratio": hi[1]},
    }


def annotate(doc: dict) -> dict:
    """An analysis answer (summary or whole) with the statistics its charts show; ``doc`` is left as it is."""
    out = {**doc}
    layers, blocks = doc.get("layers") or [], doc.get("blocks") or []
    stats: dict[str, Any] = {"ratios": ratio_summary(blocks)}
    if layers:
        stats["heatmap"] = heatmap(layers)
        stats["depth"] = depth_summary(layers)
    out["chart_stats"] = stats
    if blocks and "sample" in blocks[0]:
        out["blocks"] = [
            {
                **b,
                "fit": fit(b["sample"]["x"], b["sample"]["f"]),
                "residual_moments": hist_moments(b["residual_histogram"]),
            }
            for b in blocks
        ]
    if doc.get("batchnorm"):
        out["batchnorm"] = [
            {
                **b,
                "before": {**b["before"], "moments": hist_moments(b["before"]["histogram"])},
                "after": {**b["after"], "moments": hist_moments(b["after"]["histogram"])},
            }
            for b in doc["batchnorm"]
        ]
    return out


def channel_summary(values: list[list[float]]) -> dict:
    """Mean and fraction of exact zeros of one feature-map channel."""
    v = _array([x for row in values for x in row])
    return {"mean": _num(v.mean()) if v.size else None, "zero_fraction": float(np.mean(v == 0)) if v.size else None}


def gradient_spread(blocks: list[dict]) -> float | None:
    """Gradient norm at the first block's input divided by the norm at the last one's (None if undefined)."""
    if not blocks:
        return None
    first, last = blocks[0]["grad_norm_in"], blocks[-1]["grad_norm_in"]
    return first / last if _finite(first) and _finite(last) and last > 0 else None


def moving_average(values: Sequence[float | None], window: int = 25) -> list[float | None]:
    """Mean of the finite values among the last ``window`` (None where the window holds none)."""
    v = _array(values)
    ok = np.isfinite(v)
    sums = np.cumsum(np.where(ok, v, 0.0))
    counts = np.cumsum(ok)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    return [float(x) if c else None for x, c in zip(out, counts, strict=True)]


def finite_mean(values: Sequence[float | None]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    v = _array(values)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
