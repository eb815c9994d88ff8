"""The normalisations side by side, on one real conv output: batch, layer, instance, group and local response norm.

Every method here is the textbook one without affine parameters (no gamma, no beta), in float64 numpy:

- batch norm: per channel, mean and variance over N, H, W (the whole batch);
- layer norm: per image, over C, H, W;
- instance norm: per image and channel, over H, W;
- group norm: per image and group of C/G channels, over C/G, H, W;
- local response normalisation (AlexNet, Krizhevsky et al. 2012, Section 3.3):
  b = a / (k + alpha * sum of a^2 over n neighbouring channels)^beta with k=2, n=5, alpha=1e-4, beta=0.75;
  it divides by a local energy and subtracts nothing.

The model's own batch norm on the same layer (its running statistics from training, ``x_hat`` without
its gamma and beta) comes beside them. Weight normalisation acts on the weights, not on activations,
so it has no place in this comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-5  # torch's default in every *_norm function (and BatchNorm2d's)
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0  # AlexNet's constants
HIST_BINS = 60
HIST_QUANTILES = (0.001, 0.999)  # the shared bins span these quantiles of every method's values, pooled


@dataclass(frozen=True)
class Method:
    """One normalisation: its id, name, the axes each statistic averages over, and what it is for."""

    id: str
    name: str
    axes: str  # axis letters of (N, C, H, W) one statistic pools
    words: str
    about: str


METHODS: tuple[Method, ...] = (
    Method(
        "batch",
        "Batch norm",
        "N,H,W",
        "per channel, over every image of the batch and every position",
        "Ioffe & Szegedy 2015: one mean and variance per channel from the whole batch, so an image's "
        "normalised values depend on the other images in its batch.",
    ),
    Method(
        "layer",
        "Layer norm",
        "C,H,W",
        "per image, over all channels and positions",
        "Ba et al. 2016: one mean and variance per image; channels keep their differences relative to each other.",
    ),
    Method(
        "instance",
        "Instance norm",
        "H,W",
        "per image and channel, over positions only",
        "Ulyanov et al. 2016: every channel of every image to mean 0 and std 1 on its own; no batch needed.",
    ),
    Method(
        "group",
        "Group norm",
        "C/G,H,W",
        "per image and group of channels, over the group's channels and positions",
        "Wu & He 2018: between layer norm (G=1) and instance norm (G=C); no batch needed.",
    ),
    Method(
        "lrn",
        "Local response norm",
        "C (5 neighbours)",
        "at every position, across 5 neighbouring channels; no mean is subtracted",
        "Krizhevsky et al. 2012 (AlexNet): divides by (2 + 1e-4 * sum of squares of 5 neighbouring channels)^0.75; "
        "with small activations it is close to a fixed division by 2^0.75 = 1.68.",
    ),
    Method(
        "running",
        "The model's BN (running statistics)",
        "N,H,W of training",
        "per channel, with the mean and variance averaged over training (as the network runs at inference)",
        "The network's own batch norm on this layer, x_hat = (x - running_mean) / sqrt(running_var + eps), "
        "before its learned gamma and beta.",
    ),
)


def default_groups(channels: int) -> int:
    """Group norm's default group count for ``channels``: 4 where it divides C, else the largest divisor below."""
    return next(g for g in (4, 3, 2, 1) if channels % g == 0)


def _standardise(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / sqrt(var + eps) over ``axes`` (population variance), with the mean and variance."""
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS), mean, var


def batch_norm(x: np.ndarray) -> np.ndarray:
    """Batch norm of (N, C, H, W) without affine: per channel over N, H, W."""
    return _standardise(x, (0, 2, 3))[0]


def layer_norm(x: np.ndarray) -> np.ndarray:
    """Layer norm of (N, C, H, W) without affine: per image over C, H, W."""
    return _standardise(x, (1, 2, 3))[0]


def instance_norm(x: np.ndarray) -> np.ndarray:
    """Instance norm of (N, C, H, W) without affine: per image and channel over H, W."""
    return _standardise(x, (2, 3))[0]


def group_norm(x: np.ndarray, groups: int) -> np.ndarray:
    """Group norm of (N, C, H, W) without affine: per image and group of C/G channels over C/G, H, W."""
    n, c, h, w = x.shape
    if groups < 1 or c % groups:
        raise ValueError(f"groups must divide the {c} channels, got {groups}")
    return _standardise(x.reshape(n, groups, c // groups, h, w), (2, 3, 4))[0].reshape(n, c, h, w)


def local_response_norm(
    x: np.ndarray, size: int = LRN_SIZE, alpha: float = LRN_ALPHA, beta: float = LRN_BETA, k: float = LRN_K
) -> np.ndarray:
    """AlexNet's LRN across channels: a / (k + alpha * sum over the ``size`` nearest channels of a^2)^beta."""
    sq = np.pad(x**2, ((0, 0), (size // 2, (size - 1) // 2), (0, 0), (0, 0)))
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    window = csum[:, size:] - csum[:, :-size]  # (N, C, H, W): the sum over channels c - size//2 .. c + (size-1)//2
    return x / (k + alpha * window) ** beta


def running_norm(x: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float) -> np.ndarray:
    """The model's BN before its affine step: (x - running_mean) / sqrt(running_var + eps) per channel."""
    return (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + eps)


def pooled_counts(shape: tuple[int, ...], groups: int) -> dict[str, dict]:
    """For each method: how many values one statistic pools, and how many statistics the batch has."""
    n, c, h, w = shape
    return {
        "batch": {"pooled": n * h * w, "statistics": c},
        "layer": {"pooled": c * h * w, "statistics": n},
        "instance": {"pooled": h * w, "statistics": n * c},
        "group": {"pooled": c // groups * h * w, "statistics": n * groups},
        "lrn": {"pooled": min(LRN_SIZE, c), "statistics": n * c * h * w},
        "running": {"pooled": None, "statistics": c},
    }


def _channel_moments(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of one image (C, H, W), non-finite values left out."""
    flat = y.reshape(y.shape[0], -1)
    ok = np.isfinite(flat)
    count = ok.sum(axis=1)
    vals = np.where(ok, flat, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vals.sum(axis=1) / count
        var = (np.where(ok, (flat - mean[:, None]) ** 2, 0.0)).sum(axis=1) / count
    return mean, np.sqrt(var)


def shared_bins(values: list[np.ndarray], bins: int = HIST_BINS) -> np.ndarray:
    """Bin edges shared by every method: the pooled 0.1 %-99.9 % range of their finite values."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if finite.size == 0:
        return np.linspace(-1.0, 1.0, bins + 1)
    lo, hi = np.quantile(finite, HIST_QUANTILES)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    """Counts of ``values`` in ``edges``, with the finite values below and above the range counted apart."""
    finite = values[np.isfinite(values)]
    counts, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
    under, over = int((finite < edges[0]).sum()), int((finite > edges[-1]).sum())
    counts[0] -= under  # clipped into the end bins above: take them back out
    counts[-1] -= over
    return {
        "counts": counts.tolist(),
        "underflow": under,
        "overflow": over,
        "nonfinite": int(values.size - finite.size),
    }


def _range(a: np.ndarray) -> list[float | None]:
    """[min, max] of the finite values (None, None when there are none)."""
    f = a[np.isfinite(a)]
    return [float(f.min()), float(f.max())] if f.size else [None, None]


def _summary(y: np.ndarray) -> dict:
    """Mean, std, range of one image's normalised values, and its channel means' and stds' ranges."""
    mean, std = _channel_moments(y)
    f = y[np.isfinite(y)]
    return {
        "channel_mean": mean,
        "channel_std": std,
        "mean": float(f.mean()) if f.size else None,
        "std": float(f.std()) if f.size else None,
        "min_max": _range(y),
        "channel_mean_range": _range(mean),
        "channel_std_range": _range(std),
    }


def compare(x: np.ndarray, groups: int, bn: dict | None = None, image: int = 0) -> dict:
    """Every normalisation of the conv output ``x`` (N, C, H, W), reported for image ``image``.

    ``bn`` is the model's own BN on this layer (``running_mean``, ``running_var``, ``eps``, ``gamma``,
    ``beta``): its running-statistics normalisation joins the others. Raises ValueError on a bad shape or
    group count.
    """
    if x.ndim != 4:
        raise ValueError(f"a conv output is (N, C, H, W), got shape {x.shape}")
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    with np.errstate(all="ignore"):  # an overflowed tap gives NaN here: reported, never raised
        outs = {
            "batch": batch_norm(x),
            "layer": layer_norm(x),
            "instance": instance_norm(x),
            "group": group_norm(x, groups),
            "lrn": local_response_norm(x),
        }
        affine = None
        if bn is not None:
            rm, rv = np.asarray(bn["running_mean"], np.float64), np.asarray(bn["running_var"], np.float64)
            outs["running"] = running_norm(x, rm, rv, float(bn["eps"]))
            gamma, beta = np.asarray(bn["gamma"], np.float64), np.asarray(bn["beta"], np.float64)
            affine = _summary(outs["running"][image] * gamma[:, None, None] + beta[:, None, None])
        mine = {k: v[image] for k, v in outs.items()}
        edges = shared_bins([v.reshape(-1) for v in mine.values()])
        counts = pooled_counts(x.shape, groups)
        methods = []
        for m in METHODS:
            if m.id not in mine:
                continue
            row = {
                "id": m.id,
                "name": m.name if m.id != "group" else f"Group norm (G={groups})",
                "axes": m.axes if m.id != "group" else f"C/{groups},H,W",
                "axes_words": m.words,
                "about": m.about,
                **counts[m.id],
                **_summary(mine[m.id]),
                "histogram": histogram(mine[m.id].reshape(-1), edges),
            }
            if m.id == "running":
                row["with_affine"] = affine
            methods.append(row)
        before = _summary(x[image])
        raw_edges = shared_bins([x[image].reshape(-1)])
        before["histogram"] = {"edges": raw_edges.tolist(), **histogram(x[image].reshape(-1), raw_edges)}
        gap = np.abs(outs["batch"][image] - outs["instance"][image])
    return {
        "shape": [n, c, h, w],
        "groups": groups,
        "edges": edges.tolist(),
        "before": before,
        "methods": methods,
        "batch_vs_instance_max_abs": float(np.nanmax(gap)) if np.isfinite(gap).any() else None,
        "notes": _notes(x, outs),
    }


def _notes(x: np.ndarray, outs: dict[str, np.ndarray]) -> list[str]:
    """Plain words for values that are not finite (an exploding layer), in the input or any method."""
    notes = []
    bad = int((~np.isfinite(x)).sum())
    if bad:
        notes.append(f"{bad} of {x.size} conv-output values are not finite (the layer overflowed); they are left out.")
    for key, y in outs.items():
        k = int((~np.isfinite(y)).sum()) - bad
        if k > 0:
            notes.append(f"{key}: {k} normalised values are not finite (a statistic overflowed); shown as null.")
    return notes
