"""The FastAPI application: ``create_app(settings)`` wires settings, registry, routers and pages."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS must not fight ORT for the cores

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from app.api import (  # noqa: E402
    analyze,
    apidocs,
    chapter,
    embed,
    explain,
    exports,
    gradients,
    images,
    lab,
    models,
    normalizations,
    pages,
)
from app.api.schemas.common import documented  # noqa: E402
from app.api.schemas.responses import Health, Readiness  # noqa: E402
from app.config import Settings, get_settings, graph_threads  # noqa: E402
from app.paths import STATIC_DIR  # noqa: E402
from app.runtime.admission import ClientGone, Gate, Overloaded  # noqa: E402
from app.runtime.exports import Command, ExportFailedError, ExportPending, ExportQueue, NotExportedError  # noqa: E402
from app.runtime.registry import ExportError, ModelRegistry, UnknownModelError  # noqa: E402
from app.runtime.service import AnalysisService, RequestError  # noqa: E402
from app.runtime.store import ImageStore, StoreFullError  # noqa: E402
from app.security import (  # noqa: E402
    AdminError,
    OriginCheckMiddleware,
    RateLimited,
    RateLimiter,
    SecurityHeadersMiddleware,
)
from app.specs import SPECS  # noqa: E402

log = logging.getLogger("resviz")


def plotly_js_path() -> Path:
    """plotly.min.js from the installed plotly package (served offline, never from a CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("the plotly package is not installed")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


DRAIN_FACTOR = 4  # an oversized body up to this many times the limit is read and discarded before the 413


class BodyLimitMiddleware:
    """Refuse request bodies over a byte limit with a 413 the client can read; cut off stalled bodies (408).

    A client that is still sending when the server answers and closes gets a connection reset
    instead of the answer (Python's urllib, requests). So a body declared too large is read and
    thrown away (up to ``DRAIN_FACTOR`` times the limit) before the 413 goes out, unless the
    client asked ``Expect: 100-continue``, in which case it has sent nothing yet.
    """

    def __init__(self, app, max_bytes: int, body_timeout_s: float = 20.0) -> None:  # noqa: ANN001
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        """Pass the request through, or answer 413 once the body is known to be too large."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        limit = self.max_bytes
        message = f"upload too large: the limit is {limit / 2**20:.0f} MB per request"
        timeout = self.body_timeout_s

        async def timed_receive():  # noqa: ANN202
            try:
                return await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise _Stalled(f"the request body stalled for {timeout:.0f} s; the connection was closed") from None

        if length is not None and length.isdigit() and int(length) > limit:
            if headers.get(b"expect", b"").lower() != b"100-continue" and int(length) <= DRAIN_FACTOR * limit:
                try:
                    await _drain(timed_receive)
                except _Stalled:
                    pass
            return await _answer(scope, receive, send, 413, message, close=True)
        seen = 0

        async def limited_receive():  # noqa: ANN202
            nonlocal seen
            msg = await timed_receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge(message)
            return msg

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge as exc:
            await _answer(scope, receive, send, 413, str(exc), close=True)
        except _Stalled as exc:
            await _answer(scope, receive, send, 408, str(exc), close=True)


async def _drain(receive) -> None:  # noqa: ANN001
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            return


async def _answer(scope, receive, send, status: int, message: str, close: bool = False) -> None:  # noqa: ANN001
    headers = {"Connection": "close"} if close else None
    try:
        await JSONResponse({"detail": message}, status_code=status, headers=headers)(scope, receive, send)
    except RuntimeError:
        pass  # the response had already started: nothing more can be said on this connection


class _TooLarge(Exception):
    pass


class _Stalled(Exception):
    pass


def _answer_with(status: int):  # noqa: ANN202
    """An exception handler answering ``status`` with the exception's message (and its ``retry_after``)."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        retry = getattr(exc, "retry_after", None)
        if retry is None and status == 503:
            retry = 60
        headers = {"Retry-After": str(int(retry))} if retry is not None else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    return handler


def _pending_page(message: str, retry_after: int) -> str:
    """A page that says what is being exported and reloads itself (no script: a meta refresh)."""
    import html

    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" '
        f'content="{retry_after}"><title>resviz: exporting</title><link rel="stylesheet" href="/static/css/app.css">'
        f'</head><body><p class="export-wait" role="status">{html.escape(message)}</p></body></html>'
    )


def create_app(settings: Settings | None = None, export_command: Command | None = None) -> FastAPI:
    """Build the app; the lifespan opens the registry and queues missing default models for export.

    ``export_command(name, weights, graphs)`` replaces the export subprocess's argv (tests use a fake).
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="resviz",
        version="0.1.0",
        lifespan=_lifespan(settings, export_command),
        docs_url=None,  # /docs and /redoc come from app.api.apidocs, with their assets served offline
        redoc_url=None,
        description="Interactive visualizer of residual networks, served by ONNX Runtime.",
    )
    app.state.settings = settings
    app.state.upload_limiter = RateLimiter(settings.upload_rate_per_minute, settings.upload_burst)
    _add_middleware(app, settings)
    _add_exception_handlers(app)
    _add_routes(app)
    return app


def _lifespan(
    settings: Settings, export_command: Command | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: open the serving state at start-up, stop the export worker and the gate at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue = _open_state(app, settings, export_command)
        try:
            yield
        finally:
            queue.stop()
            app.state.gate.close()

    return lifespan


def _open_state(app: FastAPI, settings: Settings, export_command: Command | None) -> ExportQueue:
    """Start the export worker, open the registry (warming the default models), the service, gate and store."""
    slots, threads = graph_threads(settings)
    queue = ExportQueue(
        settings.models_dir,
        timeout_s=settings.export_timeout_s,
        on_demand=settings.export_on_demand,
        command=export_command,
    )
    registry = ModelRegistry(
        settings.models_dir,
        settings.providers,
        threads,
        exporter=queue,
        wide_layer_macs=settings.wide_layer_macs,
        cores=settings.cpus,
    )
    if settings.export_on_start:  # the server answers at once; the worker exports these beside it
        queue.enqueue_defaults(
            settings.start_model, tuple(settings.default_models), lambda name: registry.resolve_variant(name, None)
        )
    queue.start()
    app.state.warming = threading.Event()
    if settings.warm_on_start:
        _start_warming(app.state.warming, registry, tuple(settings.default_models))
    app.state.exports = queue
    app.state.registry = registry
    service = AnalysisService(
        registry, settings.cache_bytes, settings.max_batch, settings.max_image_pixels, settings.taps_cache_bytes
    )
    app.state.service = service
    app.state.gate = Gate(slots, settings.queue_length, settings.max_queue_wait_s, service.cache)
    app.state.store = ImageStore(settings.data_dir, settings.store_max_bytes)
    log.info(
        "resviz ready: providers %s, %d graph slots x %d ORT threads, models in %s",
        registry.providers,
        slots,
        threads,
        settings.models_dir,
    )
    return queue


def _start_warming(warming: threading.Event, registry: ModelRegistry, models: tuple[str, ...]) -> None:
    """Open the sessions of ``models`` on a thread; ``warming`` is set until they are open (readyz says so)."""

    def warm() -> None:
        warming.set()
        try:
            registry.warm(models)
        finally:
            warming.clear()

    warming.set()
    threading.Thread(target=warm, name="warm", daemon=True).start()


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Body limit innermost, then the frame policy, the origin check and the security headers outermost."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, body_timeout_s=settings.body_timeout_s)

    @app.middleware("http")
    async def frame_policy(request: Request, call_next):  # noqa: ANN001, ANN202
        response: Response = await call_next(request)
        if request.url.path.startswith("/embed/"):
            ancestors = settings.embed_frame_ancestors
        else:
            ancestors = "'self'"
        response.headers.setdefault("Content-Security-Policy", f"frame-ancestors {ancestors}")
        return response

    # Outermost: the CSP, nosniff and Referrer-Policy go on every answer (frame-ancestors as set above),
    # and a change (POST/PUT/DELETE) from another site's page is refused before anything runs.
    app.add_middleware(OriginCheckMiddleware, trusted=tuple(settings.trusted_origins))
    app.add_middleware(SecurityHeadersMiddleware)


def _add_exception_handlers(app: FastAPI) -> None:
    """Errors that are answers: a status and the exception's own message (with Retry-After where it says when)."""
    for exc_type, status in (
        (RequestError, 400),
        (NotExportedError, 404),
        (RateLimited, 429),
        (Overloaded, 503),
        (ExportFailedError, 503),  # a failed export is retried after a while: say when, never a 500
        (ExportError, 503),
        (StoreFullError, 507),
    ):
        app.add_exception_handler(exc_type, _answer_with(status))

    @app.exception_handler(ExportPending)
    async def export_pending(request: Request, exc: ExportPending) -> Response:
        headers = {"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"}
        if not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_pending_page(str(exc), exc.retry_after), status_code=503, headers=headers)
        return JSONResponse({"detail": str(exc), "export": exc.job}, status_code=503, headers=headers)

    @app.exception_handler(AdminError)
    async def admin_refused(_: Request, exc: AdminError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(UnknownModelError)
    async def unknown_model(_: Request, exc: UnknownModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "known": list(SPECS)}, status_code=404)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it: the client has left

    @app.exception_handler(OSError)
    async def os_error(_: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JSONResponse(
                {"detail": "the server's disk is full: nothing was stored; an operator must free space"},
                status_code=507,
            )
        log.exception("I/O error", exc_info=exc)
        return JSONResponse({"detail": f"the server could not read or write a file ({exc.strerror})"}, status_code=503)

    @app.exception_handler(KeyError)
    async def not_found(_: Request, exc: KeyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0]) if exc.args else "not found"}, status_code=404)


def _add_routes(app: FastAPI) -> None:
    """Health and readiness, plotly.js from the installed package, the static files and every router."""

    @app.get("/healthz", tags=["health"], **documented(Health))
    async def healthz() -> dict:
        """Liveness: the process answers (on the event loop: never behind graph work)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], **documented(Readiness))
    async def readyz(request: Request) -> dict:
        """Readiness: models loaded, the admission gate's queue, the caches' bytes."""
        state = request.app.state
        service: AnalysisService = state.service
        return {
            "status": "warming" if state.warming.is_set() else "ready",
            "providers": state.registry.providers,
            "models_loaded": state.registry.loaded(),
            "gate": state.gate.info(),
            "cache": service.cache.info(),
            "taps_cache": service.taps_cache.info(),
        }

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(
            plotly_js_path(), media_type="application/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    routers = (
        models,
        analyze,
        gradients,
        explain,
        normalizations,
        images,
        pages,
        embed,
        chapter,
        lab,
        exports,
        apidocs,
    )
    for router in (m.router for m in routers):
        app.include_router(router)


def create_app_from_env() -> FastAPI:
    """``create_app`` on the environment's RESVIZ_* settings (the factory each uvicorn worker process calls)."""
    from app.serving import limit_malloc_arenas

    limit_malloc_arenas()
    return create_app(get_settings())
