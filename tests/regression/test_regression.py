"""Residual analysis (app.regression) against independent computations with numpy and scipy, and its API."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.special
import scipy.stats
from fastapi.testclient import TestClient

from app import regression as rg
from app.config import Settings
from app.main import create_app

# ---------------------------------------------------------------- special functions


@pytest.mark.parametrize("a", [0.5, 1.0, 1.5, 2.0, 3.5, 10.0, 60.0])
@pytest.mark.parametrize("x", [1e-3, 0.3, 1.0, 2.5, 7.0, 20.0, 90.0])
def test_regularized_gamma(a: float, x: float) -> None:
    assert rg.gammainc_upper(a, x) == pytest.approx(scipy.special.gammaincc(a, x), rel=1e-9, abs=1e-15)
    assert rg.gammainc_lower(a, x) == pytest.approx(scipy.special.gammainc(a, x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_chi2_sf(k: int) -> None:
    for x in (0.0, 0.1, 1.0, 3.84, 10.0, 50.0):
        assert rg.chi2_sf(x, k) == pytest.approx(scipy.stats.chi2.sf(x, k), rel=1e-9, abs=1e-15)
    assert rg.chi2_sf(4.2, 2) == pytest.approx(math.exp(-2.1), rel=1e-12)


@pytest.mark.parametrize("a", [0.5, 1.0, 2.5, 10.0, 40.0])
@pytest.mark.parametrize("b", [0.5, 1.0, 3.0, 38.0])
def test_incomplete_beta(a: float, b: float) -> None:
    for x in (1e-4, 0.05, 0.3, 0.5, 0.77, 0.999):
        assert rg.betainc(a, b, x) == pytest.approx(scipy.special.betainc(a, b, x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("d1", "d2"), [(1, 10), (2, 76), (3, 30), (5, 5), (2, 1000)])
def test_f_sf(d1: int, d2: int) -> None:
    for f in (0.0, 0.2, 1.0, 3.1, 12.0, 400.0):
        assert rg.f_sf(f, d1, d2) == pytest.approx(scipy.stats.f.sf(f, d1, d2), rel=1e-8, abs=1e-15)


def test_norm_ppf() -> None:
    for p in (1e-12, 1e-6, 0.001, 0.02, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.95, 0.99, 0.999999):
        assert rg.norm_ppf(p) == pytest.approx(scipy.stats.norm.ppf(p), rel=1e-12, abs=1e-12)
    assert rg.norm_ppf(0.0) == -math.inf and rg.norm_ppf(1.0) == math.inf
    with pytest.raises(ValueError):
        rg.norm_ppf(1.5)


# ---------------------------------------------------------------- the fit


def _table(x: np.ndarray, y: np.ndarray) -> rg.Table:
    return rg.Table(["x", "y"], np.column_stack([x, y]))


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_polynomial_fit_matches_polyfit(degree: int) -> None:
    t = rg.make_dataset("curved")
    x, y = t.column("x"), t.column("y")
    r = rg.analyze(t, degree=degree)
    ref = np.polyfit(x, y, degree)
    fitted = np.polyval(ref, x)
    assert np.allclose(r["model"]["coefficients"], ref[::-1], rtol=1e-6, atol=1e-8)
    assert np.allclose(r["fitted"], fitted, rtol=1e-9, atol=1e-9)
    assert np.allclose(r["residuals"], y - fitted, atol=1e-9)  # observed minus fitted
    ss_res, ss_tot = ((y - fitted) ** 2).sum(), ((y - y.mean()) ** 2).sum()
    assert r["model"]["r2"] == pytest.approx(1 - ss_res / ss_tot, rel=1e-10)
    assert r["model"]["sigma"] == pytest.approx(math.sqrt(ss_res / (len(y) - degree - 1)), rel=1e-10)


def test_linear_fit_matches_linregress() -> None:
    t = rg.make_dataset("linear")
    r = rg.analyze(t)
    lr = scipy.stats.linregress(t.column("x"), t.column("y"))
    assert r["model"]["coefficients"] == pytest.approx([lr.intercept, lr.slope], rel=1e-10)
    assert r["model"]["r2"] == pytest.approx(lr.rvalue**2, rel=1e-10)
    assert r["model"]["f_p_value"] == pytest.approx(lr.pvalue, rel=1e-6, abs=1e-300)


def test_several_x_columns_match_lstsq() -> None:
    rng = np.random.default_rng(3)
    n = 50
    a, b = rng.uniform(0, 5, n), rng.normal(10, 2, n)
    y = 1 + 2 * a - 0.5 * b + rng.normal(0, 0.3, n)
    t = rg.Table(["a", "b", "y"], np.column_stack([a, b, y]))
    r = rg.analyze(t, x_columns=["a", "b"], y_column="y")
    design = np.column_stack([np.ones(n), a, b])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert np.allclose(r["model"]["coefficients"], coef, rtol=1e-9)
    assert np.allclose(r["residuals"], y - design @ coef, atol=1e-9)
    assert [p["name"] for p in r["plots"]["x"]] == ["a", "b"]
    assert r["plots"]["fit"] is None
    # Breusch-Pagan with two regressors has two degrees of freedom
    assert r["diagnostics"]["constant_variance"]["df"] == 2


# ---------------------------------------------------------------- diagnostics, computed by hand


@pytest.fixture(scope="module", params=[("linear", 1), ("curved", 1), ("curved", 3), ("heteroscedastic", 2)])
def case(request: pytest.FixtureRequest) -> tuple[rg.Table, int, dict]:
    name, degree = request.param
    t = rg.make_dataset(name)
    return t, degree, rg.analyze(t, degree=degree)


def test_jarque_bera(case: tuple) -> None:
    _, _, r = case
    ref = scipy.stats.jarque_bera(np.array(r["residuals"]))
    d = r["diagnostics"]["normality"]
    assert d["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    assert d["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    e = np.array(r["residuals"])
    assert d["details"]["skewness"] == pytest.approx(scipy.stats.skew(e), rel=1e-9)
    assert d["details"]["kurtosis"] == pytest.approx(scipy.stats.kurtosis(e, fisher=False), rel=1e-9)


def test_breusch_pagan(case: tuple) -> None:
    t, degree, r = case
    x = t.column("x")
    e = np.array(r["residuals"])
    z = np.column_stack([x**p for p in range(degree + 1)])
    u = e**2
    coef, *_ = np.linalg.lstsq(z, u, rcond=None)
    r2 = 1 - ((u - z @ coef) ** 2).sum() / ((u - u.mean()) ** 2).sum()
    lm = len(e) * r2
    d = r["diagnostics"]["constant_variance"]
    assert d["statistic"] == pytest.approx(lm, rel=1e-6)
    assert d["df"] == degree
    assert d["p_value"] == pytest.approx(scipy.stats.chi2.sf(lm, degree), rel=1e-6)


def test_reset(case: tuple) -> None:
    t, degree, r = case
    x, y = t.column("x"), t.column("y")
    fitted = np.array(r["fitted"])
    base = np.column_stack([x**p for p in range(degree + 1)])
    full = np.column_stack([base, fitted**2, fitted**3])
    rss_r = ((y - fitted) ** 2).sum()
    coef, *_ = np.linalg.lstsq(full, y, rcond=None)
    rss_u = ((y - full @ coef) ** 2).sum()
    df2 = len(y) - full.shape[1]
    f = (rss_r - rss_u) / 2 / (rss_u / df2)
    d = r["diagnostics"]["curvature"]
    assert d["df"] == [2, df2]
    assert d["statistic"] == pytest.approx(f, rel=1e-5, abs=1e-8)
    assert d["p_value"] == pytest.approx(scipy.stats.f.sf(f, 2, df2), rel=1e-5, abs=1e-12)


def test_durbin_watson_and_qq(case: tuple) -> None:
    _, _, r = case
    e = np.array(r["residuals"])
    d = r["diagnostics"]["independence"]
    assert d["statistic"] == pytest.approx((np.diff(e) ** 2).sum() / (e**2).sum(), rel=1e-12)
    qq = r["plots"]["qq"]
    n = len(e)
    probs = (np.arange(1, n + 1) - 0.375) / (n + 0.25)
    assert np.allclose(qq["theoretical"], scipy.stats.norm.ppf(probs), rtol=1e-12, atol=1e-12)
    assert np.allclose(qq["sample"], np.sort((e - e.mean()) / e.std(ddof=1)))


def test_plot_data_has_the_three_axes(case: tuple) -> None:
    t, _, r = case
    p = r["plots"]
    n = len(r["residuals"])
    assert p["fitted"]["x"] == r["fitted"] and p["fitted"]["y"] == r["residuals"]
    assert p["x"][0]["name"] == "x" and np.allclose(p["x"][0]["x"], t.column("x"))
    assert p["order"]["x"] == list(range(1, n + 1))
    assert len(p["fit"]["curve_x"]) == len(p["fit"]["curve_y"]) == 200


def test_large_data_plots_a_subset_but_tests_every_row() -> None:
    rng = np.random.default_rng(5)
    n = 12_000
    x = rng.uniform(0, 1, n)
    r = rg.analyze(_table(x, 3 * x + rng.normal(0, 0.1, n)))
    p = r["plots"]
    assert len(r["residuals"]) == n and p["total"] == n
    assert p["shown"] == len(p["rows"]) == len(p["fitted"]["x"]) == len(p["qq"]["sample"]) == rg.MAX_PLOT_POINTS
    assert p["rows"][0] == 1 and p["rows"][-1] == n and p["order"]["x"] == p["rows"]
    e = np.array(r["residuals"])
    assert np.allclose(p["order"]["y"], e[np.array(p["rows"]) - 1])
    assert np.allclose(p["qq"]["theoretical"], scipy.stats.norm.ppf(p["qq"]["probabilities"]), atol=1e-12)
    assert r["diagnostics"]["normality"]["statistic"] == pytest.approx(scipy.stats.jarque_bera(e).statistic)


# ---------------------------------------------------------------- demo data sets


def test_datasets_are_deterministic() -> None:
    for name in rg.DATASETS:
        assert np.array_equal(rg.make_dataset(name).values, rg.make_dataset(name).values)
    assert not np.array_equal(rg.make_dataset("linear", seed=1).values, rg.make_dataset("linear").values)


@pytest.mark.parametrize(
    ("name", "degree", "expected"),
    [
        ("linear", 1, []),
        ("curved", 1, ["curvature"]),
        ("curved", 2, []),  # the right degree takes the pattern away
        ("heteroscedastic", 1, ["constant_variance"]),
        ("autocorrelated", 1, ["independence"]),
    ],
)
def test_datasets_trigger_their_verdicts(name: str, degree: int, expected: list[str]) -> None:
    r = rg.analyze(rg.make_dataset(name), degree=degree)
    assert r["problems"] == expected
    for key in expected:
        assert r["diagnostics"][key]["flag"]
    if name == "autocorrelated":
        assert r["diagnostics"]["independence"]["statistic"] < 1.5
        assert "Positive autocorrelation" in r["diagnostics"]["independence"]["verdict"]


def test_every_dataset_names_what_it_shows() -> None:
    for d in rg.list_datasets():
        assert d["shows"] in ("none", "curvature", "constant_variance", "independence")
        assert d["description"]


# ---------------------------------------------------------------- CSV parsing and model errors


GOOD_CSV = "x,y\n" + "\n".join(f"{i},{2 * i + (i % 3)}" for i in range(12))


def test_parse_csv_reads_numbers() -> None:
    t = rg.parse_csv(GOOD_CSV.encode())
    assert t.columns == ["x", "y"] and t.values.shape == (12, 2)
    t = rg.parse_csv("\ufeffa;b;c\n" + "\n".join(f"{i};{i * i};{i + 1.5}" for i in range(9)))
    assert t.columns == ["a", "b", "c"] and t.values[3].tolist() == [3, 9, 4.5]


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", rg.CSVFormatError, "empty"),
        (
            "x,y\n1,2\n" + "3,abc\n" + "5,6\n" * 8,
            rg.CSVFormatError,
            "line 3, column 'y' is 'abc', which is not a number",
        ),
        ("x,y\n" + "1,\n" * 9, rg.CSVFormatError, "is empty"),
        ("x,y\n" + "1,nan\n" * 9, rg.CSVFormatError, "finite"),
        ("x,y\n" + "1,2\n" * 7, rg.CSVShapeError, "7 data rows; a residual analysis needs at least 8"),
        (",".join(f"c{i}" for i in range(11)) + "\n" + ("1," * 10 + "1\n") * 9, rg.CSVShapeError, "11 columns"),
        ("1,2\n" * 12, rg.CSVFormatError, "header"),
        ("x,y\n" + "1,2,3\n" * 9, rg.CSVFormatError, "line 2 has 3 values"),
        ("x,x\n" + "1,2\n" * 9, rg.CSVFormatError, "repeats"),
        ("x\n" + "1\n" * 9, rg.CSVShapeError, "one column"),
        (b"x,y\n" + b"\xff\xfe1,2\n" * 9, rg.CSVFormatError, "UTF-8"),
        ("x,y\n" + "1,2\n" * 300_000, rg.CSVTooLargeError, "1 MB"),
        ("x,y\n" + "1,2\n" * 50_001, rg.CSVShapeError, "at most 50,000"),
    ],
)
def test_parse_csv_errors(data: bytes | str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        rg.parse_csv(data)
    assert issubclass(error, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"degree": 0}, "degree must be"),
        ({"degree": 6}, "degree must be"),
        ({"y_column": "z"}, "no column 'z'"),
        ({"x_columns": ["y"]}, "cannot also be an x column"),
        ({"x_columns": ["x", "c"], "degree": 2}, "only a linear fit"),
        ({"x_columns": ["c"]}, "same value in every row"),
    ],
)
def test_model_errors(kwargs: dict, words: str) -> None:
    t = rg.Table(["x", "c", "y"], np.column_stack([np.arange(10.0), np.ones(10), np.arange(10.0) ** 2]))
    with pytest.raises(rg.ModelSpecError, match=words):
        rg.analyze(t, **kwargs)


def test_exact_fit_and_constant_y() -> None:
    x = np.arange(12.0)
    r = rg.analyze(_table(x, x**2), degree=2)
    assert r["problems"] == [] and r["model"]["r2"] == pytest.approx(1.0)
    assert all("exact" in d["verdict"] and d["p_value"] is None for d in r["diagnostics"].values())
    with pytest.raises(rg.ModelSpecError, match="nothing to explain"):
        rg.analyze(_table(x, np.full(12, 4.0)))


def test_unknown_dataset() -> None:
    with pytest.raises(rg.ModelSpecError, match="unknown data set"):
        rg.make_dataset("nope")


def test_regression_does_not_import_scipy() -> None:
    code = "import sys, app.regression as r; r.analyze(r.make_dataset('curved'))\nassert 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- API


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("regression")
    with TestClient(create_app(Settings(models_dir=tmp, data_dir=tmp, export_on_start=False))) as c:
        yield c


def test_api_datasets(client: TestClient) -> None:
    r = client.get("/api/regression/datasets")
    assert r.status_code == 200
    assert [d["name"] for d in r.json()] == ["linear", "curved", "heteroscedastic", "autocorrelated"]


def test_api_json_dataset(client: TestClient) -> None:
    r = client.post("/api/regression", json={"dataset": "curved", "degree": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == {"kind": "dataset", "name": "curved"}
    assert body["problems"] == ["curvature"]
    assert set(body["diagnostics"]) == {"normality", "constant_variance", "curvature", "independence"}
    assert {"fitted", "x", "order", "qq", "fit", "rows", "shown", "total"} == set(body["plots"])
    assert body["residuals"] == rg.analyze(rg.make_dataset("curved"))["residuals"]


def test_api_multipart_upload(client: TestClient) -> None:
    csv = "a,b,y\n" + "\n".join(f"{i},{(i * 7) % 5},{1 + 2 * i - (i * 7) % 5 + (i % 2) * 0.3}" for i in range(20))
    r = client.post(
        "/api/regression",
        files={"file": ("mine.csv", csv, "text/csv")},
        data={"degree": "1", "x_column": ["a", "b"], "y_column": "y"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == {"kind": "upload", "name": "mine.csv"}
    assert body["model"]["x_columns"] == ["a", "b"] and body["model"]["y_column"] == "y"
    r = client.post("/api/regression", files={"file": ("mine.csv", csv, "text/csv")}, data={"degree": "2"})
    assert r.status_code == 200 and r.json()["model"]["x_columns"] == ["a"]


@pytest.mark.parametrize(
    ("csv", "status", "words"),
    [
        ("x,y\n" + "1,2\n" * 3, 400, "needs at least 8"),
        ("x,y\n" + "1,oops\n" * 9, 400, "not a number"),
        ("1,2\n" * 9, 400, "header"),
        (",".join(f"c{i}" for i in range(12)) + "\n" + ("1," * 11 + "1\n") * 9, 400, "at most 10"),
        ("x,y\n" + "1,2\n" * 300_000, 413, "1 MB"),
    ],
)
def test_api_bad_csv(client: TestClient, csv: str, status: int, words: str) -> None:
    r = client.post("/api/regression", files={"file": ("bad.csv", csv, "text/csv")})
    assert r.status_code == status
    assert words in r.json()["detail"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"json": {"dataset": "nope"}}, "unknown data set"),
        ({"json": {"dataset": "linear", "degree": "abc"}}, "degree must be"),
        ({"json": {"dataset": "linear", "degree": 9}}, "degree must be"),
        ({"json": {"dataset": "linear", "y_column": "q"}}, "no column 'q'"),
        ({"json": [1, 2]}, "JSON object"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "not valid JSON"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, "send JSON"),
        ({"data": {"degree": "1"}, "files": {"other": ("a.txt", "x")}}, "attach a CSV file"),
    ],
)
def test_api_bad_requests(client: TestClient, kwargs: dict, words: str) -> None:
    r = client.post("/api/regression", **kwargs)
    assert r.status_code == 400
    assert words in r.json()["detail"]


def test_regression_page(client: TestClient) -> None:
    r = client.get("/regression")
    assert r.status_code == 200
    html = r.text
    assert "/static/js/regression.js" in html and "/static/css/chapter.css" in html
    assert "F(x) = H(x)" in html and 'href="/?view=residuals"' in html
    assert client.get("/static/js/regression.js").status_code == 200
