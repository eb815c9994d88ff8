"""Shared FastAPI dependencies as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from app.config import Settings
from app.runtime.registry import ModelRegistry
from app.runtime.service import AnalysisService, Payload
from app.runtime.store import ImageStore


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    """The app's model registry."""
    return request.app.state.registry


def get_service(request: Request) -> AnalysisService:
    """The app's analysis service."""
    return request.app.state.service


def get_store(request: Request) -> ImageStore:
    """The app's image store."""
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
ServiceDep = Annotated[AnalysisService, Depends(get_service)]
StoreDep = Annotated[ImageStore, Depends(get_store)]


def payload_response(request: Request, payload: Payload) -> Response:
    """The JSON payload, gzipped when the client accepts it (compressed once, then cached)."""
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            payload.gzipped,
            media_type="application/json",
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return Response(payload.body, media_type="application/json", headers={"Vary": "Accept-Encoding"})
