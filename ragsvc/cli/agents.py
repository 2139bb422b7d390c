"""`ragsvc mcp`: the MCP server over stdio, for desktop agents (see `ragsvc.agents`)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from ragsvc.cli.common import EXIT_OK, CommandError
from ragsvc.settings import Settings
from ragsvc.telemetry.logs import configure_logging

KEY_VARIABLE = "RAGSVC_API_KEY"


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.agents.stdio import local_app, serve_stdio

    key = args.key or os.environ.get(KEY_VARIABLE) or None
    url = args.url.rstrip("/") if args.url else None
    if url is not None and not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must be an http:// or https:// address, not {args.url!r}")
    configure_logging(settings.log_level, settings.log_format, process="mcp")  # on stderr
    app = None if url is not None else local_app(settings)
    anyio.run(serve_stdio, settings, app, url, key)
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    mcp = commands.add_parser(
        "mcp",
        help="the MCP server over stdio, for Claude Desktop, Cursor, VS Code",
        description="Serve the MCP tools (search, ask, list_documents, read_document, "
        "list_collections, add_document) on stdin/stdout. Without --url the service runs in "
        "this process on the data folder; with --url the tools call that running server.",
    )
    mcp.add_argument("--url", help="a running ragsvc server (http://HOST:PORT)")
    mcp.add_argument("--key", help=f"API key for it (default: ${KEY_VARIABLE})")
    mcp.set_defaults(handler=cmd_mcp)
