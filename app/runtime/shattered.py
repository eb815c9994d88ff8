"""Shattered gradients (Balduzzi et al. 2017): the input gradient along a line of inputs, and its spectrum.

Balduzzi et al. feed a 1-D input to a deep network and plot the gradient of the output against the
input: for a deep plain network it looks like white noise (uncorrelated from one input to the next,
a flat power spectrum), for a ResNet like brown noise (a random walk, spectrum ~ 1/f^2). Our inputs
are images, so the 1-D input becomes a line through image space::

    x(t) = x0 + (t - 1/2) * span * u,    t = 0, 1/P, ..., (P-1)/P,

with ``u`` a fixed unit-norm random direction (a seeded numpy Generator) and the signal
``g(t) = grad_image(x(t)) . u``: the derivative of the class score along the line (the score is the
logit of the target class, before the softmax). The point t = 1/2 is x0 itself (P even).

``span`` defaults to sqrt(d), d = 3*H*W: the line is as long as a change of one standard deviation
in every input (the images are normalised to unit std per channel), about the distance between two
images of the data (~sqrt(2d)); each pixel moves by (t - 1/2) * z_i with z_i = sqrt(d) u_i ~ N(0, 1),
so between -z_i/2 and +z_i/2 standard deviations along the whole line.

All P points go through the explain graph (``explain-running``) batched, ``CHUNK`` images per run: BN
uses its running statistics, so the points do not interact and the batch size changes no number. For
ResNet-110 and P = 256, batches of 64 hold the process at 1.0 GB against 3.6 GB for one batch of 256,
at the same speed (measured on one core). The target class is fixed along the line (the one given, or
the top-1 class at x0, found by a one-image run first): with ``target = -1`` the graph would take each
point's own top-1 class and g(t) would jump where that changes.

From g: the normalised autocorrelation at lags 0..P/4, the periodogram of the mean-removed signal
at frequencies 1..P/2 (cycles per line) and the least-squares slope of log10(power) against
log10(frequency): ~0 for white noise, ~-2 for brown noise (with this estimator at P = 256 an ideal
random walk reads about -1.8, see ``reference_slopes``). The same numbers for one pixel's
gradient component (channel 0, the centre pixel) come from the same run.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.paths import EXPORT_FORMAT, GRAPH_FILES, SHIPPED_WEIGHTS_DIR
from app.runtime.chartstats import fit
from app.runtime.explain import INPUT_LAYER, depth_of
from app.runtime.explain import feeds as explain_feeds
from app.runtime.explain import layers as explain_layers
from app.runtime.labels import class_names
from app.runtime.registry import LoadedModel, ModelRegistry
from app.runtime.sweeps import weights_fingerprint
from app.specs import SPECS

SHIPPED_PATH = SHIPPED_WEIGHTS_DIR / "shattered.json"  # the lab's study, written by scripts/shattered.py
KIND = "explain-running"  # the explain graph with BN on running statistics: outputs logits and grad_image
POINTS = 256
MIN_POINTS, MAX_POINTS = 16, 512
MAX_SEED = 2**32 - 1
CHUNK = 64  # images per run of the explain graph (the memory of its tape grows with the batch)
MAX_DEPTH = 110  # the study is offered for the CIFAR ResNets up to ResNet-110
REFERENCE_SEEDS = 200  # numpy noise signals behind reference_slopes
GRAD_WHY = "the gradient overflowed float32 on its way back, or the class score was not finite there"
SCORE_WHY = "the network's forward pass overflowed float32 (or its weights hold infinite BN statistics)"
FLAT_WHY = "the signal is constant along the line (no variance to normalise by)"


def small_models() -> list[str]:
    """The models the study is offered for: the CIFAR ResNets up to ResNet-110."""
    return [n for n, s in SPECS.items() if s.family == "cifar" and s.depth <= MAX_DEPTH]


def check_request(name: str, points: int, seed: int) -> None:
    """Raise ValueError with a message for the user unless the model is small and points and seed are in range."""
    if name not in small_models():
        raise ValueError(
            f"the shattered-gradients study runs {POINTS} backward passes per request by default and is offered for "
            f"the CIFAR ResNets up to ResNet-{MAX_DEPTH} ({', '.join(small_models())}), not {name}"
        )
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise ValueError(f"points must be between {MIN_POINTS} and {MAX_POINTS}, got {points}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {seed}")


def direction(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A unit-norm random direction of input space (float64), the same for the same seed and shape."""
    u = np.random.default_rng(seed).standard_normal(int(np.prod(shape)))
    return (u / np.linalg.norm(u)).reshape(shape)


def default_span(shape: tuple[int, ...]) -> float:
    """sqrt(d): the line's length, a one-standard-deviation change of every one of the d inputs."""
    return math.sqrt(float(np.prod(shape)))


def line(
    x0: np.ndarray, points: int, seed: int, span: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``t`` (P,), the direction ``u`` and the inputs x(t) = x0 + (t - 1/2) span u, (P, C, H, W) float64."""
    x0 = np.asarray(x0, np.float64)
    u = direction(x0.shape, seed)
    span = default_span(x0.shape) if span is None else span
    t = np.arange(points, dtype=np.float64) / points
    return t, u, x0[None] + ((t - 0.5) * span)[:, None, None, None] * u[None]


def autocorrelation(g: np.ndarray, max_lag: int) -> np.ndarray | None:
    """Normalised autocorrelation r(k), k = 0..max_lag, of the mean-removed signal (None when it is constant).

    r(k) = sum_t (g_t - m)(g_(t+k) - m) / sum_t (g_t - m)^2 (the biased estimator: r(0) = 1, |r| <= 1).
    """
    d = np.asarray(g, np.float64) - np.mean(g)
    n = d.size
    power = float(d @ d)
    if not np.isfinite(power) or power <= 0:
        return None
    size = 1 << (2 * n - 1).bit_length()  # zero padding: a linear, not circular, correlation
    f = np.fft.rfft(d, size)
    r = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1]
    return r / r[0]


def periodogram(g: np.ndarray) -> np.ndarray:
    """|DFT(g - mean)|^2 / P at frequencies 1..P/2 (cycles per line)."""
    d = np.asarray(g, np.float64) - np.mean(g)
    return (np.abs(np.fft.rfft(d)) ** 2 / d.size)[1 : d.size // 2 + 1]


def spectrum_slope(power: np.ndarray) -> dict:
    """Least-squares line through (log10 f, log10 power), f = 1..len(power): slope, intercept, r, points used."""
    f = np.arange(1, len(power) + 1, dtype=np.float64)
    keep = np.isfinite(power) & (power > 0)
    line_fit = fit(np.log10(f[keep]).tolist(), np.log10(power[keep]).tolist()) if keep.sum() >= 2 else {}
    slope = line_fit.get("slope")
    if slope is None:
        return {"slope": None, "intercept": None, "r": None, "used": int(keep.sum()), "fit": None}
    intercept = line_fit["my"] - slope * line_fit["mx"]
    ends = [float(f[keep][0]), float(f[keep][-1])]
    return {
        "slope": slope,
        "intercept": intercept,
        "r": line_fit["r"],
        "used": int(keep.sum()),
        "fit": [[e, 10 ** (intercept + slope * math.log10(e))] for e in ends],  # the fitted line's two ends
    }


def half_lag(r: np.ndarray | None) -> int | None:
    """The first lag at which the autocorrelation falls below 1/2 (None if it stays above within the lags)."""
    if r is None:
        return None
    below = np.flatnonzero(r < 0.5)
    return int(below[0]) if below.size else None


def signal_report(g: np.ndarray, what: str) -> tuple[dict, list[str]]:
    """Trace, mean, std, autocorrelation, periodogram and its slope of one signal; notes where it is not finite."""
    g = np.ascontiguousarray(g, np.float64)  # a strided view (one pixel of a batch) would not serialise
    p = g.size
    empty = {"trace": g, "mean": None, "std": None, "autocorr": None, "lag1": None, "half_lag": None}
    if not np.all(np.isfinite(g)):
        bad = int((~np.isfinite(g)).sum())
        note = f"{what}: {bad} of {p} values are not finite ({GRAD_WHY}); its statistics are null."
        return {**empty, "spectrum": {"power": None, **spectrum_slope(np.zeros(0))}}, [note]
    r = autocorrelation(g, p // 4)
    if r is None:
        return {
            **empty,
            "mean": float(g.mean()),
            "std": 0.0,
            "spectrum": {"power": None, **spectrum_slope(np.zeros(0))},
        }, [f"{what}: {FLAT_WHY}; its autocorrelation and spectrum are null."]
    power = periodogram(g)
    out = {
        "trace": g,
        "mean": float(g.mean()),
        "std": float(g.std()),
        "autocorr": r,
        "lag1": float(r[1]) if r.size > 1 else None,
        "half_lag": half_lag(r),
        "spectrum": {"power": power, **spectrum_slope(power)},
    }
    return out, []


@lru_cache(maxsize=16)
def reference_slopes(points: int = POINTS, seeds: int = REFERENCE_SEEDS) -> dict:
    """Mean and std of the spectrum slope of numpy white noise and of its cumulative sum (brown) at length P."""
    white, brown = [], []
    for s in range(seeds):
        w = np.random.default_rng(s).standard_normal(points)
        white.append(spectrum_slope(periodogram(w))["slope"])
        brown.append(spectrum_slope(periodogram(np.cumsum(w)))["slope"])
    return {
        "seeds": seeds,
        "white": {"mean": float(np.mean(white)), "std": float(np.std(white))},
        "brown": {"mean": float(np.mean(brown)), "std": float(np.std(brown))},
    }


IMAGE_DEPTH = depth_of({}, INPUT_LAYER)  # the explain graph's depth that runs the backward down to the image


def _run(sess, images: np.ndarray, gates: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """logits and grad_image of ``images`` for one class, in chunks of CHUNK images."""
    logits, grads = [], []
    for i in range(0, images.shape[0], CHUNK):
        part = np.ascontiguousarray(images[i : i + CHUNK], np.float32)
        t = np.full(part.shape[0], target, np.int64)
        lo, gi = sess.run(["logits", "grad_image"], explain_feeds(part, gates, t, IMAGE_DEPTH))
        logits.append(lo)
        grads.append(gi)
    return np.concatenate(logits), np.concatenate(grads)


def shattered(
    registry: ModelRegistry,
    model: LoadedModel,
    image: np.ndarray,
    gates: np.ndarray,
    target: int | None,
    points: int = POINTS,
    seed: int = 0,
    span: float | None = None,
) -> dict:
    """g(t) = d(class score)/dx . u along a line through ``image`` (1, 3, H, W), its autocorrelation and spectrum."""
    man = model.manifest
    check_request(model.name, points, seed)
    if target is not None and not 0 <= target < man["num_classes"]:
        raise ValueError(f"target must be a class index in [0, {man['num_classes'] - 1}], got {target}")
    sess = registry.session(model, KIND)
    x0 = np.asarray(image[0], np.float32)
    gates = np.asarray(gates, np.float32)
    if target is None:  # the class the network predicts at x0, kept along the whole line
        head = len(explain_layers(man))  # the depth that runs the head alone
        (lo0,) = sess.run(["logits"], explain_feeds(x0[None], gates, np.full(1, -1, np.int64), head))
        target = int(np.argmax(lo0[0])) if np.all(np.isfinite(lo0)) else 0
        source = "predicted top-1 at x0"
    else:
        source = "chosen"
    span = default_span(x0.shape) if span is None else float(span)
    t, u, xs = line(x0, points, seed, span)
    logits, grad = _run(sess, xs, gates, target)
    score = logits[:, target].astype(np.float64)
    # Where the score itself is not finite its gradient means nothing (the graph may still give 0 there).
    valid = np.isfinite(score)[:, None, None, None]
    grad = np.where(valid, grad.astype(np.float64), np.nan)
    g = np.einsum("nchw,chw->n", grad, u)
    c, h, w = 0, x0.shape[1] // 2, x0.shape[2] // 2
    bad = int((~np.isfinite(score)).sum())
    notes = [f"the class score is not finite at {bad} of {points} points of the line: {SCORE_WHY}."] if bad else []
    direction_report, more = signal_report(g, "the directional derivative")
    notes += more
    pixel_report, more = signal_report(grad[:, c, h, w], f"the gradient at pixel (channel {c}, row {h}, column {w})")
    notes += more
    finite = np.all(np.isfinite(logits), axis=1)
    top1 = float(np.mean(finite & (np.argmax(np.where(np.isfinite(logits), logits, -np.inf), axis=1) == target)))
    names = class_names(man)
    return {
        "model": {"name": model.name, "weights": model.variant, "depth": man["depth"]},
        "gates": gates.tolist(),
        "bn": "running",
        "graph": GRAPH_FILES[KIND],
        "target": target,
        "target_label": names[target] if names else str(target),
        "target_source": source,
        "points": points,
        "seed": seed,
        "span": span,
        "input_norm": float(np.linalg.norm(x0.astype(np.float64))),
        "dimension": int(x0.size),
        "pixel": {"channel": c, "row": h, "column": w},
        "top1_fraction": top1,
        "t": t,
        "lags": np.arange(points // 4 + 1),
        "freq": np.arange(1, points // 2 + 1),
        "score": score,
        "direction": direction_report,
        "pixel_gradient": pixel_report,
        "reference": reference_slopes(points),
        "notes": notes,
    }


# ---------------------------------------------------------------- the shipped study (GET /api/lab/shattered)


def _slope(signal: dict | None) -> float | None:
    return ((signal or {}).get("spectrum") or {}).get("slope")


def summary_rows(runs: list[dict]) -> list[dict]:
    """Per depth and weights choice: the residual and plain nets' spectrum slopes and lag-1 autocorrelations."""
    by = {(r["depth"], r["weights"], r["net"]): r for r in runs}
    rows = []
    for depth in sorted({r["depth"] for r in runs}):
        for weights in ("init", "trained"):
            res, plain = by.get((depth, weights, "residual")), by.get((depth, weights, "plain"))
            if res is None and plain is None:
                continue
            row = {"depth": depth, "weights": weights}
            for key, run in (("residual", res), ("plain", plain)):
                row[f"{key}_slope"] = _slope(run and run["direction"])
                row[f"{key}_lag1"] = (run or {}).get("direction", {}).get("lag1")
                row[f"{key}_pixel_slope"] = _slope(run and run["pixel_gradient"])
            rows.append(row)
    return rows


def staleness_notes(doc: dict) -> list[str]:
    """Where the shipped file no longer describes what the server would compute now."""
    notes = []
    if doc.get("format") != EXPORT_FORMAT:
        notes.append(
            f"these results were computed with export format {doc.get('format')} graphs, the server exports format "
            f"{EXPORT_FORMAT} now: run {doc.get('command') or 'scripts/shattered.py'} again to refresh them"
        )
    changed = sorted(
        {
            f"resnet{r['depth']}@{r['variant']}"
            for r in doc.get("runs", [])
            if r.get("variant") != "init"
            and r.get("sha256") != weights_fingerprint(f"resnet{r['depth']}", r["variant"])
        }
    )
    if changed:
        notes.append(f"the shipped weights of {', '.join(changed)} changed since these results were computed")
    return notes


@lru_cache(maxsize=4)
def _lab(path: str, mtime_ns: int) -> dict | None:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    runs = doc.get("runs", [])
    return {
        **doc,
        "depths": sorted({r["depth"] for r in runs}),
        "summary": summary_rows(runs),
        "notes": [*doc.get("notes", []), *staleness_notes(doc)],
    }


def lab_study(path: Path = SHIPPED_PATH) -> dict | None:
    """The shipped study with its summary rows and notes (read once per file version), or None when missing."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _lab(str(path), mtime)
