"""Ordinary least squares in standardized variables, and the fitted equation in the user's units."""

from __future__ import annotations

import numpy as np


def lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with column scaling (as numpy.polyfit does) for better conditioning."""
    scale = np.sqrt((a * a).sum(axis=0))
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq(a / scale, y, rcond=None)
    return coef / scale


def r2(y: np.ndarray, fitted: np.ndarray) -> float:
    """Coefficient of determination (0 when y is constant)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - fitted) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def design(x: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Columns [1, z, z^2, ..] for one x, or [1, z_1, .., z_k] for several, with z standardized."""
    z = (x - center) / scale
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0] ** p for p in range(degree + 1)])
    return np.column_stack([np.ones(len(z)), z])


def coefficients_in_x(coef_z: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray) -> list[float]:
    """Coefficients on 1, x, x^2, ... (or 1, x_1, ..., x_k) of a fit done in standardized variables."""
    if len(center) == 1:
        poly = np.polynomial.Polynomial(coef_z)
        in_x = poly(np.polynomial.Polynomial([-center[0] / scale[0], 1.0 / scale[0]]))
        c = np.zeros(degree + 1)
        c[: len(in_x.coef)] = in_x.coef
        return c.tolist()
    slopes = coef_z[1:] / scale
    return [float(coef_z[0] - (slopes * center).sum()), *slopes.tolist()]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def equation(y_name: str, x_names: list[str], coefs: list[float], degree: int) -> str:
    """The fitted model as text, e.g. ``y = 2.1 + 1.49 x``."""
    if len(x_names) == 1:
        terms = ["", x_names[0], *(f"{x_names[0]}^{p}" for p in range(2, degree + 1))]
    else:
        terms = ["", *x_names]
    parts = [_fmt(coefs[0])]
    for c, t in zip(coefs[1:], terms[1:], strict=True):
        parts.append(f"{'-' if c < 0 else '+'} {_fmt(abs(c))} {t}")
    return f"{y_name} = " + " ".join(parts)
