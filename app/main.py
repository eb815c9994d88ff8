"""The FastAPI application: ``create_app(settings)`` wires settings, registry, routers and pages."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS must not fight ORT for the cores

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from app.api import analyze, apidocs, chapter, embed, gradients, images, lab, models, pages  # noqa: E402
from app.config import Settings, get_settings  # noqa: E402
from app.runtime.registry import ExportError, ModelRegistry, UnknownModelError  # noqa: E402
from app.runtime.service import AnalysisService, RequestError  # noqa: E402
from app.runtime.store import ImageStore, StoreFullError  # noqa: E402
from app.specs import SPECS  # noqa: E402

log = logging.getLogger("resviz")
ROOT = Path(__file__).resolve().parent.parent


def plotly_js_path() -> Path:
    """plotly.min.js from the installed plotly package (served offline, never from a CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("the plotly package is not installed")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


class BodyLimitMiddleware:
    """Refuse request bodies over a byte limit: from Content-Length before reading, else while streaming."""

    def __init__(self, app, max_bytes: int) -> None:  # noqa: ANN001
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        """Pass the request through, or answer 413 once the body is known to be too large."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        limit = self.max_bytes
        message = f"upload too large: the limit is {limit / 2**20:.0f} MB per request"
        if length is not None and length.isdigit() and int(length) > limit:
            return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        seen = 0

        async def limited_receive():  # noqa: ANN202
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge(message)
            return msg

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge as exc:
            await JSONResponse({"detail": str(exc)}, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the lifespan opens the registry and exports missing default models."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings.models_dir, settings.providers, settings.intra_op_threads)
        if settings.export_on_start:
            exported = registry.ensure_exported(tuple(settings.default_models))
            if exported:
                log.warning("exported default models in a subprocess: %s", ", ".join(exported))
        app.state.registry = registry
        app.state.service = AnalysisService(
            registry, settings.cache_entries, settings.max_batch, settings.max_image_pixels
        )
        app.state.store = ImageStore(settings.data_dir, settings.store_max_bytes)
        log.info("resviz ready: providers %s, models in %s", registry.providers, settings.models_dir)
        yield

    app = FastAPI(
        title="resviz",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app.api.apidocs, with their assets served offline
        redoc_url=None,
        description="Interactive visualizer of residual networks, served by ONNX Runtime.",
    )
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)

    @app.middleware("http")
    async def frame_policy(request: Request, call_next):  # noqa: ANN001, ANN202
        response: Response = await call_next(request)
        if request.url.path.startswith("/embed/"):
            ancestors = settings.embed_frame_ancestors
        else:
            ancestors = "'self'"
        response.headers.setdefault("Content-Security-Policy", f"frame-ancestors {ancestors}")
        return response

    @app.exception_handler(UnknownModelError)
    async def unknown_model(_: Request, exc: UnknownModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "known": list(SPECS)}, status_code=404)

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreFullError)
    async def store_full(_: Request, exc: StoreFullError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.exception_handler(ExportError)
    async def export_failed(_: Request, exc: ExportError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.exception_handler(KeyError)
    async def not_found(_: Request, exc: KeyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0]) if exc.args else "not found"}, status_code=404)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(
            plotly_js_path(), media_type="application/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    routers = (models, analyze, gradients, images, pages, embed, chapter, lab, apidocs)
    for router in (m.router for m in routers):
        app.include_router(router)
    return app
