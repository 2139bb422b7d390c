"""What every HTTP request goes through first: its id, its metrics, its span, its log line.

The id comes from the client's `X-Request-ID` (when it is a plausible one) or is made here;
it is returned in `X-Request-ID`, set in `logs.REQUEST_ID` for everything the request does
(its log lines, the jobs it queues, its interaction-log entry), and put on the request span.
The route label is the route's template (`/documents/{document_id}`), never the raw
path, so ids in paths do not explode the metrics' label sets. Timing ends when the last
byte of the body is sent, so a streamed answer is timed whole.
"""

from __future__ import annotations

import logging
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ragsvc.telemetry.logs import REQUEST_ID, request_id_from
from ragsvc.telemetry.prometheus import Metrics
from ragsvc.telemetry.tracing import Tracer

HEADER = b"x-request-id"
access_log = logging.getLogger("ragsvc.access")


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics, tracer: Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), b"")
        request_id = request_id_from(given.decode("latin-1"))
        token = REQUEST_ID.set(request_id)
        route = scope.get("path_template") or _mount_path(scope) or "unmatched"
        method = str(scope.get("method", ""))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        started = time.perf_counter()
        try:
            with self.tracer.span(
                f"{method} {route}",
                **{"http.request.method": method, "http.route": route, "request_id": request_id},
            ) as span:
                await self.app(scope, receive, send_with_id)
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(route, method, status, seconds)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                _logged_path(scope),
                status,
                seconds * 1000,
                extra={"route": route, "status": status, "ms": round(seconds * 1000, 2)},
            )
            REQUEST_ID.reset(token)


def _mount_path(scope: Scope) -> str | None:
    """The path of a mounted ASGI app (the MCP server at `/mcp`), which has no template."""
    handler = scope.get("route_handler")
    if getattr(handler, "is_mount", False):
        return str(next(iter(handler.paths)))
    return None


def _logged_path(scope: Scope) -> str:
    """The path as the client sent it: a mount sees its own part of it in `path`."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1").split("?", 1)[0] if raw else str(scope["path"])
