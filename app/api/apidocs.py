"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc) with their assets served by the app.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank offline. The
``fastapi-offline`` package ships both bundles; these pages load them from ``/docs/assets/``
and start them from static/js/docs-*.js (no inline script).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from app.api.pages import TEMPLATES

router = APIRouter(include_in_schema=False)
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "application/javascript",
    "favicon.png": "image/png",
}


def docs_assets_dir() -> Path:
    """The folder of Swagger UI and ReDoc files shipped by the ``fastapi-offline`` package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("the fastapi-offline package (Swagger UI and ReDoc assets) is not installed")
    return Path(spec.origin).parent / "static"


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    """One Swagger UI / ReDoc asset."""
    if name not in ASSETS:
        raise HTTPException(404, f"no docs asset {name!r}")
    return FileResponse(
        docs_assets_dir() / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/docs", response_class=HTMLResponse)
def swagger_page(request: Request) -> HTMLResponse:
    """Swagger UI for /openapi.json, offline."""
    return TEMPLATES.TemplateResponse(request, "apidocs.html", {"kind": "swagger", "title": request.app.title})


@router.get("/redoc", response_class=HTMLResponse)
def redoc_page(request: Request) -> HTMLResponse:
    """ReDoc for /openapi.json, offline."""
    return TEMPLATES.TemplateResponse(request, "apidocs.html", {"kind": "redoc", "title": request.app.title})
