"""Residual analysis of a regression (chapter 5.1.2), with numpy only.

Fit y on x (a polynomial of degree 1..5 in one column, or a linear model in several), take the
residuals e = observed - fitted, and run four diagnostics, each with its number and a verdict in
plain words: normality (Jarque-Bera), constant variance (Breusch-Pagan, Koenker's n R^2 form),
missed curvature (Ramsey's RESET F-test) and independence (Durbin-Watson). The p-values come from
special functions written here (regularized gamma and incomplete beta by continued fractions, the
inverse normal CDF by Acklam's algorithm), so the server needs no scipy. The result also carries
the data of the chapter's three residual plots (against fitted values, an independent variable and
observation order) and a normal Q-Q plot.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # significance level of every verdict
MAX_DEGREE = 5
MIN_ROWS = 8
MAX_COLUMNS = 10
MAX_CSV_BYTES = 1024 * 1024
MAX_ROWS = 50_000  # the JSON answer carries every residual
MAX_PLOT_POINTS = 5_000  # plots of larger data show an evenly spaced subset (the tests use every row)
DW_LOW, DW_HIGH = 1.5, 2.5  # rule of thumb: outside this band the residuals are autocorrelated


# ---------------------------------------------------------------- errors


class RegressionInputError(ValueError):
    """Input a person can fix: the message says what is wrong and how."""


class CSVTooLargeError(RegressionInputError):
    """The CSV file is over the size limit."""


class CSVFormatError(RegressionInputError):
    """The CSV file cannot be read as a table of numbers with a header."""


class CSVShapeError(RegressionInputError):
    """The table has too few rows or too many or too few columns."""


class ModelSpecError(RegressionInputError):
    """The requested fit does not fit the data (unknown column, bad degree, unknown data set)."""


# ---------------------------------------------------------------- special functions


def _gamma_series(a: float, x: float) -> float:
    """Lower regularized gamma P(a, x) by its power series (good for x < a + 1)."""
    term = total = 1.0 / a
    ap = a
    for _ in range(10_000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_cf(a: float, x: float) -> float:
    """Upper regularized gamma Q(a, x) by Lentz's continued fraction (good for x >= a + 1)."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h * math.exp(-x + a * math.log(x) - math.lgamma(a))


def gammainc_upper(a: float, x: float) -> float:
    """Upper regularized incomplete gamma function Q(a, x) = 1 - P(a, x)."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, x))
    return _gamma_cf(a, x)


def gammainc_lower(a: float, x: float) -> float:
    """Lower regularized incomplete gamma function P(a, x)."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 0.0
    if x < a + 1.0:
        return _gamma_series(a, x)
    return 1.0 - _gamma_cf(a, x)


def chi2_sf(x: float, k: float) -> float:
    """P(X > x) for X chi-square with k degrees of freedom (for k = 2 this is exp(-x/2))."""
    return gammainc_upper(k / 2.0, x / 2.0)


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if a <= 0 or b <= 0:
        raise ValueError("a and b must be positive")
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for F with (d1, d2) degrees of freedom."""
    if f <= 0:
        return 1.0
    return betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))


def norm_cdf(x: float) -> float:
    """Standard normal cumulative distribution function."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01)
_A6 = 2.506628277459239e00
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
)
_C6 = 2.938163982698783e00
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def norm_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation plus one Halley step)."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        raise ValueError("p must lie in [0, 1]")
    if p > 0.5:  # by symmetry; 1 - p is exact here, and the lower tail keeps the refinement accurate
        return -norm_ppf(1.0 - p)
    p_low = 0.02425
    if p < p_low:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C6) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A6)
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    # One Halley step brings the relative error from about 1e-9 to machine precision.
    e = norm_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Table:
    """A numeric table with named columns."""

    columns: list[str]
    values: np.ndarray  # (n_rows, n_columns) float64

    def column(self, name: str) -> np.ndarray:
        """One column by name."""
        return self.values[:, self.columns.index(name)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_csv(data: bytes | str, max_bytes: int = MAX_CSV_BYTES) -> Table:
    """Read a CSV file with a header row and numeric columns; raise a RegressionInputError saying what is wrong."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > max_bytes:
        raise CSVTooLargeError(
            f"the file is larger than {max_bytes / 2**20:g} MB, the limit for a CSV upload; "
            "upload a sample of the rows instead"
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CSVFormatError("the file is not UTF-8 text; save it as a plain CSV file (UTF-8)") from exc
    else:
        text = data.lstrip("\ufeff")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise CSVFormatError("the file is empty; it needs a header row (e.g. x,y) and at least 8 rows of numbers")
    header_line = lines[0]
    delimiter = max((",", ";", "\t"), key=header_line.count)
    if header_line.count(delimiter) == 0:
        delimiter = ","
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    if len(header) > MAX_COLUMNS:
        raise CSVShapeError(f"the file has {len(header)} columns; at most {MAX_COLUMNS} are allowed")
    if len(header) < 2:
        raise CSVShapeError("the file has one column; it needs at least two (one x and one y), separated by commas")
    if all(_is_number(h) for h in header):
        raise CSVFormatError(
            "the first row is all numbers: the first row must be a header naming the columns, e.g. x,y"
        )
    for i, h in enumerate(header):
        if not h:
            raise CSVFormatError(f"column {i + 1} has an empty name in the header row")
        if _is_number(h):
            raise CSVFormatError(f"the header names column {i + 1} {h!r}, which is a number; give it a name")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CSVFormatError(f"the header repeats the column name {dupes[0]!r}; each column needs its own name")
    body = rows[1:]
    if len(body) < MIN_ROWS:
        raise CSVShapeError(f"the file has {len(body)} data rows; a residual analysis needs at least {MIN_ROWS}")
    if len(body) > MAX_ROWS:
        raise CSVShapeError(f"the file has {len(body):,} data rows; at most {MAX_ROWS:,} are allowed, upload a sample")
    values = np.empty((len(body), len(header)))
    for r, row in enumerate(body):
        line_no = r + 2
        if len(row) != len(header):
            raise CSVFormatError(f"line {line_no} has {len(row)} values but the header names {len(header)} columns")
        for c, cell in enumerate(row):
            cell = cell.strip()
            try:
                v = float(cell)
            except ValueError:
                shown = cell if len(cell) <= 20 else cell[:20] + "..."
                what = "is empty" if not cell else f"is {shown!r}, which is not a number"
                raise CSVFormatError(f"line {line_no}, column {header[c]!r} {what}") from None
            if not math.isfinite(v):
                raise CSVFormatError(
                    f"line {line_no}, column {header[c]!r} is {cell!r}; only finite numbers are allowed"
                )
            values[r, c] = v
    return Table(header, values)


DATASETS: dict[str, dict] = {
    "linear": {
        "description": "y = 2 + 1.5 x plus normal noise: a straight line fits; the residuals are a shapeless band.",
        "shows": "none",
        "default_degree": 1,
    },
    "curved": {
        "description": "y grows with x squared, but a straight line is fitted: the residuals smile (missed curvature).",
        "shows": "curvature",
        "default_degree": 1,
    },
    "heteroscedastic": {
        "description": "y = 3 + 2 x with noise whose spread grows with x: the residuals fan out "
        "(non-constant variance).",
        "shows": "constant_variance",
        "default_degree": 1,
    },
    "autocorrelated": {
        "description": "y = 1 + 0.8 x with AR(1) errors (phi = 0.85) in observation order: neighbouring residuals "
        "move together (autocorrelation).",
        "shows": "independence",
        "default_degree": 1,
    },
}


def make_dataset(name: str, n: int = 80, seed: int = 0) -> Table:
    """A generated demo data set (deterministic by seed) that shows one problem, or none."""
    if name not in DATASETS:
        raise ModelSpecError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    rng = np.random.default_rng([seed, list(DATASETS).index(name)])
    if name == "linear":
        x = rng.uniform(0, 10, n)
        y = 2.0 + 1.5 * x + rng.normal(0, 1.0, n)
    elif name == "curved":
        x = rng.uniform(0, 10, n)
        y = 1.0 + 0.5 * x + 0.35 * (x - 5.0) ** 2 + rng.normal(0, 0.8, n)
    elif name == "heteroscedastic":
        x = rng.uniform(0, 10, n)
        y = 3.0 + 2.0 * x + rng.normal(0, 1.0, n) * (0.2 + 0.45 * x)
    else:
        x = rng.uniform(0, 10, n)  # x is not time: rows are in time order, x is not
        e = np.empty(n)
        e[0] = rng.normal(0, 1.0)
        for t in range(1, n):
            e[t] = 0.85 * e[t - 1] + rng.normal(0, 1.0)
        y = 1.0 + 0.8 * x + e
    return Table(["x", "y"], np.column_stack([x, y]))


def list_datasets() -> list[dict]:
    """The generated data sets with a one-line description and the diagnostic each should trigger."""
    return [{"name": k, **v} for k, v in DATASETS.items()]


# ---------------------------------------------------------------- fitting


def _lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with column scaling (as numpy.polyfit does) for better conditioning."""
    scale = np.sqrt((a * a).sum(axis=0))
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq(a / scale, y, rcond=None)
    return coef / scale


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - fitted) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def _design(x: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Columns [1, z, z^2, ..] for one x, or [1, z_1, .., z_k] for several, with z standardized."""
    z = (x - center) / scale
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0] ** p for p in range(degree + 1)])
    return np.column_stack([np.ones(len(z)), z])


def _coefficients_in_x(coef_z: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray) -> list[float]:
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


def _equation(y_name: str, x_names: list[str], coefs: list[float], degree: int) -> str:
    if len(x_names) == 1:
        terms = ["", x_names[0], *(f"{x_names[0]}^{p}" for p in range(2, degree + 1))]
    else:
        terms = ["", *x_names]
    parts = [_fmt(coefs[0])]
    for c, t in zip(coefs[1:], terms[1:], strict=True):
        parts.append(f"{'-' if c < 0 else '+'} {_fmt(abs(c))} {t}")
    return f"{y_name} = " + " ".join(parts)


def _verdict(flag: bool, bad: str, good: str) -> str:
    return bad if flag else good


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


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
    coef = _lstsq(z, u)
    r2 = _r2(u, z @ coef)
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
    coef = _lstsq(full, y)
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


def analyze(
    table: Table,
    degree: int = 1,
    x_columns: list[str] | None = None,
    y_column: str | None = None,
) -> dict:
    """Fit the regression, compute the residuals, the four diagnostics and the plot data."""
    if not isinstance(degree, int) or not 1 <= degree <= MAX_DEGREE:
        raise ModelSpecError(f"degree must be a whole number from 1 to {MAX_DEGREE}, got {degree!r}")
    cols = table.columns
    y_name = y_column or cols[-1]
    if y_name not in cols:
        raise ModelSpecError(f"there is no column {y_name!r}; the columns are {', '.join(cols)}")
    if x_columns:
        x_names = list(dict.fromkeys(x_columns))
    else:
        x_names = [next(c for c in cols if c != y_name)]
    for name in x_names:
        if name not in cols:
            raise ModelSpecError(f"there is no column {name!r}; the columns are {', '.join(cols)}")
        if name == y_name:
            raise ModelSpecError(f"{name!r} is the y column; it cannot also be an x column")
    if len(x_names) > 1 and degree != 1:
        raise ModelSpecError("with several x columns only a linear fit (degree 1) is offered; choose one x column")
    y = table.column(y_name)
    x = np.column_stack([table.column(c) for c in x_names])
    n = len(y)
    if np.ptp(y) == 0:
        raise ModelSpecError(f"column {y_name!r} has the same value in every row; there is nothing to explain")
    for j, name in enumerate(x_names):
        if np.ptp(x[:, j]) == 0:
            raise ModelSpecError(f"column {name!r} has the same value in every row; it cannot explain y")
        if len(x_names) == 1 and len(np.unique(x[:, j])) <= degree:
            raise ModelSpecError(
                f"column {name!r} has only {len(np.unique(x[:, j]))} distinct values; "
                f"a degree-{degree} polynomial needs at least {degree + 1}"
            )
    p = (degree + 1) if len(x_names) == 1 else len(x_names) + 1
    if n - p < 3:
        raise ModelSpecError(f"{n} rows are too few for {p} coefficients; lower the degree or add rows")
    center, scale = x.mean(axis=0), x.std(axis=0)
    design = _design(x, degree, center, scale)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ModelSpecError("the x columns are collinear (one is a combination of the others); drop one")
    coef_z = _lstsq(design, y)
    fitted = design @ coef_z
    e = y - fitted  # observed minus fitted
    coefs = _coefficients_in_x(coef_z, degree, center, scale)
    r2 = _r2(y, fitted)
    dof = n - p
    rss = float((e**2).sum())
    sigma = math.sqrt(rss / dof)
    k = p - 1
    f_stat = (r2 / k) / ((1 - r2) / dof) if r2 < 1 else math.inf
    regressors = design[:, 1:]

    exact = rss <= 1e-24 * float(((y - y.mean()) ** 2).sum())  # residuals are rounding noise
    jb = jarque_bera(e)
    bp = breusch_pagan(e, regressors)
    reset = reset_test(y, design, fitted)
    dw = durbin_watson(e)
    jb_flag = jb["p_value"] < ALPHA
    bp_flag = bp["p_value"] < ALPHA
    dw_flag = not DW_LOW <= dw <= DW_HIGH
    diagnostics = {
        "normality": {
            "title": "Are the residuals roughly normal?",
            "test": "Jarque-Bera",
            "statistic": jb["statistic"],
            "p_value": jb["p_value"],
            "df": 2,
            "details": {"skewness": jb["skewness"], "kurtosis": jb["kurtosis"], "excess_kurtosis": jb["kurtosis"] - 3},
            "flag": jb_flag,
            "verdict": _verdict(
                jb_flag,
                f"Probably not normal (p = {jb['p_value']:.3g} < {ALPHA}): skewness {jb['skewness']:.2f}, "
                f"excess kurtosis {jb['kurtosis'] - 3:.2f}. Look at the Q-Q plot: points leave the line at the ends.",
                f"No evidence against normality (p = {jb['p_value']:.3g}): the Q-Q points should follow the line.",
            ),
        },
        "constant_variance": {
            "title": "Is the spread of the residuals constant?",
            "test": "Breusch-Pagan (n R\u00b2 of e\u00b2 on the regressors)",
            "statistic": bp["statistic"],
            "p_value": bp["p_value"],
            "df": bp["df"],
            "details": {"r2_of_squared_residuals": bp["r2"]},
            "flag": bp_flag,
            "verdict": _verdict(
                bp_flag,
                f"The spread changes with the regressors (p = {bp['p_value']:.3g}): the residuals fan out. "
                "Standard errors from an ordinary fit are not to be trusted; try transforming y (e.g. log).",
                f"No evidence that the spread changes (p = {bp['p_value']:.3g}): a band of even width.",
            ),
        },
        "curvature": _curvature(reset, degree),
        "independence": {
            "title": "Are successive residuals independent?",
            "test": "Durbin-Watson (observation order)",
            "statistic": dw,
            "p_value": None,
            "df": None,
            "details": {"band": [DW_LOW, DW_HIGH], "lag1_autocorrelation_estimate": 1 - dw / 2},
            "flag": dw_flag,
            "verdict": (
                f"Positive autocorrelation (DW = {dw:.2f} < {DW_LOW}): neighbours in row order move together; "
                "the residual-vs-order plot shows runs. A variable tied to time or order is missing."
                if dw < DW_LOW
                else f"Negative autocorrelation (DW = {dw:.2f} > {DW_HIGH}): residuals flip sign row after row."
                if dw > DW_HIGH
                else f"No sign of autocorrelation (DW = {dw:.2f}; by rule of thumb {DW_LOW} to {DW_HIGH} is fine)."
            ),
        },
    }
    if exact:
        for d in diagnostics.values():
            d.update(
                statistic=None,
                p_value=None,
                flag=False,
                verdict="The fit is exact: the residuals are zero up to rounding, so there is no pattern to test.",
            )
    idx = plot_index(n)
    e_shown = e[idx].tolist()
    plots = {
        "rows": (idx + 1).tolist(),  # 1-based row numbers of the points drawn
        "shown": len(idx),
        "total": n,
        "fitted": {"x": fitted[idx].tolist(), "y": e_shown, "label": "fitted value"},
        "x": [{"name": name, "x": x[idx, j].tolist(), "y": e_shown} for j, name in enumerate(x_names)],
        "order": {"x": (idx + 1).tolist(), "y": e_shown, "label": "observation order"},
        "qq": qq_points(e),
        "fit": _fit_curve(x[idx], y[idx], coef_z, degree, center, scale) if len(x_names) == 1 else None,
    }
    return {
        "columns": cols,
        "n": n,
        "model": {
            "y_column": y_name,
            "x_columns": x_names,
            "degree": degree,
            "kind": "polynomial" if len(x_names) == 1 and degree > 1 else "linear",
            "coefficients": coefs,
            "equation": _equation(y_name, x_names, coefs, degree),
            "r2": r2,
            "adj_r2": 1 - (1 - r2) * (n - 1) / dof,
            "sigma": sigma,
            "rss": rss,
            "df_resid": dof,
            "f_statistic": _finite(f_stat),
            "f_p_value": f_sf(f_stat, k, dof) if math.isfinite(f_stat) else 0.0,
        },
        "observed": y.tolist(),
        "fitted": fitted.tolist(),
        "residuals": e.tolist(),
        "diagnostics": diagnostics,
        "problems": [k for k, d in diagnostics.items() if d["flag"]],
        "alpha": ALPHA,
        "plots": plots,
    }


def _curvature(reset: dict | None, degree: int) -> dict:
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


def _fit_curve(
    x: np.ndarray, y: np.ndarray, coef_z: np.ndarray, degree: int, center: np.ndarray, scale: np.ndarray
) -> dict:
    grid = np.linspace(x[:, 0].min(), x[:, 0].max(), 200)[:, None]
    curve = _design(grid, degree, center, scale) @ coef_z
    return {"x": x[:, 0].tolist(), "y": y.tolist(), "curve_x": grid[:, 0].tolist(), "curve_y": curve.tolist()}
