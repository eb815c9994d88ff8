"""One analysis: run a graph, then turn what it measured into what the charts draw.

Two routes give the same numbers. The stats graph (default) reduces every tap inside ONNX
Runtime (per-channel sums, sums of squares, min, max, zero counts, strided samples), so only
small arrays cross into Python. The tap graph returns every tap in full and numpy reduces them;
it serves ``feature_maps=all`` and full-resolution channels. Either way the per-tap reports
(``app.runtime.reports``) derive BN outputs from their inputs (y = scale * x + shift per channel)
rather than measuring them twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.paths import STATS_GRAPH_MAX_TAPS
from app.runtime.featuremaps import thumbnails
from app.runtime.labels import class_names
from app.runtime.registry import LoadedModel, ModelRegistry
from app.runtime.reports import POOL, stats_reports, tap_reports
from app.runtime.stats import PAIR_SAMPLE, batch_sample, compact, finish_channels, merge_rows, nonfinite_note


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
    n = int(images.shape[0])
    layers = _layer_rows(man, measured.reports, n)
    blocks = _block_rows(man, measured.reports, gates)
    notes = _overflow_notes(layers, measured.logits, n)
    t_end = time.perf_counter()
    doc = {
        "sections": "summary",
        "model": _model_info(model),
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


def _layer_rows(man: dict, reports: dict[str, dict], n: int) -> list[dict]:
    """Every tap's row of the summary: id, kind, shape (batch of ``n``), statistics and histogram."""
    return [
        {
            "id": t["id"],
            "kind": t["kind"],
            "shape": [n, *t["shape"]],
            "stats": reports[t["id"]]["stats"],
            "histogram": reports[t["id"]]["histogram"],
        }
        for t in man["taps"]
    ]


def _block_rows(man: dict, reports: dict[str, dict], gates: np.ndarray) -> list[dict]:
    """Every block's row of the summary: its gate and the norms of x, S(x), F(x) and H(x)."""
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
    return blocks


def _overflow_notes(layers: list[dict], logits: np.ndarray, n: int) -> list[str]:
    """Notes naming the layers and images whose statistics or logits are not finite."""
    overflow = "the activations overflowed float32, as in a deep network without shortcuts or normalisation"
    keys = ("mean", "std", "min", "max", "l2")
    stats_rows = [[t["stats"][k] for k in keys] for t in layers]
    notes = nonfinite_note("layers", [t["id"] for t in layers], stats_rows, overflow)
    notes += nonfinite_note("images' logits", [f"image {i + 1}" for i in range(n)], logits, overflow)
    return notes


def _model_info(model: LoadedModel) -> dict:
    """The answer's ``model`` section: name, weights, family, depth, size and classes."""
    man = model.manifest
    return {
        "name": model.name,
        "weights": model.variant,
        "family": man["family"],
        "depth": man["depth"],
        "params": man["params"],
        "macs": man["macs"],
        "classes": man["classes"],
    }


def complete(
    model: LoadedModel, doc: dict, measured: Measured, gates: np.ndarray, bn: str, feature_maps: str, k: int
) -> dict:
    """The whole analysis: ``doc`` (from ``summarize``) with per-channel statistics, BN, samples and feature maps."""
    t0 = time.perf_counter()
    man = model.manifest
    reports = measured.reports
    fmap_ids = _feature_map_taps(man, feature_maps)
    # PNG encoding releases the GIL: let the pool draw thumbnails while this thread assembles.
    fmap_jobs = [POOL.submit(thumbnails, measured.tensors[tid], reports[tid]["_channel_mean"], k) for tid in fmap_ids]
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
