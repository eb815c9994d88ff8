"""Tables of numbers: a CSV upload read with messages a person can act on, and the generated demo sets."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from app.regression.errors import CSVFormatError, CSVShapeError, CSVTooLargeError, ModelSpecError

MIN_ROWS = 8
MAX_COLUMNS = 10
MAX_CSV_BYTES = 1024 * 1024
MAX_ROWS = 50_000  # the JSON answer carries every residual


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


def _text(data: bytes | str, max_bytes: int) -> str:
    """The upload as text, within the size limit."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > max_bytes:
        raise CSVTooLargeError(
            f"the file is larger than {max_bytes / 2**20:g} MB, the limit for a CSV upload; "
            "upload a sample of the rows instead"
        )
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CSVFormatError("the file is not UTF-8 text; save it as a plain CSV file (UTF-8)") from exc


def _rows(text: str) -> list[list[str]]:
    """The non-blank lines split by the header's delimiter (comma, semicolon or tab)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise CSVFormatError("the file is empty; it needs a header row (e.g. x,y) and at least 8 rows of numbers")
    delimiter = max((",", ";", "\t"), key=lines[0].count)
    if lines[0].count(delimiter) == 0:
        delimiter = ","
    return list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))


def _header(row: list[str]) -> list[str]:
    """The column names, checked: 2 to MAX_COLUMNS of them, named, not numbers, no repeats."""
    header = [h.strip() for h in row]
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
    return header


def _cell(cell: str, line_no: int, column: str) -> float:
    """One finite number, or an error naming its line and column."""
    cell = cell.strip()
    try:
        v = float(cell)
    except ValueError:
        shown = cell if len(cell) <= 20 else cell[:20] + "..."
        what = "is empty" if not cell else f"is {shown!r}, which is not a number"
        raise CSVFormatError(f"line {line_no}, column {column!r} {what}") from None
    if not math.isfinite(v):
        raise CSVFormatError(f"line {line_no}, column {column!r} is {cell!r}; only finite numbers are allowed")
    return v


def _values(body: list[list[str]], header: list[str]) -> np.ndarray:
    """The data rows as an (n, columns) float array, checked for count and shape."""
    if len(body) < MIN_ROWS:
        raise CSVShapeError(f"the file has {len(body)} data rows; a residual analysis needs at least {MIN_ROWS}")
    if len(body) > MAX_ROWS:
        raise CSVShapeError(f"the file has {len(body):,} data rows; at most {MAX_ROWS:,} are allowed, upload a sample")
    values = np.empty((len(body), len(header)))
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise CSVFormatError(f"line {r + 2} has {len(row)} values but the header names {len(header)} columns")
        values[r] = [_cell(cell, r + 2, header[c]) for c, cell in enumerate(row)]
    return values


def parse_csv(data: bytes | str, max_bytes: int = MAX_CSV_BYTES) -> Table:
    """Read a CSV file with a header row and numeric columns; raise a RegressionInputError saying what is wrong."""
    rows = _rows(_text(data, max_bytes))
    header = _header(rows[0])
    return Table(header, _values(rows[1:], header))


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
