"""The four diagnostics of the residuals, each a number, a p-value where one exists, and a verdict in words.

Normality (Jarque-Bera), constant variance (Breusch-Pagan, Koenker's n R^2 form), missed
curvature (Ramsey's RESET F-test) and independence (Durbin-Watson), plus the normal Q-Q plot.
"""

from __future__ import annotations

import numpy as np

from app.regression.ols import lstsq
from app.regression.ols import r2 as fit_r2
from app.regression.special import chi2_sf, f_sf, norm_ppf

ALPHA = 0.05  # significance level of every verdict
MAX_DEGREE = 5
MAX_PLOT_POINTS = 5_000  # plots of larger data show an evenly spaced subset (the tests use every row)
DW_LOW, DW_HIGH = 1.5, 2.5  # rule of thumb: outside this band the residuals are autocorrelated


def jarque_bera(e: np.ndarray) -> dict:
    """Normality of the residuals: JB = n/6 (S^2 + (K-3)^2/4), chi-square with 2 dof."""
    n = len(e)
    d = e - e.mean()
    m2 = float((d**2).mean())
    if m2 <= 0:
        return {"statistic": 0.0, "p_value": 1.0, "skewness": 0.0, "kurtosis": 3.0}
    s = float((d**3).mean()) / m2**1.5
    k = float((d**4).mean()) / m2**2
    jb = n / 6.0 * (s * s + (k - 3.0) ** 2 / 4.0)
    return {"statistic": jb, "p_value": chi2_sf(jb, 2), "skewness": s, "kurtosis": k}


def breusch_pagan(e: np.ndarray, regressors: np.ndarray) -> dict:
    """Constant variance: LM = n R^2 of e^2 on the regressors (with intercept), chi-square with k dof."""
    n = len(e)
    z = np.column_stack([np.ones(n), regressors])
    u = e**2
    coef = lstsq(z, u)
    r2 = fit_r2(u, z @ coef)
    k = regressors.shape[1]
    lm = n * r2
    return {"statistic": lm, "p_value": chi2_sf(lm, k), "df": k, "r2": r2}


def reset_test(y: np.ndarray, design: np.ndarray, fitted: np.ndarray, powers: int = 3) -> dict | None:
    """Missed curvature: Ramsey's RESET, an F-test of fitted^2..fitted^powers added to the model."""
    n, p = design.shape
    sd = fitted.std()
    if sd == 0:
        return None
    f = (fitted - fitted.mean()) / sd  # same span as fitted^k together with the intercept and fitted
    extra = np.column_stack([f**k for k in range(2, powers + 1)])
    full = np.column_stack([design, extra])
    q = extra.shape[1]
    df2 = n - p - q
    if df2 < 1:
        return None
    rss_r = float(((y - fitted) ** 2).sum())
    coef = lstsq(full, y)
    rss_u = float(((y - full @ coef) ** 2).sum())
    if rss_u <= 0:
        return None
    stat = max(0.0, (rss_r - rss_u) / q / (rss_u / df2))
    return {"statistic": stat, "p_value": f_sf(stat, q, df2), "df1": q, "df2": df2}


def durbin_watson(e: np.ndarray) -> float:
    """Autocorrelation in observation order: sum of squared successive differences over sum of squares."""
    ss = float((e**2).sum())
    return float((np.diff(e) ** 2).sum()) / ss if ss > 0 else 2.0


def plot_index(n: int, limit: int = MAX_PLOT_POINTS) -> np.ndarray:
    """Rows to draw: all of them, or ``limit`` evenly spaced ones (first and last included)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def qq_points(e: np.ndarray, limit: int = MAX_PLOT_POINTS) -> dict:
    """Normal Q-Q plot data: Blom's plotting positions (i - 3/8)/(n + 1/4) against sorted standardized residuals."""
    n = len(e)
    sd = float(e.std(ddof=1)) if n > 1 else 0.0
    sample = np.sort((e - e.mean()) / sd) if sd > 0 else np.zeros(n)
    probs = (np.arange(1, n + 1) - 0.375) / (n + 0.25)
    keep = plot_index(n, limit)  # evenly spaced order statistics keep the shape of the plot
    theo = [norm_ppf(float(p)) for p in probs[keep]]
    return {"theoretical": theo, "sample": sample[keep].tolist(), "probabilities": probs[keep].tolist()}


def _verdict(flag: bool, bad: str, good: str) -> str:
    return bad if flag else good


def normality(e: np.ndarray) -> dict:
    """Jarque-Bera with its verdict."""
    jb = jarque_bera(e)
    flag = jb["p_value"] < ALPHA
    return {
        "title": "Are the residuals roughly normal?",
        "test": "Jarque-Bera",
        "statistic": jb["statistic"],
        "p_value": jb["p_value"],
        "df": 2,
        "details": {"skewness": jb["skewness"], "kurtosis": jb["kurtosis"], "excess_kurtosis": jb["kurtosis"] - 3},
        "flag": flag,
        "verdict": _verdict(
            flag,
            f"Probably not normal (p = {jb['p_value']:.3g} < {ALPHA}): skewness {jb['skewness']:.2f}, "
            f"excess kurtosis {jb['kurtosis'] - 3:.2f}. Look at the Q-Q plot: points leave the line at the ends.",
            f"No evidence against normality (p = {jb['p_value']:.3g}): the Q-Q points should follow the line.",
        ),
    }


def constant_variance(e: np.ndarray, regressors: np.ndarray) -> dict:
    """Breusch-Pagan with its verdict."""
    bp = breusch_pagan(e, regressors)
    flag = bp["p_value"] < ALPHA
    return {
        "title": "Is the spread of the residuals constant?",
        "test": "Breusch-Pagan (n R\u00b2 of e\u00b2 on the regressors)",
        "statistic": bp["statistic"],
        "p_value": bp["p_value"],
        "df": bp["df"],
        "details": {"r2_of_squared_residuals": bp["r2"]},
        "flag": flag,
        "verdict": _verdict(
            flag,
            f"The spread changes with the regressors (p = {bp['p_value']:.3g}): the residuals fan out. "
            "Standard errors from an ordinary fit are not to be trusted; try transforming y (e.g. log).",
            f"No evidence that the spread changes (p = {bp['p_value']:.3g}): a band of even width.",
        ),
    }


def independence(e: np.ndarray) -> dict:
    """Durbin-Watson with its verdict (a rule-of-thumb band, no p-value)."""
    dw = durbin_watson(e)
    if dw < DW_LOW:
        verdict = (
            f"Positive autocorrelation (DW = {dw:.2f} < {DW_LOW}): neighbours in row order move together; "
            "the residual-vs-order plot shows runs. A variable tied to time or order is missing."
        )
    elif dw > DW_HIGH:
        verdict = f"Negative autocorrelation (DW = {dw:.2f} > {DW_HIGH}): residuals flip sign row after row."
    else:
        verdict = f"No sign of autocorrelation (DW = {dw:.2f}; by rule of thumb {DW_LOW} to {DW_HIGH} is fine)."
    return {
        "title": "Are successive residuals independent?",
        "test": "Durbin-Watson (observation order)",
        "statistic": dw,
        "p_value": None,
        "df": None,
        "details": {"band": [DW_LOW, DW_HIGH], "lag1_autocorrelation_estimate": 1 - dw / 2},
        "flag": not DW_LOW <= dw <= DW_HIGH,
        "verdict": verdict,
    }


def curvature(reset: dict | None, degree: int) -> dict:
    """RESET with its verdict, or a note that there are too few rows to test."""
    base = {"title": "Did the model miss a curve?", "test": "Ramsey RESET (F-test on fitted\u00b2 and fitted\u00b3)"}
    if reset is None:
        return {
            **base,
            "statistic": None,
            "p_value": None,
            "df": None,
            "details": {},
            "flag": False,
            "verdict": "Not enough rows to test for curvature with this model.",
        }
    flag = reset["p_value"] < ALPHA
    hint = "raise the degree" if degree < MAX_DEGREE else "transform x or y"
    return {
        **base,
        "statistic": reset["statistic"],
        "p_value": reset["p_value"],
        "df": [reset["df1"], reset["df2"]],
        "details": {},
        "flag": flag,
        "verdict": _verdict(
            flag,
            f"A curve was missed (p = {reset['p_value']:.3g}): powers of the fitted values still explain y. "
            f"The residuals bend against the fitted values; {hint}.",
            f"No evidence of a missed curve (p = {reset['p_value']:.3g}).",
        ),
    }
