"""Gradient norms, the lesion study and the depth sweep."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.analyze import image_by_id, read_images
from app.api.deps import ServiceDep, StoreDep, payload_response, run_job
from app.runtime.samples import probe_png
from app.runtime.service import RequestError

router = APIRouter(tags=["gradients"])


def _target(fields: dict[str, str]) -> int | None:
    raw = fields.get("target")
    if raw in (None, "", "predicted"):
        return None
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"target must be a class index or 'predicted', got {raw[:40]!r}") from None


@router.post("/api/models/{name}/gradients")
async def model_gradients(name: str, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """Loss, ||dL/dx|| at every block, ||dL/dW|| of every layer (cross-entropy to the target class)."""
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, service.max_batch)
    payload = await run_job(
        request,
        service.gradients_job,
        name,
        blobs,
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        bn=fields.get("bn"),
        target=_target(fields),
    )
    return payload_response(request, payload)


@router.post("/api/models/{name}/lesion")
async def model_lesion(name: str, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """Target probability with each residual branch removed in turn (Veit et al. 2016)."""
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, 1)
    if len(blobs) != 1:
        raise RequestError("the lesion study takes exactly one image")
    payload = await run_job(
        request,
        service.lesion_job,
        name,
        blobs[0],
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        target=_target(fields),
    )
    return payload_response(request, payload)


@router.get("/api/gradients/depth-sweep")
async def depth_sweep(
    request: Request,
    service: ServiceDep,
    store: StoreDep,
    bn: str = "running",
    weights: str = "trained",
    image_id: str | None = None,
) -> Response:
    """First-layer gradient norm of CIFAR ResNet-20/32/44/56/110, residual and plain."""
    blob = image_by_id(store, image_id) if image_id else probe_png()
    payload = await run_job(request, service.depth_sweep_job, blob, weights=weights, bn=bn)
    return payload_response(request, payload)
