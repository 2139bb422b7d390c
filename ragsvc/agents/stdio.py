"""`ragsvc mcp`: the MCP server over stdio, for a desktop client on this machine (Claude
Desktop, Cursor, VS Code start it as a child process).

With `--url`, every tool calls that running server with the key (`--key` or
`$RAGSVC_API_KEY`). Without, the service runs inside this process on the data directory, as
`ragsvc serve` would (its worker included), and the tools call it with no socket; a data
directory with keys needs a key here too. Nothing but the protocol is written to stdout: logs
go to stderr.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar
from mcp.server.mcpserver import Context

from ragsvc.agents.tools import build_server, in_process_client
from ragsvc.settings import Settings
from ragsvc.telemetry.logs import configure_logging


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def serve_stdio(
    settings: Settings, app: Litestar | None, url: str | None, key: str | None
) -> None:
    """Serve MCP on stdin and stdout until the client closes them."""

    @asynccontextmanager
    async def open_client(ctx: Context[Any, Any]) -> AsyncIterator[httpx.AsyncClient]:
        if url is not None:
            async with httpx.AsyncClient(
                base_url=url, headers=_headers(key), timeout=None
            ) as client:
                yield client
            return
        assert app is not None
        async with in_process_client(app, _headers(key)) as client:
            yield client

    server = build_server(open_client)
    # After the SDK's own set-up: the service's JSON lines on stderr, at its level.
    configure_logging(settings.log_level, settings.log_format, process="mcp")
    if app is None:
        await server.run_stdio_async()
        return
    async with app.lifespan():
        await server.run_stdio_async()


def local_app(settings: Settings) -> Litestar:
    """The service on this data directory, in this process."""
    from ragsvc.api.app import create_app
    from ragsvc.factory import make_query_embedder
    from ragsvc.retrieval.reranker import load_reranker

    return create_app(
        settings, embedder=make_query_embedder(settings), reranker=load_reranker(settings.reranker)
    )
