"""Analysis of uploaded or stored images, and full-resolution feature maps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.api.deps import (
    BNQuery,
    GatesQuery,
    ImageIdQuery,
    ModelName,
    ServiceDep,
    StoreDep,
    WeightsQuery,
    payload_response,
    run_job,
)
from app.api.schemas.analysis import Analysis, FeatureMap
from app.api.schemas.common import ANALYZE_FIELDS, documented, image_operation
from app.runtime.samples import stored_or_sample
from app.runtime.service import Payload, RequestError

router = APIRouter(prefix="/api/models", tags=["analysis"])


async def read_images(request: Request, store: StoreDep, max_files: int) -> tuple[list[bytes], dict[str, str]]:
    """Image bytes from multipart ``image`` files and/or ``image_id`` (stored), plus the other fields."""
    fields: dict[str, str] = {k: v for k, v in request.query_params.items() if k not in ("image_id",)}
    blobs: list[bytes] = []
    ids = list(request.query_params.getlist("image_id"))
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=max_files + 1, max_fields=50)
        for key, value in form.multi_items():
            if key == "image":
                if not isinstance(value, UploadFile):
                    raise RequestError("the 'image' field must be a file upload")
                blobs.append(await value.read())
            elif key == "image_id":
                ids.append(str(value))
            elif isinstance(value, str):
                fields.setdefault(key, value)
    elif ctype and request.method == "POST" and int(request.headers.get("content-length") or 0) > 0:
        raise RequestError("send images as multipart/form-data in the field 'image'")
    for image_id in ids:
        blobs.append(image_by_id(store, image_id))
    return blobs, fields


def image_by_id(store: StoreDep, image_id: str) -> bytes:
    """A stored image's bytes, or a built-in sample's by its hash; RequestError if neither."""
    try:
        return stored_or_sample(store, image_id)
    except KeyError as exc:
        raise RequestError(str(exc.args[0])) from None


def int_field(fields: dict[str, str], key: str, default: int) -> int:
    """An integer request field (query or form), or ``default``; RequestError if it is not an integer."""
    try:
        return int(fields.get(key, default))
    except ValueError:
        raise RequestError(f"{key} must be an integer, got {fields[key][:40]!r}") from None


@router.post(
    "/{name}/analyze",
    **documented(Analysis, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(ANALYZE_FIELDS, "up to 8 per request (the server's `max_batch`)"),
)
async def analyze_images(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """Per-layer statistics, BN, blocks, feature maps and prediction for one or more images."""
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, service.max_batch)
    payload: Payload = await run_job(
        request,
        service.analyze_job,
        name,
        blobs,
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        bn=fields.get("bn"),
        k=int_field(fields, "k", 8),
        feature_maps=fields.get("feature_maps", "blocks"),
        sections=fields.get("sections"),
    )
    return payload_response(request, payload)


@router.get("/{name}/featuremap", **documented(FeatureMap, errors=(400, 404, 503)))
async def full_feature_map(
    name: ModelName,
    request: Request,
    service: ServiceDep,
    store: StoreDep,
    image_id: ImageIdQuery,
    tap: Annotated[str, Query(description="Tap id from the manifest's `taps`.", examples=["layer1.0"])],
    channel: Annotated[int, Query(description="Channel index of the tap, from 0.", examples=[0])],
    weights: WeightsQuery = None,
    gates: GatesQuery = None,
    bn: BNQuery = None,
) -> Response:
    """One channel of one tap at full resolution, for a stored image."""
    service.registry.check_name(name)
    blob = image_by_id(store, image_id)
    payload = await run_job(
        request, service.featuremap_job, name, blob, tap=tap, channel=channel, weights=weights, gates=gates, bn=bn
    )
    return payload_response(request, payload)
