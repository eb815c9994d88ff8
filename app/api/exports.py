"""Progress of the background exports (the page shows it while a model is being exported)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/api/exports", tags=["exports"])


@router.get("")
def list_exports(request: Request) -> JSONResponse:
    """Pending exports (state, progress fraction, seconds left, queue position) and recently finished ones."""
    return JSONResponse(request.app.state.exports.snapshot(), headers={"Cache-Control": "no-store"})
