"""Response headers (CSP, nosniff, referrer), the same-origin rule for changes, the operator token, upload rate."""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import Request

# The app's own pages: scripts only from this server, none inline (no inline handlers, no eval).
# Plotly writes <style> elements and style attributes, hence 'unsafe-inline' for styles only.
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"
)
# The API docs (/docs) load Swagger UI from its CDN; its start-up script is a static file here.
# Swagger UI and ReDoc (app.api.apidocs, assets served by the app): inline styles, a worker from a blob.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
STANDALONE_PREFIX = "/api/export/"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _csp_for(path: str, existing: str | None) -> str | None:
    """The policy to send: the page's own when it has a full one, else ours plus its frame-ancestors."""
    if existing and not existing.strip().startswith("frame-ancestors"):
        return None  # a complete policy of its own: keep it
    if path.startswith(STANDALONE_PREFIX):
        return None  # the standalone HTML files carry their own strict policy (a meta tag) for offline use
    ancestors = existing.strip() if existing else "frame-ancestors 'self'"
    base = DOCS_CSP if path in DOCS_PATHS else APP_CSP
    return f"{base}; {ancestors}"


class SecurityHeadersMiddleware:
    """Add CSP (keeping frame-ancestors as set by the frame policy), nosniff and Referrer-Policy to every answer."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        """Pass the request through, adding the headers to the response start."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                names = {k.lower() for k, _ in headers}
                existing = next((v.decode() for k, v in headers if k.lower() == b"content-security-policy"), None)
                csp = _csp_for(path, existing)
                if csp is not None:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
                    headers.append((b"content-security-policy", csp.encode()))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    headers.append((b"referrer-policy", b"same-origin"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(origin: str, host: str, trusted: tuple[str, ...] = ()) -> bool:
    """Whether an ``Origin`` header names this server (its ``Host``) or a trusted origin."""
    if origin in trusted:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc.lower() == host.lower()


class OriginCheckMiddleware:
    """Refuse POST/PUT/PATCH/DELETE whose ``Origin`` is another site's; no Origin (CLI, curl) passes."""

    def __init__(self, app, trusted: tuple[str, ...] = ()) -> None:  # noqa: ANN001
        self.app = app
        self.trusted = tuple(o.rstrip("/") for o in trusted)

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        """Answer 403 to a cross-origin change, else pass the request through."""
        if scope["type"] != "http" or scope.get("method", "GET") not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        origin = headers.get(b"origin")
        if origin is None or same_origin(origin, headers.get(b"host", ""), self.trusted):
            return await self.app(scope, receive, send)
        body = json.dumps(
            {
                "detail": f"refused: a {scope['method']} from another site ({origin[:100]}); this server accepts "
                "changes only from its own pages (or from clients that send no Origin, such as curl)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class AdminError(Exception):
    """Image management refused: ``status`` 403 (off on this server) or 401 (no or wrong token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


CLI_HINT = "`resviz images list | pin ID | delete ID | stats` on the server"


def check_admin(request: Request) -> None:
    """Raise AdminError unless the request carries the operator token (``Authorization: Bearer TOKEN``)."""
    secret = request.app.state.settings.admin_token
    token = secret.get_secret_value() if secret is not None else ""
    if not token:
        raise AdminError(
            403,
            "image management over HTTP is off on this server (no RESVIZ_ADMIN_TOKEN is set); "
            f"an operator can use {CLI_HINT}",
        )
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise AdminError(401, "this needs the operator token: send 'Authorization: Bearer TOKEN' (RESVIZ_ADMIN_TOKEN)")


class RateLimited(Exception):
    """Too many requests from one client; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    """A token bucket per client address: ``burst`` at once, then ``per_minute`` refilled continuously."""

    MAX_CLIENTS = 10_000  # past this, buckets that are full again are forgotten

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token of ``client``: 0 when allowed, else the seconds until the next token."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        full = [c for c, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for c in full:
            del self._buckets[c]

    def check(self, client: str, what: str = "uploads") -> None:
        """Raise RateLimited when ``client`` has no token left."""
        wait = self.take(client)
        if wait > 0:
            per_minute = self.rate * 60
            raise RateLimited(
                f"too many {what} from your address: at most {per_minute:g} a minute (after a burst of "
                f"{self.burst}); try again in {math.ceil(wait)} s",
                math.ceil(wait),
            )
