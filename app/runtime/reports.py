"""Per-tap reports: what the charts read about every tap, from the stats graph's reductions or from full taps.

A report holds a tap's whole-tensor statistics and histogram, and (keys starting with ``_``) the
per-channel moments and samples that ``stats.finish_channels`` and ``stats.finish_histograms`` turn
into the answer. BN outputs are derived from their inputs (y = scale * x + shift per channel)
rather than measured twice.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app.runtime.registry import LoadedModel
from app.runtime.stats import affine_moments, finish_histograms, merge_rows, tensor_report

# Worker threads for per-tap work (tap reports here, feature-map thumbnails in ``analysis``).
POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="stats")


def bn_arrays(model: LoadedModel) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per BN layer (gamma, beta, running mean, running variance, eps) as float64 arrays, cached on the model."""
    cached = model.cache.get("bn_arrays")
    if cached is None:
        keys = ("gamma", "beta", "running_mean", "running_var")
        bns = model.manifest["batchnorm"]
        cached = {b["id"]: (*(np.asarray(b[k], np.float64) for k in keys), float(b["eps"])) for b in bns}
        model.cache["bn_arrays"] = cached
    return cached


def bn_affine(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], before: dict, bn: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (scale, shift, mean used, var used) of one BN layer: y = scale * x + shift."""
    gamma, beta, running_mean, running_var, eps = params
    if bn == "batch":
        mean, var = before["_channel_mean"], before["_channel_var"]
    else:
        mean, var = running_mean, running_var
    with np.errstate(invalid="ignore", over="ignore"):  # overflowed statistics stay NaN/inf: reported, not raised
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - scale * mean, mean, var


def tap_reports(taps: dict[str, np.ndarray], model: LoadedModel, bn: str) -> dict[str, dict]:
    """Statistics of every tap: full passes for most, derived from their input for BN outputs."""
    manifest, params = model.manifest, bn_arrays(model)
    bn_layers = {b["id"]: b for b in manifest["batchnorm"]}
    ids = [t["id"] for t in manifest["taps"]]
    direct = [i for i in ids if i not in bn_layers]
    reports = dict(zip(direct, POOL.map(lambda i: tensor_report(taps[i]), direct), strict=True))

    def derived(i: str) -> dict:
        b = bn_layers[i]
        before = reports[b["input"]]
        scale, shift, _, _ = bn_affine(params[i], before, bn)
        t = taps[i]
        return tensor_report(t, affine_moments(before["_moments"], scale, shift, t.size - np.count_nonzero(t)))

    bn_ids = [i for i in ids if i in bn_layers]
    reports.update(zip(bn_ids, POOL.map(derived, bn_ids), strict=True))
    finish_histograms(list(reports.values()))
    return reports


@dataclass
class _StatsPlan:
    """Where each tap's channels sit in the concatenated outputs of the stats graph (per model, made once)."""

    direct: list[str]  # measured taps, in manifest order
    bns: list[str]  # BN outputs, derived from their inputs
    offsets: np.ndarray  # start of each direct tap's channels
    channels: np.ndarray  # channels of each direct tap
    per_image: np.ndarray  # elements per channel per image, for every direct channel
    bn_offsets: np.ndarray
    bn_channels: np.ndarray
    bn_input: np.ndarray  # for every BN channel, its input channel's index among the direct ones
    bn_params: tuple[np.ndarray, ...]  # gamma, beta, running mean, running var, eps: per BN channel


def _stats_plan(model: LoadedModel) -> _StatsPlan:
    plan = model.cache.get("stats_plan")
    if plan is None:
        man, params = model.manifest, bn_arrays(model)
        bn_in = {b["id"]: b["input"] for b in man["batchnorm"]}
        taps = {t["id"]: t for t in man["taps"]}
        direct = [t["id"] for t in man["taps"] if t["id"] not in bn_in]
        bns = [t["id"] for t in man["taps"] if t["id"] in bn_in]
        channels = np.array([taps[i]["shape"][0] for i in direct], np.int64)
        offsets = np.concatenate([[0], np.cumsum(channels)[:-1]]).astype(np.int64)
        start = dict(zip(direct, offsets.tolist(), strict=True))
        per_image = np.repeat([int(np.prod(taps[i]["shape"][1:])) for i in direct], channels)
        bn_channels = np.array([taps[i]["shape"][0] for i in bns], np.int64)
        bn_offsets = np.concatenate([[0], np.cumsum(bn_channels)[:-1]]).astype(np.int64)
        bn_input = np.concatenate([start[bn_in[i]] + np.arange(c) for i, c in zip(bns, bn_channels, strict=True)])
        cat = [np.concatenate([params[i][k] for i in bns]) for k in range(4)]
        eps = np.concatenate([np.full(c, params[i][4]) for i, c in zip(bns, bn_channels, strict=True)])
        plan = _StatsPlan(
            direct, bns, offsets, channels, per_image, bn_offsets, bn_channels, bn_input.astype(np.int64), (*cat, eps)
        )
        model.cache["stats_plan"] = plan
    return plan


def _totals(
    ids: list[str], offsets: np.ndarray, count: np.ndarray, m: dict[str, np.ndarray], zeros: np.ndarray
) -> dict[str, dict]:
    """Whole-tensor statistics of every tap from its channels' moments (one reduceat per quantity)."""
    total = np.add.reduceat(count, offsets).astype(np.float64)
    tsum, tsq = np.add.reduceat(m["sum"], offsets), np.add.reduceat(m["sumsq"], offsets)
    mean = tsum / total
    cols = {
        "mean": mean,
        "std": np.sqrt(np.maximum(tsq / total - mean**2, 0.0)),
        "min": np.minimum.reduceat(m["min"], offsets).astype(np.float64),
        "max": np.maximum.reduceat(m["max"], offsets).astype(np.float64),
        "zero_fraction": zeros / total,
        "l2": np.sqrt(tsq),
    }
    rows = zip(*(v.tolist() for v in cols.values()), strict=True)
    return {i: dict(zip(cols, row, strict=True)) for i, row in zip(ids, rows, strict=True)}


def _reports(ids: list[str], offsets: np.ndarray, widths: np.ndarray, m: dict, zeros: np.ndarray, outs: dict) -> dict:
    """One report per tap (views into the concatenated channel arrays), as ``stats.report`` makes them."""
    count = m["count"]
    mean = m["sum"] / count
    var = np.maximum(m["sumsq"] / count - mean**2, 0.0)
    std = np.sqrt(var)
    stats = _totals(ids, offsets, count, m, zeros)
    out = {}
    for i, a, w, z in zip(ids, offsets.tolist(), widths.tolist(), zeros.tolist(), strict=True):
        seg = slice(a, a + w)
        out[i] = {
            "stats": stats[i],
            "channel_mean": None,
            "channel_std": None,
            "histogram": None,
            "_moments": {**{k: v[seg] for k, v in m.items()}, "zeros": int(z)},
            "_channel_mean": mean[seg],
            "_channel_var": var[seg],
            "_channel_std": std[seg],
            "_sample": merge_rows(outs[f"{i}:sample"]),
        }
    return out


def stats_reports(outs: dict[str, np.ndarray], model: LoadedModel, bn: str, n: int) -> dict[str, dict]:
    """Reports of every tap from the stats graph's per-image reductions of a batch of ``n`` images.

    Vectorised over taps: the per-channel outputs are concatenated once, BN outputs derived from
    their inputs' channels in one affine pass, whole-tensor totals taken with ``reduceat``.
    """
    p = _stats_plan(model)

    def cat(what: str) -> np.ndarray:
        return np.concatenate([outs[f"{i}:{what}"] for i in p.direct], axis=1)  # (n, channels)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # overflowed taps: NaN/inf, reported
        m = {
            "count": p.per_image * n,
            "sum": cat("sum").sum(axis=0, dtype=np.float64),
            "sumsq": cat("sumsq").sum(axis=0, dtype=np.float64),
            "min": cat("min").min(axis=0),
            "max": cat("max").max(axis=0),
        }
        zeros = np.stack([outs[f"{i}:zeros"] for i in p.direct]).sum(axis=1, dtype=np.float64)
        reports = _reports(p.direct, p.offsets, p.channels, m, zeros, outs)
        if p.bns:
            gamma, beta, running_mean, running_var, eps = p.bn_params
            cnt = m["count"][p.bn_input].astype(np.float64)
            mean_x = m["sum"][p.bn_input] / cnt
            var_x = np.maximum(m["sumsq"][p.bn_input] / cnt - mean_x**2, 0.0)
            mu, var = (mean_x, var_x) if bn == "batch" else (running_mean, running_var)
            scale = gamma / np.sqrt(var + eps)
            shift = beta - scale * mu
            mean_y = scale * mean_x + shift
            lo, hi = scale * m["min"][p.bn_input] + shift, scale * m["max"][p.bn_input] + shift
            bm = {
                "count": m["count"][p.bn_input],
                "sum": mean_y * cnt,
                "sumsq": (scale**2 * var_x + mean_y**2) * cnt,
                "min": np.minimum(lo, hi),
                "max": np.maximum(lo, hi),
            }
            bz = np.stack([outs[f"{i}:zeros"] for i in p.bns]).sum(axis=1, dtype=np.float64)
            reports.update(_reports(p.bns, p.bn_offsets, p.bn_channels, bm, bz, outs))
    reports = {t["id"]: reports[t["id"]] for t in model.manifest["taps"]}
    finish_histograms(list(reports.values()))
    return reports
