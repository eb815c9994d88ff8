"""The landscape metrics on synthetic surfaces whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.nets.landscape_metrics import (
    circle_rise,
    eigen_ratio,
    local_minima,
    quadratic_fit,
    slice_rise,
    surface_metrics,
)

SPAN, GRID = 1.0, 21
COORDS = np.linspace(-SPAN, SPAN, GRID)
B, A = np.meshgrid(COORDS, COORDS, indexing="ij")  # rows b, columns a, as the landscapes store them
STEP = COORDS[1] - COORDS[0]


def eig2(h11: float, h12: float, h22: float) -> tuple[float, float]:
    """Eigenvalues of a symmetric 2x2 matrix in closed form (smaller first)."""
    mean, half = (h11 + h22) / 2, math.hypot((h11 - h22) / 2, h12)
    return mean - half, mean + half


def test_paraboloid_one_minimum_convex_and_known_rise() -> None:
    z = A**2 + 2 * B**2 + 0.7
    assert local_minima(z) == [(GRID // 2, GRID // 2)]
    fit = quadratic_fit(z, COORDS)
    np.testing.assert_allclose(fit["eigenvalues"], [2.0, 4.0], rtol=1e-9)
    assert fit["eig_ratio"] == 0.0 and fit["convex"] is True and fit["r2"] == pytest.approx(1.0)
    assert fit["points"] == sum(1 for a in COORDS for b in COORDS if a * a + b * b <= 0.3**2 + 1e-12)
    for r in (0.5, 1.0):
        rise = circle_rise(z, COORDS, r)
        # mean over the circle of r^2 cos^2 + 2 r^2 sin^2 is 1.5 r^2; bilinear interpolation of a quadratic
        # overestimates by at most (1 + 2) h^2 / 4 between grid nodes.
        assert 1.5 * r * r - 1e-12 <= rise["mean"] <= 1.5 * r * r + 3 * STEP**2 / 4
        assert 2 * r * r - 1e-12 <= rise["max"] <= 2 * r * r + 3 * STEP**2 / 4  # 2 r^2 at (0, +-r), a grid point


def test_saddle_ratio_one_and_no_minimum() -> None:
    z = A**2 - B**2
    assert local_minima(z) == []
    fit = quadratic_fit(z, COORDS)
    np.testing.assert_allclose(fit["eigenvalues"], [-2.0, 2.0], rtol=1e-9)
    assert fit["eig_ratio"] == pytest.approx(1.0) and fit["convex"] is False


def test_rotated_anisotropic_saddle_matches_closed_form_eigenvalues() -> None:
    z = 3 * A**2 + A * B - B**2 + 0.2 * A - 0.1 * B
    low, high = eig2(6.0, 1.0, -2.0)
    fit = quadratic_fit(z, COORDS)
    np.testing.assert_allclose(fit["eigenvalues"], [low, high], rtol=1e-9)
    assert fit["eig_ratio"] == pytest.approx(abs(low) / high)
    assert eigen_ratio(-1.0, -0.5) is None  # no positive curvature: no ratio


def test_egg_crate_has_a_minimum_in_every_interior_well() -> None:
    n = 4  # wells of -cos(pi n a) - cos(pi n b) at a, b in 2m / n
    coords = np.linspace(-1, 1, 41)
    bb, aa = np.meshgrid(coords, coords, indexing="ij")
    z = -np.cos(np.pi * n * aa) - np.cos(np.pi * n * bb)
    wells = [2 * m / n for m in range(-n, n + 1) if abs(2 * m / n) < 1 - 1e-9]  # interior only
    found = local_minima(z)
    assert len(found) == len(wells) ** 2 == 9
    assert sorted((round(coords[j], 9), round(coords[i], 9)) for i, j in found) == sorted(
        (round(a, 9), round(b, 9)) for a in wells for b in wells
    )
    assert surface_metrics(z, coords, coords, z[20])["local_minima"] == 9


def test_non_finite_points_never_count_and_break_only_what_they_touch() -> None:
    z = A**2 + B**2
    z[0, 0] = np.nan  # a corner: outside every circle of radius <= 1 but the sampling of r = sqrt(2)
    z[3, 3] = np.inf
    assert local_minima(z) == [(GRID // 2, GRID // 2)]
    assert circle_rise(z, COORDS, 0.5)["mean"] is not None
    z[GRID // 2, GRID // 2 + 5] = np.nan  # on the circle of radius 0.5
    assert circle_rise(z, COORDS, 0.5)["mean"] is None
    m = surface_metrics(z, COORDS, COORDS, z[GRID // 2])
    assert m["non_finite_points"] == 3 and m["centre_loss"] == 0.0
    assert circle_rise(z, COORDS, 1.5) == {"radius": 1.5, "mean": None, "max": None, "points": 72}


def test_slice_rise_is_the_mean_and_max_of_both_ends() -> None:
    alpha = np.linspace(-1, 1, 41)
    loss = alpha**2 + 0.5 * alpha + 1.0
    rise = slice_rise(alpha, loss, 0.5)
    assert rise["mean"] == pytest.approx(0.25) and rise["max"] == pytest.approx(0.25 + 0.25)


def test_tiny_grids_still_fit_the_three_by_three_block() -> None:
    coords = np.linspace(-1, 1, 5)  # step 0.5: no neighbour within 0.3
    bb, aa = np.meshgrid(coords, coords, indexing="ij")
    fit = quadratic_fit(aa**2 + bb**2, coords)
    assert fit["points"] == 9 and fit["radius"] > 0.5 * math.sqrt(2)
    np.testing.assert_allclose(fit["eigenvalues"], [2.0, 2.0], rtol=1e-9)
