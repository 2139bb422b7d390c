"""The MCP server on the running service: streamable HTTP at `/mcp`, behind the same guard as
every route (an API key with at least read scope once keys exist; loopback without keys).

A tool call is a call of the service's own API inside this process (an ASGI transport, no
socket), made with the key the MCP request came with, so a key limited to some collections
sees only those through every tool, and a read key cannot add documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar, asgi
from litestar.types import Receive, Scope, Send
from mcp.server.mcpserver import Context
from starlette.applications import Starlette

from ragsvc.agents.tools import build_server, in_process_client
from ragsvc.telemetry.logs import REQUEST_ID

FORWARDED_HEADERS = ("authorization", "x-api-key", "x-request-id")
MCP_PATH = "/mcp"


class McpMount:
    """The streamable HTTP app of the MCP server and what it needs from the Litestar app."""

    def __init__(self, max_request_bytes: int) -> None:
        self.app: Litestar | None = None
        server = build_server(self.open_client)
        self.starlette: Starlette = server.streamable_http_app(
            streamable_http_path="/",
            max_request_body_size=max_request_bytes,
            json_response=True,
            stateless_http=True,
        )

    @asynccontextmanager
    async def open_client(self, ctx: Context[Any, Any]) -> AsyncIterator[httpx.AsyncClient]:
        assert self.app is not None, "the MCP mount is not attached to an app"
        headers = ctx.headers or {}
        forwarded = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
        request_id = REQUEST_ID.get()
        if request_id:  # the tool's API calls log under the MCP request's id
            forwarded = {k: v for k, v in forwarded.items() if k.lower() != "x-request-id"}
            forwarded["X-Request-ID"] = request_id
        async with in_process_client(self.app, forwarded) as client:
            yield client

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The MCP session manager's lifetime (inside the app's lifespan)."""
        async with self.starlette.router.lifespan_context(self.starlette):
            yield

    def handler(self) -> Any:
        starlette = self.starlette

        @asgi(
            MCP_PATH,
            is_mount=True,
            copy_scope=True,
            opt={"scope": "read"},
            summary="The MCP server (streamable HTTP): search, ask, documents as tools",
        )
        async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            await starlette(scope, receive, send)  # type: ignore[arg-type]

        return mcp_endpoint
