"""HTML pages rendered with Jinja2."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.paths import TEMPLATES_DIR

TEMPLATES = Jinja2Templates(directory=TEMPLATES_DIR)
router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The main page: model, image, architecture strip and charts."""
    return TEMPLATES.TemplateResponse(request, "index.html", {})
