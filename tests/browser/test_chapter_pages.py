"""The chapter pages in a real browser: figures drawn from the API, errors shown readably."""

from __future__ import annotations

from tests.browser.test_explore import trace_values


def _drawn(page, chart_id: str) -> None:  # noqa: ANN001
    page.wait_for_function(
        "id => { const d = document.getElementById(id); return d && d.data && d.data.some(t => "
        "(t.y && t.y.length) || (t.x && t.x.length) || (t.values && t.values.length)); }",
        arg=chart_id,
    )
    assert trace_values(page, chart_id)


def test_architecture_page_draws_table_and_charts(page, shot) -> None:  # noqa: ANN001
    page.goto("/architecture")
    _drawn(page, "chart-stages")
    assert "[3x3, 64; 3x3, 64]" in page.locator("#table51-table").inner_text().replace("×", "x")
    assert "1,179,648" in page.locator("body").inner_text()
    shot(page, "architecture")


def test_regression_page_fits_and_rejects_bad_csv(page, shot, tmp_path) -> None:  # noqa: ANN001
    page.goto("/regression")
    _drawn(page, "chart-fitted")
    assert page.locator("#diag-table").inner_text().strip()
    shot(page, "regression")
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\na,b\nc,d\n")
    page.set_input_files("#csv-file", str(bad))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "The data could not be analysed" in error.inner_text()
