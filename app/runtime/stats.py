"""Statistics of activation tensors in one sweep per tensor: summary, per channel, histogram."""

from __future__ import annotations

import numpy as np

HIST_BINS = 64
HIST_SAMPLE = 4_096  # elements used for a histogram; smaller tensors use every element
PAIR_SAMPLE = 2_000  # (x, F(x)) pairs per block for the residual scatter plot
CLIP_QUANTILES = (0.001, 0.999)  # histogram range: values beyond go to underflow / overflow


def nonfinite_note(what: str, names: list[str], values: np.ndarray, why: str) -> list[str]:
    """A note naming which of ``names`` (one row of ``values`` each) hold NaN or infinity; [] if none do."""
    v = np.asarray(values, dtype=np.float64).reshape(len(names), -1) if names else np.zeros((0, 1))
    bad = [n for n, row in zip(names, ~np.isfinite(v).all(axis=1), strict=True) if row]
    if not bad:
        return []
    shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
    return [f"Not finite in {len(bad)} of {len(names)} {what} ({shown}): {why}. Those numbers are sent as null."]


def compact(values: np.ndarray | list[float], digits: int = 6) -> list[float]:
    """Values rounded to ``digits`` significant digits, so the JSON stays short (0, NaN and inf kept)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(v))))
        out = np.round(v * scale) / scale  # NaN where v is 0 or not finite (and for denormals): keep v there
    return np.where(np.isfinite(out), out, v).tolist()


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


def sample_rows(t: np.ndarray, limit: int = HIST_SAMPLE) -> np.ndarray:
    """Per image of a batch (N, ...): every ceil(size / limit)-th element, as rows (N, <= limit)."""
    rows = t.reshape(t.shape[0], -1)
    return rows[:, :: -(-rows.shape[1] // limit)]


def merge_rows(rows: np.ndarray) -> np.ndarray:
    """One bounded sample from per-image rows (N, S): all of them for one image, every N-th else."""
    return rows.reshape(-1)[:: rows.shape[0]]


def batch_sample(t: np.ndarray, limit: int = HIST_SAMPLE) -> np.ndarray:
    """The sample of a batch tensor that the stats graph takes in-graph (= ``sample`` for one image)."""
    return merge_rows(sample_rows(t, limit))


def _bin_rows(rows: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (G, n) samples: robust range (nearest-rank quantiles), counts inside it, under- and overflow.

    The samples are float32 (what the graphs return); the binning stays in float32, a few passes in all.
    """
    rows = np.asarray(rows, np.float32)
    g, n = rows.shape
    if n:
        k = [int(round(q * (n - 1))) for q in CLIP_QUANTILES]
        ranked = np.sort(rows, axis=1)  # SIMD-sorted: several times faster than a partition at two ranks
        lo, hi = ranked[:, k[0]].astype(np.float64), ranked[:, k[1]].astype(np.float64)
    else:
        lo = hi = np.zeros(g)
    flat = ~(hi > lo)  # a constant sample: one bin holds everything
    lo = np.where(flat, lo - 0.5, lo)
    hi = np.where(flat, lo + 1.0, hi)
    lo32, hi32 = lo.astype(np.float32)[:, None], hi.astype(np.float32)[:, None]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # an infinite range: all in one bin
        t = rows - lo32
        t *= (bins / (hi - lo)).astype(np.float32)[:, None]
        idx = t.astype(np.int32)
    np.clip(idx, 0, bins - 1, out=idx)  # hi itself: the last bin
    idx += (np.arange(g, dtype=np.int32) * bins)[:, None]
    below, above = rows < lo32, rows > hi32
    inside = (rows >= lo32) & ~above  # NaN is in none of the three
    counts = np.bincount(idx[inside], minlength=g * bins).reshape(g, bins)
    return lo, hi, counts, below.sum(axis=1), above.sum(axis=1)


def histograms(samples: list[np.ndarray], bins: int = HIST_BINS) -> list[dict]:
    """A histogram of each sample over its robust range, with explicit underflow and overflow counts.

    Samples of equal length are binned together, one numpy pass for the group.
    """
    if not samples:
        return []
    flat = [np.asarray(v).reshape(-1) for v in samples]
    groups: dict[int, list[int]] = {}
    for i, v in enumerate(flat):
        groups.setdefault(v.size, []).append(i)
    ranges = np.zeros((len(flat), 2))
    counts = np.zeros((len(flat), bins), np.int64)
    under = np.zeros(len(flat), np.int64)
    over = np.zeros(len(flat), np.int64)
    for idx in groups.values():
        lo, hi, c, u, o = _bin_rows(np.stack([flat[i] for i in idx]), bins)
        ranges[idx, 0], ranges[idx, 1], counts[idx], under[idx], over[idx] = lo, hi, c, u, o
    steps = np.linspace(0.0, 1.0, bins + 1)[None, :]
    with np.errstate(invalid="ignore", over="ignore"):  # an infinite range gives edges that are not finite (null)
        edges = compact(ranges[:, :1] + (ranges[:, 1:] - ranges[:, :1]) * steps)  # rounded in one pass
    return [
        {"edges": e, "counts": c, "underflow": u, "overflow": o, "sampled": v.size}
        for e, c, u, o, v in zip(edges, counts.tolist(), under.tolist(), over.tolist(), flat, strict=True)
    ]


def histogram(values: np.ndarray, bins: int = HIST_BINS) -> dict:
    """Histogram over a robust range (quantiles), with explicit underflow and overflow counts."""
    return histograms([values], bins)[0]


def affine_moments(m: dict[str, np.ndarray], scale: np.ndarray, shift: np.ndarray, zeros: int) -> dict:
    """Channel moments of ``y = scale * x + shift`` (per channel) from those of x; ``zeros`` counted on y.

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
        "zeros": zeros,
    }


def report(moments: dict[str, np.ndarray], values: np.ndarray) -> dict:
    """Stats and per-channel mean/std of one tap from its channel moments; ``values`` is its sample.

    ``histogram`` is filled in by ``finish_histograms``, ``channel_mean`` and ``channel_std`` by
    ``finish_channels``, each for all taps at once.
    """
    stats, ch_mean, ch_std = summarize(moments)
    return {
        "stats": stats,
        "channel_mean": None,
        "channel_std": None,
        "histogram": None,
        "_moments": moments,
        "_channel_mean": ch_mean,
        "_channel_var": ch_std**2,
        "_channel_std": ch_std,
        "_sample": values,
    }


def tensor_report(t: np.ndarray, moments: dict[str, np.ndarray] | None = None) -> dict:
    """Stats, per-channel mean/std and a histogram of one tap (N, C, H, W) or (N, C)."""
    if t.ndim == 2:
        t = t[:, :, None, None]
    return report(moments if moments is not None else channel_moments(t), batch_sample(t))


def finish_histograms(reports: list[dict]) -> None:
    """Fill every report's ``histogram``."""
    for r, h in zip(reports, histograms([r["_sample"] for r in reports]), strict=True):
        r["histogram"] = h


def finish_channels(reports: list[dict]) -> None:
    """Fill every report's rounded ``channel_mean`` and ``channel_std`` (once: later calls change nothing)."""
    reports = [r for r in reports if r["channel_mean"] is None]
    if not reports:
        return
    sizes = [r["_channel_mean"].size for r in reports]
    flat = compact(np.concatenate([np.concatenate([r["_channel_mean"], r["_channel_std"]]) for r in reports]))
    pos = 0
    for r, n in zip(reports, sizes, strict=True):
        r["channel_mean"], r["channel_std"] = flat[pos : pos + n], flat[pos + n : pos + 2 * n]
        pos += 2 * n
