"""Shared FastAPI dependencies as typed aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.api.schemas.common import BN, GATES, WEIGHTS, sample_id
from app.config import Settings
from app.runtime.admission import Gate, Job
from app.runtime.registry import ModelRegistry
from app.runtime.service import AnalysisService, Payload
from app.runtime.store import ImageStore
from app.specs import SPECS


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


def get_gate(request: Request) -> Gate:
    """The app's admission gate."""
    return request.app.state.gate


async def run_job(request: Request, make_job: Callable[..., Job], *args: Any, **kwargs: Any) -> Any:
    """Check a request and build its job off the event loop, then run it through the admission gate."""
    job = await run_in_threadpool(make_job, *args, **kwargs)
    return await get_gate(request).submit(job, request.is_disconnected)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
ServiceDep = Annotated[AnalysisService, Depends(get_service)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
GateDep = Annotated[Gate, Depends(get_gate)]

# Parameters as the schema shows them; their types are the ones the routes always took (no new validation).
ModelName = Annotated[
    str,
    Path(
        description="A model of the family (`GET /api/models`).",
        examples=["resnet20"],
        json_schema_extra={"enum": list(SPECS)},
    ),
]
WeightsQuery = Annotated[str | None, Query(description=WEIGHTS, examples=["init"])]
GatesQuery = Annotated[str | None, Query(description=GATES, examples=["all-on"])]
BNQuery = Annotated[str | None, Query(description=BN, examples=["running"])]
ImageIdQuery = Annotated[
    str, Query(description="A stored image's id (64 hex) or a built-in sample's.", examples=[sample_id()])
]
ImageIdPath = Annotated[
    str, Path(description="The image's id: the sha256 of its bytes, 64 hex.", examples=[sample_id()])
]


def payload_response(request: Request, payload: Payload) -> Response:
    """The JSON payload, gzipped when the client accepts it (compressed once, then cached)."""
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            payload.gzipped,
            media_type="application/json",
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return Response(payload.body, media_type="application/json", headers={"Vary": "Accept-Encoding"})
