"""The normalisations side by side on one conv layer's real output (batch, layer, instance, group, LRN)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.analyze import int_field, read_images
from app.api.deps import ModelName, ServiceDep, StoreDep, payload_response, run_job
from app.api.schemas.common import IMAGE_FIELDS, documented, image_operation
from app.api.schemas.normalization import Normalizations
from app.runtime.service import RequestError

router = APIRouter(tags=["normalizations"])

NORMALIZATION_FIELDS = {
    **IMAGE_FIELDS,
    "layer": (
        {"type": "string", "default": "layer1.0.conv1"},
        "A conv layer followed by a batch norm (its tap id), e.g. `layer1.0.conv1`, or that BN's id "
        "(`layer1.0.bn1`: the conv output it normalises); default: the first block's first conv.",
    ),
    "groups": (
        {"type": "integer", "minimum": 1},
        "Group norm's number of groups; must divide the layer's channels (default 4, or the largest divisor below).",
    ),
}


@router.post(
    "/api/models/{name}/normalizations",
    **documented(Normalizations, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(NORMALIZATION_FIELDS, "exactly one (a file or an `image_id`)"),
)
async def model_normalizations(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """Batch, layer, instance, group and local response norm of one conv output, with the model's own BN.

    The batch is the image sent plus the built-in samples of the model's input size, so batch norm's
    statistics (over N, H, W) differ from instance norm's (over H, W). Every number is for the image sent.
    """
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, 1)
    if len(blobs) != 1:
        raise RequestError("the normalisations take exactly one image (a file in 'image' or an 'image_id')")
    groups = int_field(fields, "groups", 0) if fields.get("groups") not in (None, "") else None
    payload = await run_job(
        request,
        service.normalizations_job,
        name,
        blobs[0],
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        layer=fields.get("layer") or None,
        groups=groups,
    )
    return payload_response(request, payload)
