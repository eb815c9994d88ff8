"""Fit y on x (a polynomial of degree 1..5 in one column, or a linear model in several) and analyse the residuals."""

from __future__ import annotations

import math

import numpy as np

from app.regression import diagnostics as dg
from app.regression.errors import ModelSpecError
from app.regression.ols import coefficients_in_x, design, equation, lstsq, r2
from app.regression.special import f_sf
from app.regression.table import Table

MAX_DEGREE = dg.MAX_DEGREE


def _columns(table: Table, degree: int, x_columns: list[str] | None, y_column: str | None) -> tuple[str, list[str]]:
    """The y column and the x columns of the fit, checked against the table and the degree."""
    if not isinstance(degree, int) or not 1 <= degree <= MAX_DEGREE:
        raise ModelSpecError(f"degree must be a whole number from 1 to {MAX_DEGREE}, got {degree!r}")
    cols = table.columns
    y_name = y_column or cols[-1]
    if y_name not in cols:
        raise ModelSpecError(f"there is no column {y_name!r}; the columns are {', '.join(cols)}")
    x_names = list(dict.fromkeys(x_columns)) if x_columns else [next(c for c in cols if c != y_name)]
    for name in x_names:
        if name not in cols:
            raise ModelSpecError(f"there is no column {name!r}; the columns are {', '.join(cols)}")
        if name == y_name:
            raise ModelSpecError(f"{name!r} is the y column; it cannot also be an x column")
    if len(x_names) > 1 and degree != 1:
        raise ModelSpecError("with several x columns only a linear fit (degree 1) is offered; choose one x column")
    return y_name, x_names


def _data(table: Table, y_name: str, x_names: list[str], degree: int) -> tuple[np.ndarray, np.ndarray, int]:
    """y, x (n, k) and the number of coefficients, once the data can carry the fit."""
    y = table.column(y_name)
    x = np.column_stack([table.column(c) for c in x_names])
    if np.ptp(y) == 0:
        raise ModelSpecError(f"column {y_name!r} has the same value in every row; there is nothing to explain")
    for j, name in enumerate(x_names):
        if np.ptp(x[:, j]) == 0:
            raise ModelSpecError(f"column {name!r} has the same value in every row; it cannot explain y")
        distinct = len(np.unique(x[:, j]))
        if len(x_names) == 1 and distinct <= degree:
            raise ModelSpecError(
                f"column {name!r} has only {distinct} distinct values; "
                f"a degree-{degree} polynomial needs at least {degree + 1}"
            )
    p = (degree + 1) if len(x_names) == 1 else len(x_names) + 1
    if len(y) - p < 3:
        raise ModelSpecError(f"{len(y)} rows are too few for {p} coefficients; lower the degree or add rows")
    return y, x, p


def _diagnostics(y: np.ndarray, a: np.ndarray, fitted: np.ndarray, degree: int) -> dict:
    """The four diagnostics of e = y - fitted; none is tested when the fit is exact."""
    e = y - fitted
    found = {
        "normality": dg.normality(e),
        "constant_variance": dg.constant_variance(e, a[:, 1:]),
        "curvature": dg.curvature(dg.reset_test(y, a, fitted), degree),
        "independence": dg.independence(e),
    }
    if float((e**2).sum()) <= 1e-24 * float(((y - y.mean()) ** 2).sum()):  # residuals are rounding noise
        for d in found.values():
            d.update(
                statistic=None,
                p_value=None,
                flag=False,
                verdict="The fit is exact: the residuals are zero up to rounding, so there is no pattern to test.",
            )
    return found


def _plots(x: np.ndarray, y: np.ndarray, fitted: np.ndarray, x_names: list[str], curve: dict | None) -> dict:
    """The chapter's three residual plots (against fitted, each x, observation order) and a normal Q-Q plot."""
    e = y - fitted
    idx = dg.plot_index(len(y))
    e_shown = e[idx].tolist()
    return {
        "rows": (idx + 1).tolist(),  # 1-based row numbers of the points drawn
        "shown": len(idx),
        "total": len(y),
        "fitted": {"x": fitted[idx].tolist(), "y": e_shown, "label": "fitted value"},
        "x": [{"name": name, "x": x[idx, j].tolist(), "y": e_shown} for j, name in enumerate(x_names)],
        "order": {"x": (idx + 1).tolist(), "y": e_shown, "label": "observation order"},
        "qq": dg.qq_points(e),
        "fit": curve,
    }


def _fit_curve(
    x: np.ndarray, y: np.ndarray, coef_z: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray
) -> dict:
    idx = dg.plot_index(len(y))
    x, y = x[idx], y[idx]
    grid = np.linspace(x[:, 0].min(), x[:, 0].max(), 200)[:, None]
    curve = design(grid, degree, center, scale) @ coef_z
    return {"x": x[:, 0].tolist(), "y": y.tolist(), "curve_x": grid[:, 0].tolist(), "curve_y": curve.tolist()}


def _model(
    y: np.ndarray, fitted: np.ndarray, p: int, y_name: str, x_names: list[str], coefs: list[float], degree: int
) -> dict:
    """Goodness of fit: R^2 (plain and adjusted), sigma, the overall F-test and the equation."""
    n, dof = len(y), len(y) - p
    fit_r2 = r2(y, fitted)
    rss = float(((y - fitted) ** 2).sum())
    k = p - 1
    f_stat = (fit_r2 / k) / ((1 - fit_r2) / dof) if fit_r2 < 1 else math.inf
    return {
        "y_column": y_name,
        "x_columns": x_names,
        "degree": degree,
        "kind": "polynomial" if len(x_names) == 1 and degree > 1 else "linear",
        "coefficients": coefs,
        "equation": equation(y_name, x_names, coefs, degree),
        "r2": fit_r2,
        "adj_r2": 1 - (1 - fit_r2) * (n - 1) / dof,
        "sigma": math.sqrt(rss / dof),
        "rss": rss,
        "df_resid": dof,
        "f_statistic": float(f_stat) if math.isfinite(f_stat) else None,
        "f_p_value": f_sf(f_stat, k, dof) if math.isfinite(f_stat) else 0.0,
    }


def analyze(table: Table, degree: int = 1, x_columns: list[str] | None = None, y_column: str | None = None) -> dict:
    """Fit the regression, compute the residuals, the four diagnostics and the plot data."""
    y_name, x_names = _columns(table, degree, x_columns, y_column)
    y, x, p = _data(table, y_name, x_names, degree)
    center, scale = x.mean(axis=0), x.std(axis=0)
    a = design(x, degree, center, scale)
    if np.linalg.matrix_rank(a) < a.shape[1]:
        raise ModelSpecError("the x columns are collinear (one is a combination of the others); drop one")
    coef_z = lstsq(a, y)
    fitted = a @ coef_z
    found = _diagnostics(y, a, fitted, degree)
    curve = _fit_curve(x, y, coef_z, degree, center, scale) if len(x_names) == 1 else None
    coefs = coefficients_in_x(coef_z, degree, center, scale)
    return {
        "columns": table.columns,
        "n": len(y),
        "model": _model(y, fitted, p, y_name, x_names, coefs, degree),
        "observed": y.tolist(),
        "fitted": fitted.tolist(),
        "residuals": (y - fitted).tolist(),
        "diagnostics": found,
        "problems": [k for k, d in found.items() if d["flag"]],
        "alpha": dg.ALPHA,
        "plots": _plots(x, y, fitted, x_names, curve),
    }
