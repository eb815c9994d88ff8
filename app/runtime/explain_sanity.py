"""Sanity measures of saliency maps (numpy): the pointing game, deletion and insertion curves, rank correlation.

- Pointing game (Zhang et al. 2016): a map scores a hit when its peak falls inside the object's
  mask. A map with no peak (constant, e.g. a CAM the ReLU zeroed everywhere) is a miss. A random
  map's expected score is the mean fraction of the image the masks cover.
- Deletion and insertion (Petsiuk et al. 2018): pixels are removed from the image (set to the
  baseline), or put back into the baseline, most salient first; the area under the target
  probability's curve is low for a good map's deletion and high for its insertion.
- Model randomisation (Adebayo et al. 2018): Spearman's rank correlation between the maps of the
  trained network and of the same network with its initial weights; a map that explains what the
  network learned must change, so the correlation should be low.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pointing_hits(maps: np.ndarray, masks: np.ndarray, inside: float = 0.5) -> np.ndarray:
    """Per map (n, H, W): whether its peak lies where the mask (n, H, W) exceeds ``inside``; flat maps miss."""
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    flat = maps.reshape(len(maps), -1)
    peak = np.nanargmax(np.where(np.isfinite(flat), flat, -np.inf), axis=1)
    has_peak = np.nanmax(flat, axis=1) > np.nanmin(flat, axis=1)
    return has_peak & (masks.reshape(len(masks), -1)[np.arange(len(maps)), peak] > inside)


def random_pointing_rate(masks: np.ndarray, inside: float = 0.5) -> float:
    """The expected pointing-game score of a map whose peak falls on a uniformly random pixel."""
    return float((masks > inside).mean())


def pixel_order(maps: np.ndarray) -> np.ndarray:
    """Per map (n, H, W), its pixels' flat indices from the most to the least salient (NaN last, ties by index)."""
    flat = maps.reshape(len(maps), -1)
    return np.argsort(-np.where(np.isfinite(flat), flat, -np.inf), axis=1, kind="stable")


def perturbation_batch(image: np.ndarray, baseline: np.ndarray, order: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """``steps + 1`` copies of ``image`` (C, H, W) with 0, 1/steps, ..., all pixels of ``order`` deleted or inserted.

    ``mode`` "deletion" sets the first pixels of ``order`` to ``baseline`` (C, H, W); "insertion"
    starts from the baseline and puts the first pixels of ``order`` back.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be deletion or insertion, got {mode!r}")
    c, h, w = image.shape
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    rank = np.empty(h * w, dtype=int)
    rank[order] = np.arange(h * w)
    chosen = rank[None, :] < counts[:, None]  # (steps + 1, H*W): which pixels are changed at each step
    # Insertion: the chosen pixels come from the image, the rest from the baseline; deletion: the reverse.
    src, rest = (image, baseline) if mode == "insertion" else (baseline, image)
    sel = chosen.reshape(steps + 1, 1, h, w)
    return np.where(sel, src[None], rest[None]).astype(image.dtype)


def curve_auc(values: np.ndarray) -> np.ndarray:
    """Area under curves sampled at equal steps over [0, 1] (trapezoid rule), along the last axis."""
    steps = values.shape[-1] - 1
    return (values[..., 1:] + values[..., :-1]).sum(axis=-1) / (2 * steps)


def deletion_insertion(
    prob: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    targets: np.ndarray,
    maps: np.ndarray,
    baseline: np.ndarray,
    steps: int = 16,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (n, steps + 1) of the target probability, and their AUCs (n,).

    ``prob(batch)`` returns the softmax probabilities (B, K) of a batch (B, C, H, W); ``maps``
    (n, H, W) are at the images' resolution.
    """
    order = pixel_order(maps)
    out: dict[str, list] = {"deletion": [], "insertion": []}
    for i, image in enumerate(images):
        for mode in out:
            batch = perturbation_batch(image, baseline, order[i], steps, mode)
            out[mode].append(prob(batch)[:, int(targets[i])])
    curves = {k: np.stack(v) for k, v in out.items()}
    return {**curves, **{f"{k}_auc": curve_auc(v) for k, v in curves.items()}}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1..n) of ``x`` along the last axis, ties given their mean rank."""
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty(flat.shape, dtype=np.float64)
    for row, r in zip(flat, out, strict=True):
        order = np.argsort(row, kind="stable")
        s = row[order]
        starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
        ends = np.r_[starts[1:], len(s)]
        mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (0-based) averaged, +1
        r[order] = np.repeat(mean_rank, ends - starts)
    return out.reshape(x.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps (n, ...) flattened; NaN where either map is constant."""
    ra = _ranks(a.reshape(len(a), -1))
    rb = _ranks(b.reshape(len(b), -1))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
