"""Gradient norms, the lesion study and the depth sweep."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.analyze import image_by_id, int_field, read_images
from app.api.deps import GateDep, ModelName, ServiceDep, StoreDep, payload_response, run_job
from app.api.schemas.analysis import CollapseTable, DepthSweep, Gradients, Lesion
from app.api.schemas.common import GRADIENT_FIELDS, LESION_FIELDS, documented, image_operation
from app.api.schemas.shattered import SHATTERED_FIELDS, Shattered
from app.runtime import gradients as grad
from app.runtime import shattered as shatter
from app.runtime.admission import Job
from app.runtime.preprocess import prepare
from app.runtime.registry import ModelRegistry, parse_bn
from app.runtime.samples import probe_png
from app.runtime.service import Payload, RequestError

router = APIRouter(tags=["gradients"])


def target_field(fields: dict[str, str]) -> int | None:
    """The ``target`` field: a class index, or None for the predicted class (absent, empty or 'predicted')."""
    raw = fields.get("target")
    if raw in (None, "", "predicted"):
        return None
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"target must be a class index or 'predicted', got {raw[:40]!r}") from None


def _depths(raw: str | None) -> tuple[int, ...] | None:
    if raw in (None, ""):
        return None
    try:
        return tuple(int(p) for p in raw.split(","))
    except ValueError:
        raise RequestError(f"depths must be a comma list of depths such as 20,56, got {raw[:40]!r}") from None


@router.post(
    "/api/models/{name}/gradients",
    **documented(Gradients, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(GRADIENT_FIELDS, "up to 8 per request (the server's `max_batch`)"),
)
async def model_gradients(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
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
        target=target_field(fields),
    )
    return payload_response(request, payload)


@router.post(
    "/api/models/{name}/lesion",
    **documented(Lesion, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(LESION_FIELDS, "exactly one (a file or an `image_id`)"),
)
async def model_lesion(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
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
        target=target_field(fields),
    )
    return payload_response(request, payload)


@router.post(
    "/api/models/{name}/shattered",
    **documented(Shattered, errors=(400, 404, 413, 503)),
    openapi_extra=image_operation(SHATTERED_FIELDS, "exactly one (a file or an `image_id`)"),
)
async def model_shattered(name: ModelName, request: Request, service: ServiceDep, store: StoreDep) -> Response:
    """The input gradient along a line of inputs: white or brown noise (Balduzzi et al. 2017).

    g(t) = d(class score)/dx . u at P points x(t) = x0 + (t - 1/2) span u of a line through the image
    along a seeded random unit direction u, its autocorrelation, its power spectrum and the spectrum's
    log-log slope (~0: white noise, shattered; ~-2: brown noise). The CIFAR ResNets up to ResNet-110 only.
    """
    service.registry.check_name(name)
    blobs, fields = await read_images(request, store, 1)
    if len(blobs) != 1:
        raise RequestError("the shattered-gradients study takes exactly one image")
    payload = await run_job(
        request,
        service.shattered_job,
        name,
        blobs[0],
        weights=fields.get("weights"),
        gates=fields.get("gates"),
        target=target_field(fields),
        points=int_field(fields, "points", shatter.POINTS),
        seed=int_field(fields, "seed", 0),
    )
    return payload_response(request, payload)


@router.get("/api/gradients/depth-sweep", **documented(DepthSweep, errors=(400, 404, 503)))
async def depth_sweep(
    request: Request,
    service: ServiceDep,
    store: StoreDep,
    bn: Annotated[str, Query(description="Batch norm statistics: `running` or `batch`.")] = "running",
    weights: Annotated[str, Query(description="`trained` (the shipped weights) or `init`.")] = "trained",
    image_id: Annotated[str | None, Query(description="A stored image's id; default: the probe image.")] = None,
    depths: Annotated[str | None, Query(description="Depths, e.g. `20,56` (of 20,32,44,56,110); default: all.")] = None,
) -> Response:
    """First-layer gradient norm of CIFAR ResNet-20/32/44/56/110, residual and plain.

    ``depths=20,56`` computes only those rows (the page asks one depth at a time to show progress).
    """
    chosen = _depths(depths)
    blob = image_by_id(store, image_id) if image_id else probe_png()
    payload = await run_job(request, service.depth_sweep_job, blob, weights=weights, bn=bn, depths=chosen)
    return payload_response(request, payload)


COLLAPSE_IMAGES = "set-*.png"  # one built-in sample per class of the generated data set


def collapse_models(registry: ModelRegistry) -> list[str]:
    """The CIFAR models of the depth sweep that ship trained weights."""
    return [f"resnet{d}" for d in grad.SWEEP_DEPTHS if "trained" in registry.variants(f"resnet{d}")]


@router.get("/api/gradients/collapse", **documented(CollapseTable, errors=(400, 404, 503)))
async def collapse_table(
    request: Request,
    service: ServiceDep,
    gate: GateDep,
    bn: Annotated[str, Query(description="Batch norm statistics: `running` or `batch`.")] = "running",
    models: Annotated[str | None, Query(description="CIFAR models, e.g. `resnet20,resnet56`; default: all.")] = None,
) -> Response:
    """The on/off collapse table (docs/collapse.md) computed now from the shipped trained weights.

    One row per CIFAR model: ||dL/dW|| of the first block's first conv and the last block's last
    conv with every shortcut on and every shortcut off, on the built-in samples of the generated
    set (one per class). ``models=resnet20,resnet56`` limits the rows (the page asks one at a time).
    """
    from app.api.lab import SAMPLES

    try:
        mode = parse_bn(bn)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    known = collapse_models(service.registry)
    names = known if models in (None, "") else [m.strip() for m in models.split(",")]
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise RequestError(f"models must be some of {', '.join(known)}, got {', '.join(bad) or 'none'}")
    blobs = [p.read_bytes() for p in sorted(SAMPLES.glob(COLLAPSE_IMAGES))]
    if not blobs:
        raise RequestError("no built-in samples (static/samples/set-*.png); run scripts/make_samples.py")

    samples = [p.stem for p in sorted(SAMPLES.glob(COLLAPSE_IMAGES))]

    def table() -> Payload:
        out = []
        for name in names:
            key = ("collapse", name, mode)
            row = service.cache.get(key)
            if row is None:
                model = service.registry.get(name, "trained")
                x = np.stack([prepare(b, model.manifest["preprocessing"])[0] for b in blobs])
                row = grad.collapse_row(service.registry, name, "trained", mode, x)
                service.cache.put(key, row)
            out.append(row)
        return Payload.of({"bn": mode, "images": samples, "rows": out})

    job = Job(("collapse-table", tuple(names), mode), table, cost=f"collapse:{len(names)}")
    return payload_response(request, await gate.submit(job, request.is_disconnected))
