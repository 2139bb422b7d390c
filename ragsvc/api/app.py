"""The HTTP service: `create_app(settings, ...)` builds the Litestar application from the route
modules beside this one (one per family of endpoints) and opens `services.Services` in its
lifespan.

The server process only reads documents. Ingestion runs in a worker process it starts and
supervises (`jobs/supervisor.py`), the single writer of documents; the server follows what the
worker commits through the store's change log (`refresh_interval`), and moves to an index
rebuilt elsewhere without a restart. It writes job rows (uploads) to the job queue, deletes
documents, and saves index snapshots.

Parts (query embedder, answering backends) can be passed in, so tests build the app with
real or fake parts without patching; whatever is not passed is built from the settings. Every
resource opens in the lifespan and lives on `app.state.services`. Handlers are async: plain
reads go through aiosqlite (`indexes/async_reads.py`, `jobs/reads.py`); retrieval and
answering, which use numpy, FAISS and the model, run in worker threads, so the event loop
never blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from ingest import Embedder
from ragsvc import __version__
from ragsvc.agents.http import McpMount
from ragsvc.answering import LLMBackend
from ragsvc.api.admin import take_backup
from ragsvc.api.auth import (
    audit_refusal,
    authorize,
    current_principal,
)
from ragsvc.api.collections import create_collection, delete_collection, list_collections
from ragsvc.api.documents import (
    cancel_job,
    delete_document,
    get_document,
    get_document_chunks,
    get_job,
    list_documents,
    list_jobs,
    upload_documents,
)
from ragsvc.api.feedback import give_feedback, list_interactions, list_templates
from ragsvc.api.json_limits import check_json_body
from ragsvc.api.middleware import RequestObserver
from ragsvc.api.openai_compat import chat_completions, list_models
from ragsvc.api.problems import handle_exception
from ragsvc.api.search import query, search
from ragsvc.api.services import Services
from ragsvc.api.status import health, metrics, ready
from ragsvc.factory import make_query_embedder
from ragsvc.retrieval.reranker import Reranker
from ragsvc.settings import Settings
from ragsvc.telemetry.prometheus import (
    Metrics,
)
from ragsvc.telemetry.tracing import Tracer, otlp_provider
from ragsvc.web import asset, page


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    backends: dict[str, LLMBackend] | None = None,
    tracer_provider: Any = None,
    reranker: Reranker | None = None,
) -> Litestar:
    """The application; parts not given are built from `settings` when it starts.

    `embedder` embeds queries (and, with `ingest_worker = "thread"`, documents too); by
    default queries go through `factory.make_query_embedder` (the store's model, on OpenVINO
    or ONNX Runtime where it can) and documents through the worker process's own embedder.
    `tracer_provider` (an OpenTelemetry `TracerProvider`) takes the spans; without one, the
    `tracing` setting decides.
    """
    observed = Metrics()
    if tracer_provider is None and settings.tracing:
        tracer_provider = otlp_provider()
    tracer = Tracer(tracer_provider)
    mcp = McpMount(settings.max_request_bytes)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        def open_services() -> Services:
            query_embedder = embedder or make_query_embedder(settings)
            return Services(settings, query_embedder, backends, embedder, tracer, reranker)

        services = await anyio.to_thread.run_sync(open_services)
        try:
            await services.open_async()
        except BaseException:
            await anyio.to_thread.run_sync(services.close)
            raise
        app.state.services = services
        observed.watch(services.read_metrics)
        try:
            async with mcp.running():
                yield
        finally:
            await services.close_async()
            await anyio.to_thread.run_sync(services.close)

    app = Litestar(
        route_handlers=[
            upload_documents,
            list_jobs,
            get_job,
            cancel_job,
            list_documents,
            get_document,
            get_document_chunks,
            delete_document,
            list_collections,
            create_collection,
            delete_collection,
            search,
            query,
            list_templates,
            health,
            ready,
            take_backup,
            metrics,
            give_feedback,
            list_interactions,
            list_models,
            chat_completions,
            page,
            asset,
            mcp.handler(),
        ],
        middleware=[DefineMiddleware(RequestObserver, metrics=observed, tracer=tracer)],
        before_request=check_json_body,
        after_exception=[audit_refusal],
        state=State({"metrics": observed}),
        lifespan=[lifespan],
        guards=[authorize],
        dependencies={"principal": Provide(current_principal, sync_to_thread=False)},
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_request_bytes,
        # Files, plus the form's other fields; more parts is a 413 (see problems.status_of).
        multipart_form_part_limit=settings.max_files_per_upload + 8,
        openapi_config=OpenAPIConfig(title="ragsvc", version=__version__, path="/schema"),
    )
    mcp.app = app
    return app
