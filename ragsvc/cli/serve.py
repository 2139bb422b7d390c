"""`ragsvc serve`: the HTTP service under uvicorn, after the checks that must pass before it
binds."""

from __future__ import annotations

import argparse
from typing import Any

from ragsvc.cli.common import (
    EXIT_OK,
    CommandError,
)
from ragsvc.factory import make_query_embedder
from ragsvc.retrieval.reranker import load_reranker
from ragsvc.security.keys import KeyStore
from ragsvc.settings import Settings
from ragsvc.telemetry.logs import configure_logging


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from ragsvc.answering.prompts import load_templates
    from ragsvc.api.app import create_app
    from ragsvc.api.auth import BindRefused, check_bind

    keys = KeyStore.open(settings.data_path)
    try:
        check_bind(settings.host, keys)
    except BindRefused as error:
        raise CommandError(str(error)) from None
    finally:
        keys.close()
    # Check templates and load the query model before binding, so a bad configuration fails
    # here. The server never loads the document model: its worker process does.
    configure_logging(settings.log_level, settings.log_format, process="server")
    load_templates(settings.templates_path)
    embedder = make_query_embedder(settings)
    app = create_app(settings, embedder=embedder, reranker=load_reranker(settings.reranker))
    print(f"serving on http://{settings.host}:{settings.port} (data in {settings.data_path})")
    # Again: loading the model's libraries may have changed the root logger's level.
    configure_logging(settings.log_level, settings.log_format, process="server")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through the service's handler
        access_log=False,  # the request middleware logs every request, with its id
        timeout_graceful_shutdown=10,
    )
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Serve the HTTP API (OpenAPI at /schema) under uvicorn.",
    )
    serve.add_argument("--host", help="bind address (setting host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (setting port, default 8000)")
    serve.set_defaults(handler=cmd_serve)
