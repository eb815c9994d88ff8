"""Statistics of activation tensors in one sweep per tensor: summary, per channel, histogram."""

from __future__ import annotations

import numpy as np

HIST_BINS = 64
HIST_SAMPLE = 4_096  # elements used for a histogram; smaller tensors use every element
CLIP_QUANTILES = (0.001, 0.999)  # histogram range: values beyond go to underflow / overflow


def compact(values: np.ndarray | list[float], digits: int = 6) -> list[float]:
    """Values rounded to ``digits`` significant digits, so the JSON stays short."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v) & (v != 0)
    out = v.copy()
    mag = np.floor(np.log10(np.abs(v[finite])))
    scale = 10.0 ** (digits - 1 - mag)
    out[finite] = np.round(v[finite] * scale) / scale
    return out.tolist()


def channel_moments(t: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel count, sum, sum of squares, min, max and zero count of an (N, C, H, W) tensor."""
    n, c = t.shape[0], t.shape[1]
    a = t.reshape(c, -1) if n == 1 else np.moveaxis(t, 1, 0).reshape(c, -1)  # (C, N*H*W)
    return {
        "count": np.full(c, a.shape[1], np.int64),
        "sum": a.sum(axis=1, dtype=np.float64) if a.shape[1] < 64 else a.sum(axis=1).astype(np.float64),
        "sumsq": np.einsum("ij,ij->i", a, a).astype(np.float64),
        "min": a.min(axis=1),
        "max": a.max(axis=1),
        "zeros": a.size - np.count_nonzero(a),  # whole tensor: numpy's fast path (no axis)
    }


def summarize(m: dict[str, np.ndarray]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Whole-tensor stats plus per-channel mean and population std from channel moments."""
    count = m["count"].astype(np.float64)
    ch_mean = m["sum"] / count
    ch_var = np.maximum(m["sumsq"] / count - ch_mean**2, 0.0)
    total = float(count.sum())
    mean = float(m["sum"].sum() / total)
    sumsq = float(m["sumsq"].sum())
    var = max(sumsq / total - mean**2, 0.0)
    stats = {
        "mean": mean,
        "std": var**0.5,
        "min": float(m["min"].min()),
        "max": float(m["max"].max()),
        "zero_fraction": float(np.sum(m["zeros"]) / total),
        "l2": sumsq**0.5,
    }
    return stats, ch_mean, np.sqrt(ch_var)


def sample(t: np.ndarray, limit: int = HIST_SAMPLE) -> np.ndarray:
    """A deterministic, evenly strided sample of at most ``limit`` elements (all when smaller)."""
    flat = t.reshape(-1)
    if flat.size <= limit:
        return flat
    step = -(-flat.size // limit)  # ceil
    return flat[::step]


def histogram(values: np.ndarray, lo: float | None = None, hi: float | None = None, bins: int = HIST_BINS) -> dict:
    """Histogram over a robust range (quantiles), with explicit underflow and overflow counts."""
    v = np.asarray(values)
    n = v.size
    if lo is None or hi is None:
        if n:
            k = [int(round(q * (n - 1))) for q in CLIP_QUANTILES]  # nearest-rank quantiles
            part = np.partition(v, k)
            lo, hi = float(part[k[0]]), float(part[k[1]])
        else:
            lo = hi = 0.0
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5  # a constant tensor: one bin holds everything
    edges = np.linspace(lo, hi, bins + 1)
    under = int(np.count_nonzero(v < lo))
    over = int(np.count_nonzero(v > hi))
    inside = v[(v >= lo) & (v <= hi)].astype(np.float64)
    idx = np.minimum(((inside - lo) * (bins / (hi - lo))).astype(np.int64), bins - 1)  # hi falls in the last bin
    counts = np.bincount(idx, minlength=bins)
    return {
        "edges": compact(edges),
        "counts": counts.tolist(),
        "underflow": under,
        "overflow": over,
        "sampled": int(n),
    }


def affine_moments(m: dict[str, np.ndarray], scale: np.ndarray, shift: np.ndarray, t: np.ndarray) -> dict:
    """Channel moments of ``y = scale * x + shift`` (per channel) from those of x; zeros counted on ``t`` = y.

    A BN layer is exactly such a map, so its output needs one counting pass instead of five.
    """
    count = m["count"].astype(np.float64)
    mean_x = m["sum"] / count
    var_x = np.maximum(m["sumsq"] / count - mean_x**2, 0.0)
    mean_y = scale * mean_x + shift
    lo, hi = scale * m["min"] + shift, scale * m["max"] + shift
    return {
        "count": m["count"],
        "sum": mean_y * count,
        "sumsq": (scale**2 * var_x + mean_y**2) * count,
        "min": np.minimum(lo, hi),
        "max": np.maximum(lo, hi),
        "zeros": t.size - np.count_nonzero(t),
    }


def tensor_report(t: np.ndarray, moments: dict[str, np.ndarray] | None = None) -> dict:
    """Stats, per-channel mean/std and a histogram of one tap (N, C, H, W) or (N, C).

    ``channel_mean``/``channel_std`` are filled in by ``round_channel_stats`` for all taps at once.
    """
    if t.ndim == 2:
        t = t[:, :, None, None]
    m = moments if moments is not None else channel_moments(t)
    stats, ch_mean, ch_std = summarize(m)
    return {
        "stats": stats,
        "channel_mean": None,
        "channel_std": None,
        "histogram": histogram(sample(t)),
        "_moments": m,
        "_channel_mean": ch_mean,
        "_channel_var": ch_std**2,
        "_channel_std": ch_std,
    }


def round_channel_stats(reports: list[dict]) -> None:
    """Fill every report's rounded ``channel_mean`` and ``channel_std`` in one vectorised pass."""
    if not reports:
        return
    sizes = [r["_channel_mean"].size for r in reports]
    flat = compact(np.concatenate([np.concatenate([r["_channel_mean"], r["_channel_std"]]) for r in reports]))
    pos = 0
    for r, n in zip(reports, sizes, strict=True):
        r["channel_mean"], r["channel_std"] = flat[pos : pos + n], flat[pos + n : pos + 2 * n]
        pos += 2 * n
