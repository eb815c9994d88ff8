"""Class activation maps and saliency maps of one image (the explain graphs)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.analyze import int_field, read_images
from app.api.deps import ModelName, ServiceDep, StoreDep, payload_response, run_job
from app.api.gradients import target_field
from app.api.schemas.analysis import Explanation
from app.api.schemas.common import EXPLAIN_FIELDS, documented, image_operation
from app.runtime import explain
from app.runtime.service import RequestError

router = APIRouter(tags=["explain"])

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def flag_field(fields: dict[str, str], key: str, default: bool) -> bool:
    """A boolean request field (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``), or ``default``."""
    raw = fields.get(key)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value not in TRUE + FALSE:
        raise RequestError(f"{key} must be true or false, got {raw[:40]!r}")
    return value in TRUE


@router.post(
    "/api/models/{name}/explain",
    **documented(Explanation, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(EXPLAIN_FIELDS, "exactly one (a file or an `image_id`)"),
)
async def model_explain(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """A class activation map (at a layer, or every layer) or a saliency map of one image for one class score."""
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, 1)
    if len(blobs) != 1:
        raise RequestError("an explanation takes exactly one image (a file or an image_id)")
    payload = await run_job(
        request,
        service.explain_job,
        name,
        blobs[0],
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        bn=fields.get("bn"),
        target=target_field(fields),
        method=fields.get("method"),
        layer=fields.get("layer"),
        samples=int_field(fields, "samples", explain.SAMPLES[2]),
        steps=int_field(fields, "steps", explain.STEPS[2]),
        overlays=flag_field(fields, "overlays", True),
    )
    return payload_response(request, payload)
