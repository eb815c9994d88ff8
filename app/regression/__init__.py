"""Residual analysis of a regression (chapter 5.1.2), with numpy only.

Fit y on x (a polynomial of degree 1..5 in one column, or a linear model in several), take the
residuals e = observed - fitted, and run four diagnostics, each with its number and a verdict in
plain words: normality (Jarque-Bera), constant variance (Breusch-Pagan, Koenker's n R^2 form),
missed curvature (Ramsey's RESET F-test) and independence (Durbin-Watson). The p-values come from
special functions written here, so the server needs no scipy. The result also carries the data of
the chapter's three residual plots (against fitted values, an independent variable and
observation order) and a normal Q-Q plot.

- ``table``: a CSV upload read with messages a person can act on; the generated demo sets.
- ``ols``: least squares in standardized variables; the equation in the user's units.
- ``diagnostics``: the four tests and their verdicts; the Q-Q plot.
- ``special``: regularized gamma and beta, the normal CDF and its inverse.
- ``fit``: ``analyze``, which puts them together.
"""

from app.regression.diagnostics import ALPHA, MAX_PLOT_POINTS
from app.regression.errors import (
    CSVFormatError,
    CSVShapeError,
    CSVTooLargeError,
    ModelSpecError,
    RegressionInputError,
)
from app.regression.fit import MAX_DEGREE, analyze
from app.regression.special import betainc, chi2_sf, f_sf, gammainc_lower, gammainc_upper, norm_cdf, norm_ppf
from app.regression.table import DATASETS, MAX_CSV_BYTES, Table, list_datasets, make_dataset, parse_csv

__all__ = [
    "ALPHA",
    "DATASETS",
    "MAX_CSV_BYTES",
    "MAX_DEGREE",
    "MAX_PLOT_POINTS",
    "CSVFormatError",
    "CSVShapeError",
    "CSVTooLargeError",
    "ModelSpecError",
    "RegressionInputError",
    "Table",
    "analyze",
    "betainc",
    "chi2_sf",
    "f_sf",
    "gammainc_lower",
    "gammainc_upper",
    "list_datasets",
    "make_dataset",
    "norm_cdf",
    "norm_ppf",
    "parse_csv",
]
