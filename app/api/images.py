"""Stored images: upload once, refer to them by id (embeds and links keep working).

Private by default: an image is reached only through its id (its sha256: the link is the key);
listing, statistics, unpinning and deleting need the operator token (``RESVIZ_ADMIN_TOKEN``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import GateDep, ImageIdPath, ServiceDep, StoreDep
from app.api.schemas.common import UPLOAD_BODY, documented, error_responses
from app.api.schemas.responses import Deleted, ImageEntry, PinState, StoredImage, StoreStats
from app.runtime.admission import Job
from app.runtime.preprocess import decode_image, image_size, sha256_bytes
from app.runtime.service import RequestError
from app.runtime.store import ID_RE
from app.security import check_admin

router = APIRouter(prefix="/api/images", tags=["images"])
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/octet-stream")


@router.post(
    "", status_code=201, **documented(StoredImage, 201, errors=(400, 413, 429, 503, 507)), openapi_extra=UPLOAD_BODY
)
async def store_image(request: Request, store: StoreDep, service: ServiceDep, gate: GateDep) -> dict:
    """Check that the upload is an image, store it content-addressed, return its id (rate-limited per address)."""
    request.app.state.upload_limiter.check(request.client.host if request.client else "unknown")
    form = await request.form(max_files=2, max_fields=5)
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise RequestError("send the image as multipart/form-data in the field 'image'")
    data = await upload.read()

    def check() -> tuple[int, int]:  # decoding is work like any other: it waits its turn at the gate
        try:
            decode_image(data, service.max_pixels, min_side=256)
            return image_size(data)
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    width, height = await gate.submit(Job(None, check, cost="decode", cache=False), request.is_disconnected)
    image_id = sha256_bytes(data)
    created = store.put(image_id, data, name=upload.filename or "")
    return {"id": image_id, "width": width, "height": height, "bytes": len(data), "created": created}


@router.get("", **documented(list[ImageEntry], errors=(401, 403)))
def list_images(request: Request, store: StoreDep) -> list[dict]:
    """Every stored image with its size, original name and pin (operator token only)."""
    check_admin(request)
    return store.list()


@router.get("/stats", **documented(StoreStats, errors=(401, 403)))
def store_stats(request: Request, store: StoreDep) -> dict:
    """Images and bytes stored, pinned and the budget (operator token only)."""
    check_admin(request)
    return store.stats()


@router.get(
    "/{image_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The image's original bytes.",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
        },
        **error_responses(400, 404),
    },
)
def get_image(image_id: ImageIdPath, store: StoreDep) -> Response:
    """The stored image's original bytes."""
    _check_id(image_id)
    data = store.get(image_id)
    return Response(data, media_type=_mime(data), headers={"Cache-Control": "private, max-age=31536000, immutable"})


@router.post("/{image_id}/pin", **documented(PinState, errors=(400, 404, 507)))
def pin_image(image_id: ImageIdPath, store: StoreDep) -> dict:
    """Keep the image through evictions: the page calls this when an embed link or a preset uses it."""
    _check_id(image_id)
    created = store.pin(image_id)
    return {"id": image_id, "pinned": True, "created": created}


@router.delete("/{image_id}/pin", **documented(PinState, errors=(400, 401, 403, 404)))
def unpin_image(image_id: ImageIdPath, request: Request, store: StoreDep) -> dict:
    """Let the image be evicted again (operator token only)."""
    check_admin(request)
    _check_id(image_id)
    store.unpin(image_id)
    return {"id": image_id, "pinned": False}


@router.delete("/{image_id}", **documented(Deleted, errors=(400, 401, 403, 404)))
def delete_image(image_id: ImageIdPath, request: Request, store: StoreDep) -> dict:
    """Remove a stored image (operator token only)."""
    check_admin(request)
    _check_id(image_id)
    store.delete(image_id)
    return {"id": image_id, "deleted": True}


def _check_id(image_id: str) -> None:
    if not ID_RE.match(image_id):
        raise RequestError("an image id is 64 hex characters")


def _mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"GIF8":
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
