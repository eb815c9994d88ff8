"""Lecture mode's routes: the chart catalogue, embeddable charts, standalone HTML export and presets.

``/embed/{chart}?model=&image=&weights=&gates=&bn=&layer=&block=&channel=&range=`` renders one chart
filling its iframe (``templates/embed.html`` + ``static/js/embed.js``, drawn by the main page's
figure builders). ``/api/export/{chart}.html`` (same parameters) returns the chart as one offline
HTML file drawn by the same builders. ``/presets`` composes a sequence of views; ``/presets/play?steps=``
steps through it.
Parameters are checked (``app.lecture.links``) before any chart is drawn: a bad link gets a 4xx with a
readable message (an HTML page for /embed and /presets, JSON for /api).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.api.deps import GateDep, RegistryDep, ServiceDep, StoreDep
from app.api.pages import TEMPLATES
from app.lecture.catalogue import CHARTS
from app.lecture.export import export_document, export_filename, export_key
from app.lecture.links import LinkError, checked_link, embed_context, error_heading
from app.lecture.presets import decode_steps, presets_context
from app.runtime.admission import Job

router = APIRouter(tags=["lecture"])


@router.get("/api/charts")
def list_charts() -> list[dict]:
    """Every embeddable chart: id, title, main-page view and element, the data endpoints it needs, its parameters."""
    return [c.row() for c in CHARTS.values()]


@router.get("/embed/{chart}", response_class=HTMLResponse, include_in_schema=False)
async def embed_chart(chart: str, request: Request, registry: RegistryDep, store: StoreDep) -> HTMLResponse:
    """One chart filling its iframe, drawn in the browser from the API's data."""
    try:
        link, _ = await checked_link(chart, dict(request.query_params), registry, store)
    except LinkError as exc:
        context = {"error": exc.message, "status": exc.status, "title": error_heading(exc.status)}
        return TEMPLATES.TemplateResponse(request, "embed.html", context, status_code=exc.status)
    return TEMPLATES.TemplateResponse(request, "embed.html", embed_context(link))


@router.get("/api/export/{chart}.html", tags=["lecture"])
async def export_chart(
    chart: str, request: Request, registry: RegistryDep, service: ServiceDep, store: StoreDep, gate: GateDep
) -> Response:
    """One chart as a standalone HTML file: plotly.js and the chart builders inlined, its data as JSON, offline."""
    try:
        link, blob = await checked_link(chart, dict(request.query_params), registry, store)
    except LinkError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    job = Job(export_key(link), lambda: export_document(link, blob, service), cost=f"export:{link.model}", cache=False)
    text = await gate.submit(job, request.is_disconnected)
    disposition = "attachment" if request.query_params.get("download") in ("1", "true") else "inline"
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Disposition": f'{disposition}; filename="{export_filename(link)}"',
            "Cache-Control": "no-store",
        },
    )


def _presets_page(
    request: Request, mode: str, steps: list[dict] | None, error: str | None = None, status: int = 200
) -> HTMLResponse:
    context = presets_context(mode, steps, error)
    return TEMPLATES.TemplateResponse(request, "presets.html", context, status_code=status)


@router.get("/presets", response_class=HTMLResponse, include_in_schema=False)
def presets_page(request: Request, steps: str | None = None) -> HTMLResponse:
    """Compose a sequence of views (steps kept in the browser); ``steps=`` opens a shared sequence for editing."""
    try:
        decoded = decode_steps(steps) if steps else None
    except LinkError as exc:
        return _presets_page(request, "edit", None, exc.message, exc.status)
    return _presets_page(request, "edit", decoded)


@router.get("/presets/play", response_class=HTMLResponse, include_in_schema=False)
def presets_play(request: Request, steps: str | None = None) -> HTMLResponse:
    """Step through a shared sequence of views, one at a time (next/previous, arrow keys)."""
    if not steps:
        return _presets_page(request, "play", None, "this link names no steps (steps=<base64url JSON>)", 400)
    try:
        decoded = decode_steps(steps)
    except LinkError as exc:
        return _presets_page(request, "play", None, exc.message, exc.status)
    return _presets_page(request, "play", decoded)
