"""One analysis: run a graph, then turn what it measured into what the charts draw.

Two routes give the same numbers. The stats graph (default) reduces every tap inside ONNX
Runtime (per-channel sums, sums of squares, min, max, zero counts, strided samples), so only
small arrays cross into Python. The tap graph returns every tap in full and numpy reduces them;
it serves ``feature_maps=all`` and full-resolution channels. Either way BN outputs are derived
from their inputs (y = scale * x + shift per channel) rather than measured twice.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app.paths import STATS_GRAPH_MAX_TAPS
from app.runtime.featuremaps import thumbnails
from app.runtime.labels import class_names
from app.runtime.registry import LoadedModel, ModelRegistry
from app.runtime.stats import (
    PAIR_SAMPLE,
    affine_moments,
    batch_sample,
    compact,
    finish_channels,
    finish_histograms,
    merge_rows,
    nonfinite_note,
    tensor_report,
)

_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="stats")


@dataclass
class Measured:
    """What one forward pass measured: logits, a report per tap, block samples, full tensors."""

    logits: np.ndarray
    reports: dict[str, dict]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # block id -> (x, F(x)) at the same positions
    tensors: dict[str, np.ndarray]  # taps available in full (for feature-map thumbnails)
    seconds: float = 0.0  # graph run and per-tap reports


def _run(registry: ModelRegistry, model: LoadedModel, kind: str, images: np.ndarray, gates: np.ndarray) -> dict:
    sess = registry.session(model, kind)
    outs = sess.run(None, {"image": images, "gates": gates})
    return dict(zip((o.name for o in sess.get_outputs()), outs, strict=True))


def run_taps(registry: ModelRegistry, model: LoadedModel, images: np.ndarray, gates: np.ndarray, bn: str) -> dict:
    """Logits and every tap (module path -> array) for a batch of preprocessed images."""
    return _run(registry, model, bn, images, gates)


def run_stats(registry: ModelRegistry, model: LoadedModel, images: np.ndarray, gates: np.ndarray, bn: str) -> dict:
    """Outputs of the stats graph (``<tap>:sum``, ``<tap>:sample``, ...) for a batch of images."""
    return _run(registry, model, f"stats-{bn}", images, gates)


def measure(
    registry: ModelRegistry, model: LoadedModel, images: np.ndarray, gates: np.ndarray, bn: str, full: bool = False
) -> Measured:
    """Run the stats graph (or, with ``full`` or for very deep models, the tap graph) and report on every tap."""
    t0 = time.perf_counter()
    man = model.manifest
    if full or len(man["taps"]) > STATS_GRAPH_MAX_TAPS:
        taps = run_taps(registry, model, images, gates, bn)
        pairs = {
            b["id"]: (batch_sample(taps[b["shortcut"]], PAIR_SAMPLE), batch_sample(taps[b["residual"]], PAIR_SAMPLE))
            for b in man["blocks"]
        }
        return Measured(taps["logits"], tap_reports(taps, model, bn), pairs, taps, time.perf_counter() - t0)
    outs = run_stats(registry, model, images, gates, bn)
    pairs = {
        b["id"]: (merge_rows(outs[f"{b['id']}:pair_x"]), merge_rows(outs[f"{b['id']}:pair_f"])) for b in man["blocks"]
    }
    tensors = {t["id"]: outs[t["id"]] for t in man["taps"] if t["id"] in outs}
    reports = stats_reports(outs, model, bn, images.shape[0])
    return Measured(outs["logits"], reports, pairs, tensors, time.perf_counter() - t0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def prediction(logits: np.ndarray, manifest: dict, k: int = 5) -> list[dict]:
    """Top-k classes and probabilities for each image."""
    probs = softmax(logits)
    names = class_names(manifest)
    out = []
    for p in probs:
        idx = np.argsort(-p, kind="stable")[:k]
        out.append(
            {
                "top": [
                    {"index": int(i), "label": names[i] if names else str(int(i)), "probability": float(p[i])}
                    for i in idx
                ]
            }
        )
    return out


def analyze(
    registry: ModelRegistry,
    model: LoadedModel,
    images: np.ndarray,
    gates: np.ndarray,
    bn: str,
    feature_maps: str = "blocks",
    k: int = 8,
) -> dict:
    """The full analysis JSON for a batch of preprocessed images (N, 3, H, W)."""
    doc, measured = summarize(registry, model, images, gates, bn, full=feature_maps == "all")
    return complete(model, doc, measured, gates, bn, feature_maps, k)


def summarize(
    registry: ModelRegistry, model: LoadedModel, images: np.ndarray, gates: np.ndarray, bn: str, full: bool = False
) -> tuple[dict, Measured]:
    """The first answer: prediction, every layer's statistics and histogram, every block's norms.

    That is what the Explore page's default view draws. ``complete`` adds the rest (per-channel
    statistics, batch norm, residual samples, feature maps) from the same measurement.
    """
    t0 = time.perf_counter()
    man = model.manifest
    measured = measure(registry, model, images, gates, bn, full=full)
    reports = measured.reports
    n = int(images.shape[0])
    layers = [
        {
            "id": t["id"],
            "kind": t["kind"],
            "shape": [n, *t["shape"]],
            "stats": reports[t["id"]]["stats"],
            "histogram": reports[t["id"]]["histogram"],
        }
        for t in man["taps"]
    ]
    blocks = []
    for i, b in enumerate(man["blocks"]):
        nx = reports[b["input"]]["stats"]["l2"]
        blocks.append(
            {
                "id": b["id"],
                "stage": b["stage"],
                "index": b["index"],
                "gate": float(gates[i]),
                "shortcut_kind": b["shortcut_kind"],
                "norm_x": nx,
                "norm_shortcut": reports[b["shortcut"]]["stats"]["l2"],
                "norm_f": reports[b["residual"]]["stats"]["l2"],
                "norm_h": reports[b["output"]]["stats"]["l2"],
                "ratio": reports[b["residual"]]["stats"]["l2"] / nx if nx > 0 else None,
            }
        )
    overflow = "the activations overflowed float32, as in a deep network without shortcuts or normalisation"
    keys = ("mean", "std", "min", "max", "l2")
    stats_rows = [[t["stats"][k] for k in keys] for t in layers]
    notes = nonfinite_note("layers", [t["id"] for t in layers], stats_rows, overflow)
    notes += nonfinite_note("images' logits", [f"image {i + 1}" for i in range(n)], measured.logits, overflow)
    t_end = time.perf_counter()
    doc = {
        "sections": "summary",
        "model": {
            "name": model.name,
            "weights": model.variant,
            "family": man["family"],
            "depth": man["depth"],
            "params": man["params"],
            "macs": man["macs"],
            "classes": man["classes"],
        },
        "input": {"shape": list(images.shape), "preprocessing": man["preprocessing"]},
        "gates": gates.tolist(),
        "bn": bn,
        "bn_untrained": _bn_untrained(model),
        "prediction": prediction(measured.logits, man),
        "layers": layers,
        "blocks": blocks,
        "notes": notes,
        "timings_ms": {"measure": 1e3 * (measured.seconds), "summary": 1e3 * (t_end - t0), "total": 1e3 * (t_end - t0)},
    }
    return doc, measured


def complete(
    model: LoadedModel, doc: dict, measured: Measured, gates: np.ndarray, bn: str, feature_maps: str, k: int
) -> dict:
    """The whole analysis: ``doc`` (from ``summarize``) with per-channel statistics, BN, samples and feature maps."""
    t0 = time.perf_counter()
    man = model.manifest
    reports = measured.reports
    fmap_ids = _feature_map_taps(man, feature_maps)
    # PNG encoding releases the GIL: let the pool draw thumbnails while this thread assembles.
    fmap_jobs = [_POOL.submit(thumbnails, measured.tensors[tid], reports[tid]["_channel_mean"], k) for tid in fmap_ids]
    finish_channels([reports[t["id"]] for t in man["taps"]])
    channels = {t["id"]: {k: reports[t["id"]][k] for k in ("channel_mean", "channel_std")} for t in man["taps"]}
    layers = [{**layer, **channels[layer["id"]]} for layer in doc["layers"]]
    static = _static(model)
    batchnorm = []
    for b in man["batchnorm"]:
        before, after = reports[b["input"]], reports[b["id"]]
        params = static[b["id"]]
        if bn == "batch":
            used = {"used_mean": compact(before["_channel_mean"]), "used_var": compact(before["_channel_var"])}
        else:
            used = {"used_mean": params["running_mean"], "used_var": params["running_var"]}
        batchnorm.append(
            {
                "id": b["id"],
                "input": b["input"],
                "channels": b["channels"],
                "eps": b["eps"],
                "mode": bn,
                **params,
                **used,
                "before": {"stats": before["stats"], "histogram": before["histogram"]},
                "after": {"stats": after["stats"], "histogram": after["histogram"]},
            }
        )
    pairs = [measured.pairs[b["id"]] for b in man["blocks"]]
    rounded = compact(np.concatenate([np.concatenate([xs, fs]) for xs, fs in pairs]) if pairs else np.zeros(0), 4)
    blocks, pos = [], 0
    for row, b, (xs, fs) in zip(doc["blocks"], man["blocks"], pairs, strict=True):
        sample = {"x": rounded[pos : pos + xs.size], "f": rounded[pos + xs.size : pos + xs.size + fs.size]}
        pos += xs.size + fs.size
        blocks.append({**row, "sample": sample, "residual_histogram": reports[b["residual"]]["histogram"]})
    fmaps = {tid: job.result() for tid, job in zip(fmap_ids, fmap_jobs, strict=True)}
    t_end = time.perf_counter()
    summary_ms = doc["timings_ms"]["summary"]
    timings = {**doc["timings_ms"], "assemble": summary_ms + 1e3 * (t_end - t0) - doc["timings_ms"]["measure"]}
    timings["total"] = summary_ms + 1e3 * (t_end - t0)
    return {
        **doc,
        "sections": "all",
        "layers": layers,
        "batchnorm": batchnorm,
        "blocks": blocks,
        "feature_maps": fmaps,
        "timings_ms": timings,
    }


def _bn_untrained(model: LoadedModel) -> bool:
    """Whether every BN layer still has the running statistics of initialisation (mean 0, variance 1)."""
    flag = model.cache.get("bn_untrained")
    if flag is None:
        bns = model.manifest["batchnorm"]
        flag = bool(bns) and all(
            np.all(np.asarray(b["running_mean"]) == 0) and np.all(np.asarray(b["running_var"]) == 1) for b in bns
        )
        model.cache["bn_untrained"] = flag
    return flag


def _static(model: LoadedModel) -> dict[str, dict]:
    """Per-model constants of the answer (BN parameters, rounded once), cached on the model."""
    cached = model.cache.get("bn_static")
    if cached is None:
        keys = ("gamma", "beta", "running_mean", "running_var")
        cached = {b["id"]: {k: compact(b[k]) for k in keys} for b in model.manifest["batchnorm"]}
        model.cache["bn_static"] = cached
    return cached


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
    reports = dict(zip(direct, _POOL.map(lambda i: tensor_report(taps[i]), direct), strict=True))

    def derived(i: str) -> dict:
        b = bn_layers[i]
        before = reports[b["input"]]
        scale, shift, _, _ = bn_affine(params[i], before, bn)
        t = taps[i]
        return tensor_report(t, affine_moments(before["_moments"], scale, shift, t.size - np.count_nonzero(t)))

    bn_ids = [i for i in ids if i in bn_layers]
    reports.update(zip(bn_ids, _POOL.map(derived, bn_ids), strict=True))
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


def _feature_map_taps(manifest: dict, which: str) -> list[str]:
    """Tap ids that get thumbnails: ``blocks`` (stem + block outputs), ``all`` or ``none``."""
    if which == "none":
        return []
    if which == "all":
        return [t["id"] for t in manifest["taps"]]
    return [t["id"] for t in manifest["taps"] if t["kind"] in ("stem", "block")]


def feature_map(taps: dict[str, np.ndarray], tap: str, channel: int, image: int = 0) -> dict:
    """One channel of one tap at full resolution, as values for a heatmap with a colour bar."""
    t = taps[tap]
    a = t[image, channel]
    return {
        "tap": tap,
        "channel": channel,
        "image": image,
        "shape": list(a.shape),
        "values": [compact(row) for row in a],
        "vmin": float(a.min()),
        "vmax": float(a.max()),
    }
