"""Running the app under uvicorn: HTTP protocols that cut off clients too slow to send their headers.

uvicorn closes idle keep-alive connections, but its timer restarts on every byte, so a client
that sends its request headers one byte at a time holds a connection open for as long as it
likes. Here every request must deliver its whole header block within ``HEADER_TIMEOUT_S`` of
the connection opening (or of the previous response ending); request bodies have their own
stall timeout in ``app.main.BodyLimitMiddleware``.
"""

from __future__ import annotations

import asyncio
from typing import Any

HEADER_TIMEOUT_S = 10.0


def _with_header_timeout(base: type, seconds: float) -> type:
    """A subclass of a uvicorn HTTP protocol that closes connections whose headers do not arrive in time."""

    class HeaderTimeout(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request on this connection gets the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

    return HeaderTimeout


def http_protocol(seconds: float = HEADER_TIMEOUT_S) -> type:
    """uvicorn's fastest available HTTP/1.1 protocol (httptools, else h11) with a header timeout."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol

        cls = _with_header_timeout(H11Protocol, seconds)

        class H11HeaderTimeout(cls):  # type: ignore[misc, valid-type]
            def handle_events(self) -> None:
                super().handle_events()
                if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
                    self._disarm_header_timer()

        return H11HeaderTimeout

    cls = _with_header_timeout(HttpToolsProtocol, seconds)

    class HttpToolsHeaderTimeout(cls):  # type: ignore[misc, valid-type]
        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

    return HttpToolsHeaderTimeout


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (one per thread by default): threads that build large answers in turn
    otherwise each keep their own freed memory, and the process grows with the number of threads."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        return False


def __getattr__(name: str) -> Any:
    """``HeaderTimeoutHTTP``: the protocol with the settings' header timeout, by import string (uvicorn workers)."""
    if name == "HeaderTimeoutHTTP":
        from app.config import get_settings

        return http_protocol(get_settings().header_timeout_s)
    raise AttributeError(name)


def run(
    app: Any,
    host: str,
    port: int,
    log_level: str = "info",
    header_timeout_s: float = HEADER_TIMEOUT_S,
    workers: int = 1,
) -> None:
    """Serve ``app`` with uvicorn, slow clients cut off: one process, or ``workers`` processes on one socket.

    With several workers ``app`` is ignored: each worker builds its own from the environment's RESVIZ_*
    settings (``app.main:create_app_from_env``), since an app object cannot be handed to another process.
    """
    import uvicorn

    limit_malloc_arenas()
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_keep_alive": 5,
        "backlog": 2048,  # a lecture hall connects at once: let the kernel hold them while the gate decides
    }
    if workers > 1:
        uvicorn.run(
            "app.main:create_app_from_env",
            factory=True,
            workers=workers,
            http="app.serving:HeaderTimeoutHTTP",
            **common,
        )
        return
    uvicorn.run(app, http=http_protocol(header_timeout_s), **common)
