"""The chapter's teaching views: computed figures, residual analysis of a regression, and their pages."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app import regression
from app.api.pages import TEMPLATES
from app.api.schemas.common import REGRESSION_BODY, documented
from app.api.schemas.responses import Chapter, Dataset, Regression
from app.chapter import chapter_figures

router = APIRouter(tags=["chapter"])


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@router.get("/api/chapter", **documented(Chapter, errors=(400,)))
def get_chapter(
    n: Annotated[str, Query(description="Side of the n-4 demo's input, a whole number from 5 to 64.")] = "7",
) -> JSONResponse:
    """Every figure of the chapter, computed from layer descriptions; ``n`` sets the n-4 demo's input side."""
    try:
        side = int(n)
        return JSONResponse(chapter_figures(side))
    except ValueError as exc:
        msg = str(exc) if "between" in str(exc) else f"n must be a whole number between 5 and 64, got {n!r}"
        return _error(400, msg)


@router.get("/api/regression/datasets", **documented(list[Dataset]))
def get_datasets() -> list[dict]:
    """The generated demo data sets: name, description, and the diagnostic each is meant to trigger."""
    return regression.list_datasets()


def _degree(value: Any) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        value = str(value)
    try:
        degree = int(value)
        if isinstance(value, float) and degree != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON Infinity
        raise regression.ModelSpecError(
            f"degree must be a whole number from 1 to {regression.MAX_DEGREE}, got {value!r}"
        ) from None
    return degree


def _names(*values: Any) -> list[str] | None:
    """x columns given as one name, a comma list, or a list of names."""
    out: list[str] = []
    for v in values:
        if v is None or v == "":
            continue
        items = v if isinstance(v, list) else str(v).split(",")
        for item in items:
            if not isinstance(item, str):
                raise regression.ModelSpecError("x columns must be given as column names (text)")
            if item.strip():
                out.append(item.strip())
    return out or None


def _text(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise regression.ModelSpecError(f"{what} must be text, got {value!r}")
    return value.strip()


async def _read_request(request: Request) -> tuple[regression.Table, dict, dict]:
    """The table to analyse, the fit options and a description of the source, from JSON or a multipart form."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=20)
        except Exception as exc:  # starlette raises several kinds for broken forms
            raise regression.CSVFormatError(f"the upload could not be read as a form: {exc}") from None
        fields: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
        fields["x_columns"] = [v for v in form.getlist("x_column") if isinstance(v, str)] or fields.get("x_columns")
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            data = await upload.read(regression.MAX_CSV_BYTES + 1)
            if not data:
                raise regression.CSVFormatError("the uploaded file is empty")
            table = regression.parse_csv(data)
            source = {"kind": "upload", "name": upload.filename or "upload.csv"}
        elif fields.get("dataset"):
            name = str(fields["dataset"])
            table = regression.make_dataset(name)
            source = {"kind": "dataset", "name": name}
        else:
            raise regression.ModelSpecError("attach a CSV file in the field 'file', or name a generated data set")
    elif ctype.startswith("application/json") or not ctype:
        raw = await request.body()
        try:
            fields = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # ValueError: also an integer of 4,300+ digits
            raise regression.ModelSpecError("the request body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise regression.ModelSpecError('send a JSON object such as {"dataset": "curved", "degree": 1}')
        if "csv" in fields:
            csv_text = fields["csv"]
            if not isinstance(csv_text, str):
                raise regression.CSVFormatError("'csv' must be the text of a CSV file")
            table = regression.parse_csv(csv_text)
            source = {"kind": "upload", "name": "inline.csv"}
        else:
            name = fields.get("dataset") or "linear"
            if not isinstance(name, str):
                raise regression.ModelSpecError("'dataset' must be the name of a generated data set")
            table = regression.make_dataset(name)
            source = {"kind": "dataset", "name": name}
        fields["x_columns"] = _names(fields.get("x_columns"), fields.get("x_column"))
    else:
        raise regression.ModelSpecError("send JSON, or a multipart form with the CSV file in the field 'file'")
    options = {
        "degree": _degree(fields.get("degree")),
        "x_columns": _names(fields.get("x_columns")),
        "y_column": _text(fields.get("y_column"), "y_column"),
    }
    return table, options, source


@router.post("/api/regression", **documented(Regression, errors=(400, 413)), openapi_extra=REGRESSION_BODY)
async def post_regression(request: Request) -> JSONResponse:
    """Fit a regression to an uploaded CSV or a generated data set; return the fit, diagnostics and plot data."""
    try:
        table, options, source = await _read_request(request)
        result = await run_in_threadpool(regression.analyze, table, **options)
    except regression.CSVTooLargeError as exc:
        return _error(413, str(exc))
    except regression.RegressionInputError as exc:
        return _error(400, str(exc))
    return JSONResponse({"source": source, **result})


@router.get("/architecture", response_class=HTMLResponse, include_in_schema=False)
def architecture_page(request: Request) -> HTMLResponse:
    """Table 5-1 explorer, the block arithmetic, and VGG-19 / plain-34 / ResNet-34 side by side."""
    return TEMPLATES.TemplateResponse(request, "architecture.html", {})


@router.get("/regression", response_class=HTMLResponse, include_in_schema=False)
def regression_page(request: Request) -> HTMLResponse:
    """Residual analysis of a regression: upload or generate data, fit, see the residual plots and tests."""
    return TEMPLATES.TemplateResponse(request, "regression.html", {})
