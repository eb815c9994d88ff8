"""Progress of the background exports (the page shows it while a model is being exported)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.schemas.common import documented
from app.api.schemas.responses import Exports

router = APIRouter(prefix="/api/exports", tags=["exports"])


@router.get("", **documented(Exports))
def list_exports(request: Request) -> JSONResponse:
    """Pending exports (state, progress fraction, seconds left, queue position) and recently finished ones."""
    return JSONResponse(request.app.state.exports.snapshot(), headers={"Cache-Control": "no-store"})
