"""Numbers that say how smooth or chaotic a loss surface is (numpy only; ``app.nets.landscape`` makes the surfaces).

A surface is a square grid ``z[i, j]`` of the loss at ``theta + a d1 + b d2`` with ``a = coords[j]`` (columns, x)
and ``b = coords[i]`` (rows, y), ``coords`` symmetric about 0 with 0 on the grid (the trained weights).

- ``circle_rise``: the loss on the circle of radius r about the centre (bilinear interpolation of the grid at
  ``CIRCLE_POINTS`` equally spaced angles) minus the loss at the centre: its mean (the number the captions
  show) and its max.
- ``local_minima``: interior grid points strictly below all 8 neighbours.
- ``quadratic_fit``: least squares of ``c0 + c1 a + c2 b + c3 a^2 + c4 ab + c5 b^2`` to the grid points within
  ``radius`` of the centre; the Hessian of the fit ``[[2 c3, c4], [c4, 2 c5]]`` and its eigenvalues. Li et al.
  2018 (section 6) read convexity from ``|lambda_min / lambda_max|`` with ``lambda_min`` the most negative
  eigenvalue; here ``eig_ratio`` is that ratio, 0 when no eigenvalue is negative (a convex bowl), 1 for a
  symmetric saddle, and None when no eigenvalue is positive (no bowl at all).
Non-finite losses (an overflowing plain network) are left out where a number can still be given, else None.
The default resolution of ``resviz landscape`` lives here too, so that the command line knows it without torch.
"""

from __future__ import annotations

import math

import numpy as np

# The shipped set's resolution (scripts/landscapes.sh): the defaults of ``resviz landscape``.
DEFAULT_GRID = 17
DEFAULT_SPAN = 1.0
DEFAULT_IMAGES = 64
DEFAULT_SEED = 0

RISE_RADII = (0.5, 1.0)
FIT_RADIUS = 0.3  # the quadratic fit's neighbourhood of the centre (at least the 3x3 grid block)
CIRCLE_POINTS = 72  # angles at which the circle is sampled (every 5 degrees)


def _finite(x: float) -> float | None:
    """``x`` as a float, or None where it is not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


def centre_index(coords: np.ndarray) -> int:
    """Index of the coordinate 0 (the trained weights); ValueError if the grid does not contain it."""
    coords = np.asarray(coords, dtype=float)
    i = int(np.argmin(np.abs(coords)))
    if abs(coords[i]) > 1e-9 * max(1.0, float(np.abs(coords).max())):
        raise ValueError("the grid must contain the coordinate 0 (an odd number of points, symmetric about 0)")
    return i


def bilinear(z: np.ndarray, coords: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The grid ``z`` (rows b, columns a) interpolated bilinearly at the points (a, b) inside it."""
    z, coords = np.asarray(z, dtype=float), np.asarray(coords, dtype=float)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(coords)
    ja = np.clip(np.searchsorted(coords, a, side="right") - 1, 0, n - 2)
    ib = np.clip(np.searchsorted(coords, b, side="right") - 1, 0, n - 2)
    ta = (a - coords[ja]) / (coords[ja + 1] - coords[ja])
    tb = (b - coords[ib]) / (coords[ib + 1] - coords[ib])
    top = z[ib, ja] * (1 - ta) + z[ib, ja + 1] * ta
    bottom = z[ib + 1, ja] * (1 - ta) + z[ib + 1, ja + 1] * ta
    return top * (1 - tb) + bottom * tb


def circle_rise(z: np.ndarray, coords: np.ndarray, radius: float, points: int = CIRCLE_POINTS) -> dict:
    """Mean and max over the circle of ``radius`` of the loss minus the centre's (None outside the grid)."""
    coords = np.asarray(coords, dtype=float)
    c = centre_index(coords)
    centre = float(np.asarray(z, dtype=float)[c, c])
    out: dict = {"radius": radius, "mean": None, "max": None, "points": points}
    if radius > float(coords[-1]) + 1e-12 or radius > -float(coords[0]) + 1e-12 or not math.isfinite(centre):
        return out
    angles = 2 * np.pi * np.arange(points) / points
    a = np.clip(radius * np.cos(angles), coords[0], coords[-1])
    b = np.clip(radius * np.sin(angles), coords[0], coords[-1])
    values = bilinear(z, coords, a, b)
    if not np.all(np.isfinite(values)):
        return out
    return {**out, "mean": _finite(values.mean() - centre), "max": _finite(values.max() - centre)}


def slice_rise(alpha: np.ndarray, loss: np.ndarray, radius: float) -> dict:
    """On the 1-D slice: the mean and max of loss(-r) and loss(+r) (linear interpolation) minus loss(0)."""
    alpha, loss = np.asarray(alpha, dtype=float), np.asarray(loss, dtype=float)
    out: dict = {"radius": radius, "mean": None, "max": None}
    if radius > alpha[-1] + 1e-12 or radius > -alpha[0] + 1e-12:
        return out
    centre = float(np.interp(0.0, alpha, loss))
    ends = np.interp([-radius, radius], alpha, loss)
    if not (np.all(np.isfinite(ends)) and math.isfinite(centre)):
        return out
    return {**out, "mean": _finite(ends.mean() - centre), "max": _finite(ends.max() - centre)}


def local_minima(z: np.ndarray) -> list[tuple[int, int]]:
    """Interior grid points (row, column) strictly below all 8 neighbours (non-finite points never count)."""
    z = np.asarray(z, dtype=float)
    if z.shape[0] < 3 or z.shape[1] < 3:
        return []
    inner = z[1:-1, 1:-1]
    is_min = np.isfinite(inner)
    rows, cols = z.shape
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            neighbour = z[1 + di : rows - 1 + di, 1 + dj : cols - 1 + dj]
            with np.errstate(invalid="ignore"):
                is_min &= inner < np.where(np.isnan(neighbour), np.inf, neighbour)
    return [(int(i) + 1, int(j) + 1) for i, j in zip(*np.nonzero(is_min), strict=True)]


def fit_radius(coords: np.ndarray, radius: float = FIT_RADIUS) -> float:
    """The fit's radius: ``radius``, widened where needed to hold the 3x3 block around the centre."""
    step = float(np.min(np.diff(np.asarray(coords, dtype=float))))
    return max(radius, step * math.sqrt(2) * (1 + 1e-9))


def quadratic_fit(z: np.ndarray, coords: np.ndarray, radius: float = FIT_RADIUS) -> dict:
    """Least-squares quadratic around the centre: coefficients, Hessian, eigenvalues and the eigenvalue ratio."""
    z, coords = np.asarray(z, dtype=float), np.asarray(coords, dtype=float)
    r = fit_radius(coords, radius)
    bb, aa = np.meshgrid(coords, coords, indexing="ij")
    keep = (aa**2 + bb**2 <= r * r * (1 + 1e-9)) & np.isfinite(z)  # points on the circle count
    a, b, y = aa[keep], bb[keep], z[keep]
    out: dict = {"radius": r, "points": int(keep.sum()), "coefficients": None, "hessian": None}
    out |= {"eigenvalues": None, "eig_ratio": None, "r2": None, "convex": None}
    if len(y) < 6:
        return out
    design = np.stack([np.ones_like(a), a, b, a * a, a * b, b * b], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    hessian = np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    low, high = np.linalg.eigvalsh(hessian)
    resid = y - design @ coef
    total = float(((y - y.mean()) ** 2).sum())
    out |= {
        "coefficients": [float(c) for c in coef],
        "hessian": hessian.tolist(),
        "eigenvalues": [float(low), float(high)],
        "r2": _finite(1 - float((resid**2).sum()) / total) if total > 0 else None,
        "convex": bool(low >= 0 and high > 0),
        "eig_ratio": eigen_ratio(float(low), float(high)),
    }
    return out


def eigen_ratio(low: float, high: float) -> float | None:
    """``|lambda_min| / lambda_max`` for a negative lambda_min; 0 when none is negative; None with no positive one."""
    if not high > 0:
        return None
    return abs(low) / high if low < 0 else 0.0


def surface_metrics(z: np.ndarray, coords: np.ndarray, alpha: np.ndarray, slice_loss: np.ndarray) -> dict:
    """Every number of one surface: centre loss, rises on the circles and the slice, local minima, quadratic fit."""
    z = np.asarray(z, dtype=float)
    c = centre_index(coords)
    minima = local_minima(z)
    finite = z[np.isfinite(z)]
    return {
        "centre_loss": _finite(z[c, c]),
        "min_loss": _finite(finite.min()) if finite.size else None,
        "max_loss": _finite(finite.max()) if finite.size else None,
        "non_finite_points": int(z.size - finite.size),
        "rise": [circle_rise(z, coords, r) for r in RISE_RADII],
        "slice_rise": [slice_rise(alpha, slice_loss, r) for r in RISE_RADII],
        "local_minima": len(minima),
        "local_minima_at": [[float(coords[j]), float(coords[i])] for i, j in minima],  # (a, b) of each
        "centre_is_minimum": (c, c) in minima,
        "quadratic_fit": quadratic_fit(z, coords),
    }
