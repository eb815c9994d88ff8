"""Class activation maps and saliency maps from the explain graphs (numpy and ONNX Runtime only).

The explain graph (``explain-<bn>``, built by ``app.nets.explain``) returns, for the class score
S = sum_n logits[n, target_n] (before the softmax), one method's CAM at every layer, at the layer's own
resolution (``cam:<layer>:<method>``, ``app.specs.cam_output``), and dS/d(image) (``grad_image``). Its int64
input ``depth`` says how deep the backward has to go (``depth_of``): a CAM at the last block costs about the
forward pass, the image gradient the whole backward; its int64 input ``method`` says which CAM to compute
(the index in ``CAM_METHODS``, or ``NO_CAM``): the other methods' outputs come back empty.

Methods: the CAMs read one run; ``saliency`` is max_c |dS/dx| (Simonyan et al. 2014); ``smoothgrad``
the mean saliency of ``samples`` noisy copies (Smilkov et al. 2017); ``ig`` integrated gradients
(Sundararajan et al. 2017) from the black image, by the midpoint rule in ``steps`` steps. SmoothGrad's
copies and IG's path points go through the graph as one batch.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

from app.runtime.analysis import softmax
from app.runtime.featuremaps import LUT
from app.runtime.labels import class_names
from app.runtime.registry import LoadedModel, ModelRegistry
from app.runtime.stats import compact, nonfinite_note
from app.specs import CAM_METHODS, INPUT_METHODS, NO_CAM, cam_output

METHODS = CAM_METHODS + INPUT_METHODS
SAMPLES = (1, 64, 16)  # SmoothGrad's noisy copies: least, most, default
STEPS = (1, 128, 32)  # integrated gradients' steps: least, most, default
SIGMA_FRACTION = 0.15  # SmoothGrad's noise level: this fraction of the preprocessed input's range (max - min)
NOISE_SEED = 0  # SmoothGrad's noise comes from numpy's Generator with this seed: the same answer every time
# Bytes of forward activations one batched run may hold (the tape the backward needs; ~100 MiB per image for
# ResNet-50 at 224). With running statistics the rows are independent and go in runs of at most that many;
# with batch statistics they must be one batch, so a request for more copies or steps than fit is refused.
BATCH_BYTES = 4 * 2**30
OVERLAY_ALPHA = 0.5  # weight of the coloured map over the input image
ALL = "all"
INPUT_LAYER = "input"
MAP_WHY = "the score's gradient overflowed float32 on its way back (it exploded)"


def layers(manifest: dict) -> list[tuple[str, int]]:
    """(layer id, stage) of every layer with CAMs, in forward order: the stem (stage 0), then every block."""
    return [(manifest["blocks"][0]["input"], 0), *((b["id"], b["stage"]) for b in manifest["blocks"])]


def layer_message(manifest: dict) -> str:
    """What ``layer`` may be, for a 400."""
    ids = [layer for layer, _ in layers(manifest)]
    return f"layer must be '{ALL}', the stem '{ids[0]}' or a block such as {ids[-1]}"


def depth_of(manifest: dict, layer: str) -> int:
    """The explain graph's ``depth`` for a map at ``layer``: 0 the image, 1 the stem, 1 + i block i (from 1)."""
    if layer == INPUT_LAYER:
        return 0
    if layer == ALL:
        return 1
    return [lid for lid, _ in layers(manifest)].index(layer) + 1


def rows_per_run(manifest: dict) -> int:
    """How many images one run of the explain graph may take within ``BATCH_BYTES`` (from the taps' sizes)."""
    per_image = 4 * sum(math.prod(t["shape"]) for t in manifest["taps"])
    return max(1, BATCH_BYTES // max(1, per_image))


def check(
    manifest: dict, method: str, layer: str | None, target: int | None, bn: str, samples: int, steps: int
) -> tuple[str, list[str]]:
    """The layer a request maps (``input`` for the input methods) and notes; ValueError with a message if it is bad."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method[:40]!r}")
    ids = [lid for lid, _ in layers(manifest)]
    if layer not in (None, "", ALL, INPUT_LAYER, *ids):
        raise ValueError(f"{layer_message(manifest)}; got {layer[:60]!r}")
    k = manifest["num_classes"]
    if target is not None and not 0 <= target < k:
        raise ValueError(f"target must be a class index in [0, {k - 1}] or 'predicted', got {target}")
    if not SAMPLES[0] <= samples <= SAMPLES[1]:
        raise ValueError(f"samples (SmoothGrad's noisy copies) must be between {SAMPLES[0]} and {SAMPLES[1]}")
    if not STEPS[0] <= steps <= STEPS[1]:
        raise ValueError(f"steps (integrated gradients' steps) must be between {STEPS[0]} and {STEPS[1]}")
    rows = rows_per_run(manifest)
    for name, wanted, used in (("samples", samples, "smoothgrad"), ("steps", steps, "ig")):
        if bn == "batch" and method == used and wanted > rows:
            raise ValueError(
                f"with bn=batch the {method} batch is one run, and at most {rows} images of {manifest['name']} fit "
                f"in it: ask for {name} <= {rows}, or use bn=running"
            )
    if method in INPUT_METHODS:
        notes = [] if layer in (None, "", INPUT_LAYER) else [f"{method} maps the input: layer {layer!r} is not used"]
        return INPUT_LAYER, notes
    if layer in (None, ""):
        return ids[-1], []  # the last block, Grad-CAM's usual layer
    if layer == INPUT_LAYER:
        raise ValueError(f"{layer_message(manifest)} for {method} ('input' is for saliency, smoothgrad and ig)")
    return layer, []


def feeds(x: np.ndarray, gates: np.ndarray, target: np.ndarray, depth: int, method: str | None = None) -> dict:
    """The explain graph's inputs: ``target`` (N,) int64 (-1: predicted), ``method``'s CAMs (None: no CAM)."""
    return {
        "image": x,
        "gates": gates,
        "target": target,
        "depth": np.array(depth, np.int64),
        "method": np.array(NO_CAM if method is None else CAM_METHODS.index(method), np.int64),
    }


def _run(sess, x: np.ndarray, gates: np.ndarray, target: np.ndarray, depth: int, method: str | None = None) -> dict:  # noqa: ANN001
    """One run of the explain graph (see :func:`feeds`); outputs by name (those not asked for empty)."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds(x, gates, target, depth, method)), strict=True))


def _batched(sess, xs: np.ndarray, gates: np.ndarray, t: int, rows: int) -> tuple[np.ndarray, np.ndarray, int]:  # noqa: ANN001
    """(grad_image, logits, runs) of a batch of images for class ``t``, in runs of at most ``rows`` images."""
    grads, logits = [], []
    for start in range(0, xs.shape[0], rows):
        chunk = np.ascontiguousarray(xs[start : start + rows], np.float32)
        out = _run(sess, chunk, gates, np.full(chunk.shape[0], t, np.int64), 0)
        grads.append(out["grad_image"])
        logits.append(out["logits"])
    return np.concatenate(grads), np.concatenate(logits), len(grads)


def saliency(grad_image: np.ndarray) -> np.ndarray:
    """max over colour channels of |dS/dx|: (N, 3, H, W) -> (N, H, W)."""
    return np.abs(grad_image).max(axis=1)


def black_baseline(manifest: dict, shape: tuple[int, ...]) -> np.ndarray:
    """The preprocessed black image (0 in pixel space, normalised with the model's mean and std), of ``shape``."""
    pre = manifest["preprocessing"]
    value = (0.0 - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.broadcast_to(value.reshape(1, 3, 1, 1), shape).astype(np.float32)


def input_rgb(manifest: dict, x: np.ndarray) -> np.ndarray:
    """The model's input (3, H, W) as the network sees it, un-normalised to 8-bit RGB (H, W, 3)."""
    pre = manifest["preprocessing"]
    mean = np.asarray(pre["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(3, 1, 1)
    rgb = np.nan_to_num(np.clip((x.astype(np.float64) * std + mean) * 255.0, 0, 255))
    return np.round(rgb).astype(np.uint8).transpose(1, 2, 0)


def _png(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a PNG data URI."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def finite_range(m: np.ndarray) -> tuple[float | None, float | None]:
    """(min, max) of the finite values of a map, or (None, None) when none is finite."""
    v = m[np.isfinite(m)]
    return (float(v.min()), float(v.max())) if v.size else (None, None)


def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map (h, w) resized bilinearly to ``size`` (H, W); values that are not finite are read as its minimum."""
    lo, _ = finite_range(m)
    flat = np.where(np.isfinite(m), m, lo if lo is not None else 0.0).astype(np.float32)
    return np.asarray(Image.fromarray(flat, "F").resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float64)


def overlay(m: np.ndarray, rgb: np.ndarray) -> str:
    """The map upsampled bilinearly to the input, normalised by its range, coloured, blended over ``rgb`` (PNG)."""
    h, w = rgb.shape[:2]
    lo, hi = finite_range(m)
    up = upsample(m, (h, w))
    if lo is None or hi is None or hi <= lo:
        level = np.zeros((h, w), np.uint8)
    else:
        level = np.round(np.clip((up - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)
    blend = (1.0 - OVERLAY_ALPHA) * rgb.astype(np.float64) + OVERLAY_ALPHA * LUT[level].astype(np.float64)
    return _png(np.round(blend).astype(np.uint8))


def _rounded(m: np.ndarray) -> np.ndarray:
    """A map with every value to 6 significant digits (the JSON stays short; NaN and infinity kept, sent as null)."""
    return np.asarray(compact(m.ravel()), np.float64).reshape(m.shape)


def _entry(layer: str, stage: int, m: np.ndarray, rgb: np.ndarray | None) -> dict:
    """One layer's map as the answer lists it (its range that of the values sent)."""
    sent = _rounded(m)
    lo, hi = finite_range(sent)
    return {
        "layer": layer,
        "stage": stage,
        "map_shape": [int(m.shape[0]), int(m.shape[1])],
        "map": sent,
        "range": [lo, hi],
        "overlay_png": overlay(m, rgb) if rgb is not None else None,
    }


def _smoothgrad(sess, x: np.ndarray, gates: np.ndarray, t: int, samples: int, rows: int) -> tuple[np.ndarray, dict]:  # noqa: ANN001
    """Mean saliency of ``samples`` noisy copies of ``x`` (1, 3, H, W), batched."""
    sigma = SIGMA_FRACTION * float(x.max() - x.min())
    rng = np.random.default_rng(NOISE_SEED)
    noisy = x + rng.standard_normal((samples, *x.shape[1:]), dtype=np.float32) * np.float32(sigma)
    grads, _, runs = _batched(sess, noisy, gates, t, rows)
    params = {"samples": samples, "sigma": sigma, "sigma_fraction": SIGMA_FRACTION, "seed": NOISE_SEED, "runs": runs}
    return saliency(grads).mean(axis=0), params


def _ig(
    sess,  # noqa: ANN001
    manifest: dict,
    bn: str,
    x: np.ndarray,
    gates: np.ndarray,
    t: int,
    steps: int,
    score: float,
    rows: int,
) -> tuple[np.ndarray, dict]:
    """Integrated gradients from the black baseline by the midpoint rule, the path points batched."""
    x0 = black_baseline(manifest, x.shape)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32).reshape(-1, 1, 1, 1)
    path = x0 + alphas * (x - x0)  # (steps, 3, H, W)
    if bn == "running":  # rows are independent: the baseline's score comes in the same batch
        grads, logits, runs = _batched(sess, np.concatenate([path, x0]), gates, t, rows)
        grads, base_logits = grads[:steps], logits[steps]
    else:  # batch statistics: the path is one batch, the baseline the network on itself alone
        grads, _, runs = _batched(sess, path, gates, t, rows)
        base_logits = _run(sess, x0, gates, np.array([t], np.int64), len(layers(manifest)))["logits"][0]
    attr = (x[0] - x0[0]) * grads.astype(np.float64).mean(axis=0)  # (3, H, W)
    base = float(base_logits[t])
    total, diff = float(attr.sum()), score - base
    completeness = {
        "attribution_sum": total,
        "score": score,
        "baseline_score": base,
        "score_difference": diff,
        "relative_error": abs(total - diff) / abs(diff) if diff != 0 and np.isfinite(diff) else None,
    }
    params = {"steps": steps, "baseline": "black", "rule": "midpoint", "runs": runs, "completeness": completeness}
    return np.abs(attr).sum(axis=0), params


def explain(
    registry: ModelRegistry,
    model: LoadedModel,
    images: np.ndarray,
    gates: np.ndarray,
    bn: str,
    target: int | None,
    method: str,
    layer: str | None,
    *,
    samples: int = SAMPLES[2],
    steps: int = STEPS[2],
    overlays: bool = True,
) -> dict:
    """The answer for one image (1, 3, H, W): a map (or every layer's) by ``method`` for the target class."""
    man = model.manifest
    layer, notes = check(man, method, layer, target, bn, samples, steps)
    sess = registry.session(model, f"explain-{bn}")
    x = images[:1]
    rows = rows_per_run(man)
    head = len(layers(man))  # the depth that runs the head alone: logits and the last block's CAMs
    depth = head if method in ("smoothgrad", "ig") else depth_of(man, layer)
    cam = method if method in CAM_METHODS else None
    first = _run(sess, x, gates, np.array([-1 if target is None else target], np.int64), depth, cam)
    t = int(first["target_class"][0])
    logits = first["logits"][0]
    score = float(logits[t])
    names = class_names(man)
    params: dict = {}
    stage = dict(layers(man))
    rgb = input_rgb(man, x[0])
    if method in CAM_METHODS:
        chosen = [lid for lid, _ in layers(man)] if layer == ALL else [layer]
        maps = {lid: first[cam_output(lid, method)][0] for lid in chosen}
    elif method == "saliency":
        maps = {INPUT_LAYER: saliency(first["grad_image"])[0]}
    elif method == "smoothgrad":
        m, params = _smoothgrad(sess, x, gates, t, samples, rows)
        maps = {INPUT_LAYER: m}
    else:
        m, params = _ig(sess, man, bn, x, gates, t, steps, score, rows)
        maps = {INPUT_LAYER: m}
    if bn == "batch" and method in ("smoothgrad", "ig"):
        what = "noisy copies" if method == "smoothgrad" else "path points"
        notes.append(
            f"BN with batch statistics: the {what} went through the network as one batch, so the statistics are "
            f"those of the batch of {what}, not of the image alone"
            + ("; the completeness check need not hold" if method == "ig" else "")
        )
    entries = [
        _entry(lid, stage.get(lid, 0), m, rgb if (overlays or layer != ALL) else None) for lid, m in maps.items()
    ]
    finite = [[0.0 if np.isfinite(m).all() else np.nan] for m in maps.values()]
    notes += nonfinite_note("maps", list(maps), finite, MAP_WHY)
    notes += nonfinite_note("logits", ["logits"], [logits], "the network's logits overflowed float32")
    probability = float(softmax(logits[None])[0, t]) if np.all(np.isfinite(logits)) else None
    answer = {
        "model": {"name": model.name, "weights": model.variant, "depth": man["depth"]},
        "method": method,
        "target": t,
        "target_label": names[t] if names else str(t),
        "target_source": "predicted top-1" if target is None else "chosen",
        "probability": probability,
        "score": score,
        "gates": gates.tolist(),
        "bn": bn,
        "input_shape": [int(x.shape[2]), int(x.shape[3])],
        "input_png": _png(rgb) if (overlays or layer != ALL) else None,  # a strip of maps draws no image
        "layer": layer,
        "layers": entries,
        "params": params,
        "colormap": "viridis",
        "notes": notes,
    }
    if layer != ALL:
        one = entries[0]
        answer.update({k: one[k] for k in ("map_shape", "map", "range", "overlay_png")})
    return answer
