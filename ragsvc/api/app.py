"""The HTTP service: `create_app(settings, ...)` builds the Litestar application.

The server process only reads documents. Ingestion runs in a worker process it starts and
supervises (`supervisor.py`), the single writer of documents; the server follows what the
worker commits through the store's change log (`refresh_interval`), and moves to an index
rebuilt elsewhere without a restart. It writes job rows (uploads) to the job queue, deletes
documents, and saves index snapshots.

Parts (query embedder, answering backends) can be passed in, so tests build the app with
real or fake parts without patching; whatever is not passed is built from the settings. Every
resource opens in the lifespan and lives on `app.state.services`. Handlers are async: plain
reads go through aiosqlite (`async_reads.py`); retrieval and answering, which use numpy,
FAISS and the model, run in worker threads, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeVar

import anyio
import jsonschema
import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.di import NamedDependency, Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.params import JSONBody, MultipartBody, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from prometheus_client.core import Metric

from indexes import Catalog, ChunkRow, DocumentNotFound, DocumentRow, SearchFilter
from indexes.fusion import Mode
from ingest import Embedder, EmptyDocument, UnsupportedType, load_query_embedder
from ingest.cleaning import readable
from ingest.extract import sniff
from ragsvc import __version__
from ragsvc.answering import Answer, LLMBackend, Passage, build_backends, load_templates
from ragsvc.answering.cache import ResponseCache
from ragsvc.answering.chat import BackendError
from ragsvc.api.auth import (
    RateLimiter,
    audit_refusal,
    authorize,
    client_address,
    current_principal,
    mark_audited,
    visible,
    visible_collections,
)
from ragsvc.api.json_limits import check_json_body, lone_surrogate, too_deep
from ragsvc.api.middleware import RequestObserver
from ragsvc.api.openai_compat import chat_completions, list_models
from ragsvc.api.reads import AsyncReads
from ragsvc.api.schemas import (
    MAX_METADATA_KEYS,
    ChunkList,
    CollectionInfo,
    CollectionList,
    DocumentList,
    FeedbackRequest,
    Filters,
    Health,
    InteractionList,
    InteractionView,
    JobList,
    NewCollection,
    QueryRequest,
    QueryResponse,
    Ready,
    SearchRequest,
    SearchResponse,
    Source,
    TemplateInfo,
    TemplateList,
    Timings,
    WorkerInfo,
)
from ragsvc.errors import (
    AnswerNotFound,
    BadRequest,
    Conflict,
    Forbidden,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    handle_exception,
    status_of,
)
from ragsvc.interactions.log import (
    Feedback,
    FeedbackUnavailable,
    Interaction,
    InteractionLog,
    interaction_scope,
)
from ragsvc.jobs.queue import (
    JOB_STATES,
    TERMINAL_STATES,
    Job,
    JobNotCancellable,
    JobNotFound,
    JobQueue,
    JobState,
    NewJob,
)
from ragsvc.jobs.supervisor import Worker, WorkerProcess, WorkerThread
from ragsvc.retrieval.query_encoder import QueryEncoder
from ragsvc.retrieval.reranker import Reranker, load_reranker
from ragsvc.retrieval.retriever import Retrieved, context_depth, context_hits, retrieve
from ragsvc.retrieval.retriever import passages as to_passages
from ragsvc.security.audit import AuditEntry, AuditLog
from ragsvc.security.keys import KeyStore, Principal
from ragsvc.settings import Settings
from ragsvc.telemetry.logs import REQUEST_ID
from ragsvc.telemetry.prometheus import (
    BREAKER_STATES,
    CONTENT_TYPE,
    WORKER_METRICS,
    EmbeddingStats,
    Metrics,
    counter,
    embedding_metrics,
    gauge,
    labelled_counter,
    labelled_gauge,
)
from ragsvc.telemetry.tracing import Tracer, otlp_provider
from ragsvc.web import asset, page

SNIPPET_CHARS = 300
MAX_METADATA_CHARS = 65_536
# Path parameters carry their bounds (SQLite integers are 64-bit), so none reaches the store
# unchecked.
DocumentId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="A document id")]
JobId = Annotated[str, PathParameter(min_length=1, max_length=64, description="A job id")]
Caller = NamedDependency[Principal]
"""The principal a handler acts for, injected by name (see `auth.authorize`)."""
CollectionPath = Annotated[
    str, PathParameter(min_length=1, max_length=200, description="A collection name")
]
logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class UploadForm:
    """Multipart form of `POST /documents`."""

    files: list[UploadFile] = field(default_factory=list)
    collection: str | None = None
    metadata: str | None = None
    """A JSON object stored with every uploaded document."""


class Services:
    """Everything the handlers use, opened in the lifespan."""

    def __init__(
        self,
        settings: Settings,
        query_embedder: Embedder,
        backends: dict[str, LLMBackend] | None,
        worker_embedder: Embedder | None,
        tracer: Tracer,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer
        self.encoder = QueryEncoder(
            query_embedder,
            cache_size=settings.query_cache_size,
            batch_wait=settings.query_batch_wait_ms / 1000,
        )
        self.reranker = reranker or load_reranker(settings.reranker)
        # Templates and backends are checked before anything opens: a bad one stops start-up.
        self.templates = load_templates(settings.templates_path)
        self.backends = backends or build_backends(settings, self.encoder, self.templates)
        self.default_backend = settings.answer_backend
        for backend in self.backends.values():
            if hasattr(backend, "stage"):
                backend.stage = tracer.stage  # LLM calls become child spans
        self.cache = ResponseCache(settings.answer_cache_size)
        self.catalog = Catalog.open(
            settings.data_path,
            model_id=query_embedder.model_id,
            dimension=query_embedder.dimension,
            index_type=settings.index_type,
            save_interval=settings.index_save_interval,
            lexical_k1=settings.lexical_k1,
            lexical_b=settings.lexical_b,
            vector_params=settings.vector_params,
        )
        self.catalog.reader  # noqa: B018 (load the indexes now, not on the first query)
        self.jobs = JobQueue(settings.data_path, max_attempts=settings.job_max_attempts)
        self.keys = KeyStore.open(settings.data_path)
        self.limiter = RateLimiter()
        self.audit = AuditLog.open(settings.data_path)
        self.worker: Worker = (
            WorkerThread(settings, worker_embedder)
            if settings.ingest_worker == "thread"
            else WorkerProcess(settings)
        )
        self.worker.start()
        self._stopping = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="index-follower", daemon=True)
        self._follower.start()
        self.reads: AsyncReads
        self.log: InteractionLog

    async def open_async(self) -> None:
        self.reads = await AsyncReads.open(self.settings.data_path)
        self.log = await InteractionLog.open(
            self.settings.data_path,
            self.settings.interaction_log,
            redact=self.settings.interaction_log_redact,
            retention_days=self.settings.interaction_log_retention_days,
        )

    def _follow(self) -> None:
        """Pick up what the worker and CLI commands commit, and rebuilds made elsewhere."""
        while not self._stopping.wait(self.settings.refresh_interval):
            try:
                self.catalog.refresh()
                self.catalog.maybe_save()
            except Exception:
                logger.exception("following the store failed; retrying")

    def notify_worker(self) -> None:
        notify: Callable[[], None] | None = getattr(self.worker, "notify", None)
        if notify is not None:
            notify()

    def backend(self, name: str | None) -> LLMBackend:
        name = name or self.default_backend
        if name not in self.backends:
            raise BadRequest(
                f"backend {name!r} is not configured here; choose one of {sorted(self.backends)}"
            )
        return self.backends[name]

    def read_metrics(self) -> Iterator[Metric]:
        """What the service is, read when `/metrics` is scraped."""
        jobs = self.jobs.counts()
        yield labelled_gauge(
            "ragsvc_jobs",
            "Ingestion jobs by state",
            "state",
            {state: float(jobs.get(state, 0)) for state in JOB_STATES},
        )
        yield gauge("ragsvc_job_queue_depth", "Jobs waiting to be taken", jobs.get("queued", 0))
        yield from embedding_metrics(EmbeddingStats.read(self.settings.data_path / WORKER_METRICS))
        index = self.catalog.reader.state
        yield gauge("ragsvc_index_vectors", "Vectors in the served index", len(index.dense))
        yield gauge(
            "ragsvc_index_lexical_entries", "Chunks in the lexical index", len(index.lexical)
        )
        calls = {n: float(getattr(b, "calls", 0)) for n, b in self.backends.items()}
        errors = {n: float(getattr(b, "errors", 0)) for n, b in self.backends.items()}
        yield labelled_counter("ragsvc_llm_calls", "Calls to LLM servers", "backend", calls)
        yield labelled_counter("ragsvc_llm_errors", "Failed LLM calls", "backend", errors)
        breakers = {
            name: float(BREAKER_STATES[backend.breaker.state])
            for name, backend in self.backends.items()
            if hasattr(backend, "breaker")
        }
        yield labelled_gauge(
            "ragsvc_llm_breaker_state",
            "Circuit breaker per LLM backend: 0 closed, 1 half-open, 2 open",
            "backend",
            breakers,
        )
        encoder = self.encoder
        yield counter(
            "ragsvc_query_embedding_cache_hits", "Query vectors from the cache", encoder.cache_hits
        )
        yield counter(
            "ragsvc_query_embedding_cache_misses", "Query vectors computed", encoder.cache_misses
        )
        yield counter("ragsvc_answer_cache_hits", "Answers from the cache", self.cache.hits)
        yield counter("ragsvc_answer_cache_misses", "Answers not in the cache", self.cache.misses)

    def close(self) -> None:
        self._stopping.set()
        self._follower.join(timeout=10)
        self.worker.stop()
        self.encoder.close()
        self.jobs.close()
        self.keys.close()
        self.audit.close()
        self.catalog.close()

    async def close_async(self) -> None:
        await self.reads.close()
        await self.log.close()


def _services(state: State) -> Services:
    services: Services = state.services
    return services


async def _in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


# -- documents and jobs --------------------------------------------------------------------


@post(
    "/documents",
    status_code=202,
    summary="Upload documents; one ingestion job per file",
    opt={"scope": "write", "action": "upload"},
)
async def upload_documents(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    data: MultipartBody[UploadForm],
    wait: Annotated[
        bool, QueryParameter(description="Wait for the jobs to finish (up to upload_wait_timeout)")
    ] = False,
) -> Response[JobList]:
    services = _services(state)
    names = ", ".join(_safe_name(f.filename) for f in _files(data))[:500]
    audit = _Audit(services, principal, request, "upload", f"files {names}")
    try:
        jobs, collection = await _upload(services, principal, data)
    except Exception as error:
        await audit.refused(error)
        raise
    await audit.done("ok", f"jobs {','.join(j.id for j in jobs)} in collection {collection}")
    status = 202
    if wait:
        jobs = await _wait_for(services, jobs)
        status = 200 if all(j.state in TERMINAL_STATES for j in jobs) else 202
    return Response(JobList(jobs), status_code=status)


def _files(data: UploadForm) -> list[UploadFile]:
    return data.files if isinstance(data.files, list) else [data.files]


def _size_of(upload: UploadFile) -> int:
    file = upload.file
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


class _Audit:
    """One write's audit entry, recorded when its outcome is known."""

    def __init__(
        self,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
        action: str,
        target: str,
    ) -> None:
        self.services = services
        self.entry = AuditEntry(
            actor=principal.key_id or "loopback",
            action=action,
            target=target,
            client=client_address(request),
            outcome="",
        )

    async def done(self, outcome: str, target: str | None = None) -> None:
        entry = msgspec.structs.replace(
            self.entry, outcome=outcome, target=target or self.entry.target
        )
        await _in_thread(self.services.audit.record, entry)

    async def refused(self, error: Exception) -> None:
        status, detail = status_of(error)
        mark_audited(error)
        await self.done(f"{status}: {detail}")


async def _upload(
    services: Services, principal: Principal, data: UploadForm
) -> tuple[list[Job], str]:
    """Checks the upload and queues a job per file: the jobs and their collection."""
    settings = services.settings
    files = _files(data)
    if not files:
        raise BadRequest("no files in the upload (send them as multipart field 'files')")
    if len(files) > settings.max_files_per_upload:
        raise PayloadTooLarge(
            f"{len(files)} files in one upload; the limit is {settings.max_files_per_upload}"
        )
    collection = (data.collection or settings.default_collection).strip()
    if not collection or len(collection) > 200:
        raise BadRequest("collection must be 1 to 200 characters")
    visible(principal, collection)
    metadata = _parse_metadata(data.metadata)
    new_jobs = []
    for upload in files:
        name = _safe_name(upload.filename)
        size = _size_of(upload)  # before reading it: the parser spooled it to disk
        if size > settings.max_file_bytes:
            raise PayloadTooLarge(f"{name} is {size} bytes; the limit is {settings.max_file_bytes}")
        content = await upload.read()
        try:
            media_type = await anyio.to_thread.run_sync(sniff, content, name)
        except EmptyDocument as error:
            raise BadRequest(f"{name}: {error}") from None
        except UnsupportedType as error:
            raise UnsupportedMediaType(f"{name}: {error}") from None
        except Exception:
            media_type = "application/pdf"  # a damaged PDF: its job fails with the reason
        if media_type not in settings.allowed_types:
            allowed = ", ".join(settings.allowed_types)
            raise UnsupportedMediaType(f"{name}: {media_type} is not accepted (allowed: {allowed})")
        new_jobs.append(NewJob(collection, name, content, metadata))
    size = sum(len(job.payload) for job in new_jobs)
    if principal.key_id is not None:
        await _check_quota(services, principal.key_id, principal.upload_quota, size)
    jobs = await _in_thread(services.jobs.create, new_jobs, REQUEST_ID.get())
    if principal.key_id is not None:
        await _in_thread(services.keys.add_upload, principal.key_id, size)
    services.notify_worker()
    return jobs, collection


async def _check_quota(services: Services, key_id: str, quota: int | None, size: int) -> None:
    limit = quota if quota is not None else services.settings.key_upload_bytes_per_day
    if limit <= 0:
        return
    used = await _in_thread(services.keys.uploaded_today, key_id)
    if used + size > limit:
        midnight = (time.time() // 86400 + 1) * 86400
        raise TooManyRequests(
            f"this upload ({size} bytes) would take the key past its {limit} bytes a day "
            f"({used} used today)",
            midnight - time.time(),
        )


async def _wait_for(services: Services, jobs: list[Job]) -> list[Job]:
    deadline = time.monotonic() + services.settings.upload_wait_timeout
    while True:
        current = await services.reads.jobs([j.id for j in jobs])
        if all(j.state in TERMINAL_STATES for j in current):
            await _served(services, current)
            return current
        if time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


@get("/jobs/{job_id:str}", summary="An ingestion job: state, progress, error")
async def get_job(state: State, principal: Caller, job_id: JobId) -> Job:
    services = _services(state)
    job = await services.reads.job(job_id)
    if not principal.sees(job.collection):
        raise JobNotFound(job_id)
    await _served(services, [job])
    return job


async def _served(services: Services, jobs: list[Job]) -> None:
    """Read your writes: once a job is reported ready, searches find its document (the
    follower would pick it up within `refresh_interval`; a client that saw "ready" must not
    be told "not found" meanwhile)."""
    if any(j.state == "ready" for j in jobs):
        await _in_thread(services.catalog.refresh)


@get("/jobs", summary="Ingestion jobs, newest first, paginated, optionally in one state")
async def list_jobs(
    state: State,
    principal: Caller,
    job_state: Annotated[
        JobState | None, QueryParameter(name="state", description="Only jobs in this state")
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> JobList:
    collections = None if principal.collections is None else sorted(principal.collections)
    services = _services(state)
    rows = await services.reads.job_page(job_state, collections, limit + 1, offset)
    await _served(services, rows[:limit])
    next_offset = offset + limit if len(rows) > limit else None
    return JobList(rows[:limit], limit, offset, next_offset)


@delete(
    "/jobs/{job_id:str}",
    status_code=200,
    summary="Cancel a queued job (409 once it has started)",
    opt={"scope": "write", "action": "job.cancel"},
)
async def cancel_job(
    state: State, principal: Caller, request: Request[Any, Any, Any], job_id: JobId
) -> Job:
    services = _services(state)
    audit = _Audit(services, principal, request, "job.cancel", f"job {job_id}")
    try:
        job = await services.reads.job(job_id)
        if not principal.sees(job.collection):
            raise JobNotFound(job_id)
        try:
            cancelled = await _in_thread(services.jobs.cancel, job_id)
        except JobNotCancellable as error:
            raise Conflict(str(error)) from None
    except Exception as error:
        await audit.refused(error)
        raise
    await audit.done("ok", f"job {job_id} ({job.file_name})")
    return cancelled


@get("/documents", summary="Documents, paginated, optionally in one collection")
async def list_documents(
    state: State,
    principal: Caller,
    collection: Annotated[str | None, QueryParameter(min_length=1, max_length=200)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> DocumentList:
    rows = await _services(state).reads.documents(
        visible(principal, collection),
        limit=limit + 1,
        offset=offset,
        collections=visible_collections(principal, collection),
    )
    next_offset = offset + limit if len(rows) > limit else None
    return DocumentList(rows[:limit], limit, offset, next_offset)


@get("/documents/{document_id:int}", summary="One document's metadata")
async def get_document(state: State, principal: Caller, document_id: DocumentId) -> DocumentRow:
    return await _visible_document(_services(state), principal, document_id)


async def _visible_document(
    services: Services, principal: Principal, document_id: int
) -> DocumentRow:
    """The document, when the principal may see its collection; otherwise not found."""
    row = await services.reads.document(document_id)
    if not principal.sees(row.collection):
        raise DocumentNotFound(document_id)
    return row


@get("/documents/{document_id:int}/chunks", summary="A document's chunks with pages and offsets")
async def get_document_chunks(
    state: State,
    principal: Caller,
    document_id: DocumentId,
    limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> ChunkList:
    services = _services(state)
    await _visible_document(services, principal, document_id)
    wanted = -1 if limit is None else limit + 1
    chunks: list[ChunkRow] = await services.reads.document_chunks(document_id, wanted, offset)
    if limit is None:
        return ChunkList(document_id, chunks, None, offset, None)
    next_offset = offset + limit if len(chunks) > limit else None
    return ChunkList(document_id, chunks[:limit], limit, offset, next_offset)


@delete(
    "/documents/{document_id:int}",
    summary="Delete a document, its chunks and vectors",
    opt={"scope": "write", "action": "delete"},
)
async def delete_document(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    document_id: DocumentId,
) -> None:
    services = _services(state)
    audit = _Audit(services, principal, request, "delete", f"document {document_id}")
    try:
        row = await _visible_document(services, principal, document_id)
        await _in_thread(services.catalog.delete_document, document_id, row.collection)
    except Exception as error:
        await audit.refused(error)
        raise
    await audit.done("ok", f"document {document_id} ({row.source_name}) in {row.collection}")


# -- collections -------------------------------------------------------------------------


@get("/collections", summary="Collections with their document and chunk counts")
async def list_collections(state: State, principal: Caller) -> CollectionList:
    names = None if principal.collections is None else sorted(principal.collections)
    rows = await _services(state).reads.collections(names)
    return CollectionList([CollectionInfo(*row) for row in rows])


@post(
    "/collections",
    status_code=201,
    summary="Create an empty collection",
    opt={"scope": "admin", "action": "collection.create"},
)
async def create_collection(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    data: JSONBody[NewCollection],
) -> CollectionInfo:
    services = _services(state)
    name = data.name.strip()
    audit = _Audit(services, principal, request, "collection.create", f"collection {name}")
    try:
        if not name:
            raise BadRequest("name is empty")
        visible(principal, name)
        if not await _in_thread(services.catalog.create_collection, name):
            raise Conflict(f"collection {name!r} already exists")
    except Exception as error:
        await audit.refused(error)
        raise
    await audit.done("ok")
    return CollectionInfo(name, 0, 0)


@delete(
    "/collections/{name:str}",
    summary="Delete a collection with all its documents, chunks and vectors",
    opt={"scope": "admin", "action": "collection.delete"},
)
async def delete_collection(
    state: State, principal: Caller, request: Request[Any, Any, Any], name: CollectionPath
) -> None:
    services = _services(state)
    audit = _Audit(services, principal, request, "collection.delete", f"collection {name}")
    try:
        visible(principal, name)
        documents, chunks = await _in_thread(services.catalog.delete_collection, name)
    except Exception as error:
        await audit.refused(error)
        raise
    await audit.done("ok", f"collection {name} ({documents} documents, {chunks} chunks)")


# -- search and query ----------------------------------------------------------------------


def _retrieve(
    services: Services,
    principal: Principal,
    text: str,
    field: str,
    k: int,
    collection: str | None,
    mode: Mode | None = None,
    filters: Filters | None = None,
    *,
    need_vector: bool = False,
) -> tuple[Retrieved, Timings]:
    """The top-k chunks for `text`, with the time each stage took (runs in a thread)."""
    if not text.strip():
        raise BadRequest(f"{field} is empty")
    search_filter = SearchFilter(
        collection=visible(principal, collection),
        collections=visible_collections(principal, collection),
        document_ids=filters.document_ids if filters else None,
        media_types=filters.media_types if filters else None,
        metadata=filters.metadata if filters else None,
    )
    retrieved = retrieve(
        services.catalog,
        services.encoder,
        services.settings,
        text,
        k=k,
        mode=mode,
        filters=search_filter,
        need_vector=need_vector,
        stage=services.tracer.stage,
        reranker=services.reranker,
    )
    embed_s, search_s = retrieved.embed_seconds, retrieved.search_seconds
    timings = Timings(
        embed_ms=_ms(embed_s), search_ms=_ms(search_s), total_ms=_ms(embed_s + search_s)
    )
    return retrieved, timings


@post("/search", status_code=200, summary="Top-k chunks for a query")
async def search(state: State, principal: Caller, data: JSONBody[SearchRequest]) -> SearchResponse:
    retrieved, timings = await _in_thread(
        _retrieve,
        _services(state),
        principal,
        data.query,
        "query",
        data.k,
        data.collection,
        data.mode,
        data.filters,
    )
    return SearchResponse(retrieved.hits, timings)


@post(
    "/query",
    status_code=200,
    summary="Answer a question from the documents, with sources",
    description="With `stream: true` or `Accept: text/event-stream`, the answer comes as "
    "Server-Sent Events: `sources`, then `token` events, then `done` with the final answer "
    "(or `error`).",
)
async def query(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    data: JSONBody[QueryRequest],
) -> QueryResponse:
    services = _services(state)
    request_id = REQUEST_ID.get() or uuid.uuid4().hex
    record = Interaction(
        request_id=request_id,
        question=data.question,
        collection=data.collection,
        key_id=principal.key_id,
        scope=interaction_scope(principal.collections, data.collection),
    )
    streaming = data.stream or "text/event-stream" in request.headers.get("accept", "")
    result = await answer_question(services, principal, data, record, streaming=streaming)
    if isinstance(result, QueryResponse):
        return result
    # A streamed answer is another response class; the schema documents the JSON one.
    return EventStream(result)  # type: ignore[return-value]


async def answer_question(
    services: Services,
    principal: Principal,
    data: QueryRequest,
    record: Interaction,
    *,
    streaming: bool,
) -> QueryResponse | AsyncIterator[ServerSentEventMessage]:
    """`/query`'s path, shared with the OpenAI-compatible route: the answer, or with
    `streaming` its events (`sources`, `token`..., `done` or `error`). A question that
    fails is written to the interaction log with its error, then raised."""
    try:
        return await _answer_question(services, principal, data, record, streaming=streaming)
    except Exception as error:
        await services.log.record(
            msgspec.structs.replace(record, error=f"{type(error).__name__}: {error}")
        )
        raise


async def _answer_question(
    services: Services,
    principal: Principal,
    data: QueryRequest,
    record: Interaction,
    *,
    streaming: bool,
) -> QueryResponse | AsyncIterator[ServerSentEventMessage]:
    backend = services.backend(data.backend)
    if streaming and data.response_schema is not None:
        raise BadRequest("stream and response_schema cannot be combined")
    if data.response_schema is not None:
        try:
            jsonschema.validators.validator_for(data.response_schema).check_schema(
                data.response_schema
            )
        except jsonschema.SchemaError as error:
            raise BadRequest(
                f"response_schema is not a valid JSON Schema: {error.message}"
            ) from None

    def context() -> tuple[list[Passage], Timings]:
        depth = context_depth(services.settings, data.k)
        retrieved, timings = _retrieve(
            services,
            principal,
            data.question,
            "question",
            depth,
            data.collection,
            data.mode,
            data.filters,
            need_vector=True,
        )
        hits = context_hits(services.catalog, services.settings, retrieved.hits, data.k)
        return to_passages(services.catalog, hits), timings

    passages, retrieval = await _in_thread(context)
    key = backend.cache_key(data.question, passages, data.response_schema)
    if key is not None:
        key = f"{key}:{services.catalog.store.generation()}"
    record = msgspec.structs.replace(
        record,
        chunk_ids=[p.chunk_id for p in passages],
        scores=[round(p.score, 4) for p in passages],
        backend=backend.name,
        embed_ms=retrieval.embed_ms,
        search_ms=retrieval.search_ms,
        streamed=streaming,
    )
    if streaming:
        return _answer_events(services, backend, data.question, passages, retrieval, key, record)
    started = time.perf_counter()
    cached = services.cache.get(key) if key is not None else None
    answer = cached
    if answer is None:

        def answer_it() -> Answer:
            with services.tracer.span("answer", backend=backend.name):
                return backend.answer(data.question, passages, response_schema=data.response_schema)

        answer = await _in_thread(answer_it)
    if key is not None and cached is None and answer.fallback_reason is None:
        services.cache.put(key, answer)
    response = _query_response(
        answer, passages, retrieval, time.perf_counter() - started, cached, record.request_id
    )
    await services.log.record(_interaction(record, answer, response, passages))
    return response


def _interaction(
    record: Interaction, answer: Answer, response: QueryResponse, passages: list[Passage]
) -> Interaction:
    return msgspec.structs.replace(
        record,
        answer=answer.text,
        cited_chunk_ids=[p.chunk_id for p in passages if p.number in answer.citations],
        template=answer.template,
        backend=answer.backend,
        model=answer.model,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        answer_ms=response.timings.answer_ms,
        total_ms=response.timings.total_ms,
        confidence=answer.confidence,
        answerable=answer.answerable,
        cached=response.cached,
        fallback_reason=answer.fallback_reason,
    )


def _query_response(
    answer: Answer,
    passages: list[Passage],
    retrieval: Timings,
    answer_seconds: float,
    cached: Answer | None = None,
    request_id: str = "",
) -> QueryResponse:
    answer_ms = _ms(answer_seconds)
    sources = [
        Source(
            number=p.number,
            document_id=p.document_id,
            source_name=p.source_name,
            page_start=p.page_start,
            page_end=p.page_end,
            char_start=p.char_start,
            char_end=p.char_end,
            snippet=readable(p.text)[:SNIPPET_CHARS],
            score=round(p.score, 4),
            cited=p.number in answer.citations,
            location=p.location,
            quote=answer.quotes.get(p.number),
        )
        for p in passages
    ]
    timings = Timings(
        embed_ms=retrieval.embed_ms,
        search_ms=retrieval.search_ms,
        answer_ms=answer_ms,
        total_ms=round(retrieval.total_ms + answer_ms, 2),
    )
    return QueryResponse(
        answer.text,
        answer.answerable,
        answer.confidence,
        answer.backend,
        sources,
        timings,
        model=answer.model,
        template=answer.template,
        citations_dropped=answer.citations_dropped,
        fallback_reason=answer.fallback_reason,
        cached=cached is not None,
        data=answer.data,
        request_id=request_id,
    )


_END_OF_STREAM = object()


class EventStream(ServerSentEvent):
    """Server-Sent Events from a handler whose declared (JSON) media type would win."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


async def _answer_events(
    services: Services,
    backend: LLMBackend,
    question: str,
    passages: list[Passage],
    retrieval: Timings,
    key: str | None,
    record: Interaction,
) -> AsyncIterator[ServerSentEventMessage]:
    """`sources`, `token`..., then `done` or `error`. The backend's stream runs in worker
    threads; when the client goes away, closing it closes the upstream request too."""

    def event(name: str, payload: Any) -> ServerSentEventMessage:
        return ServerSentEventMessage(event=name, data=msgspec.json.encode(payload).decode())

    started = time.perf_counter()
    empty = Answer("", [], 0.0, False, backend.name)
    yield event("sources", _query_response(empty, passages, retrieval, 0.0).sources)
    cached = services.cache.get(key) if key is not None else None
    if cached is not None:
        yield event("token", {"text": cached.text})
        elapsed = time.perf_counter() - started
        done = _query_response(cached, passages, retrieval, elapsed, cached, record.request_id)
        await services.log.record(_interaction(record, cached, done, passages))
        yield event("done", done)
        return
    pieces = backend.stream(question, passages)
    final: Answer | None = None
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, pieces, _END_OF_STREAM)
            if item is _END_OF_STREAM:
                break
            if isinstance(item, Answer):
                final = item
                break
            yield event("token", {"text": item})
    except BackendError as error:
        await services.log.record(msgspec.structs.replace(record, error=str(error)))
        yield event("error", {"status": 502, "detail": str(error), "request_id": record.request_id})
        return
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    if final is None:
        detail = "the backend ended without an answer"
        await services.log.record(msgspec.structs.replace(record, error=detail))
        yield event("error", {"status": 502, "detail": detail, "request_id": record.request_id})
        return
    if key is not None and final.fallback_reason is None:
        services.cache.put(key, final)
    elapsed = time.perf_counter() - started
    done = _query_response(final, passages, retrieval, elapsed, None, record.request_id)
    await services.log.record(_interaction(record, final, done, passages))
    yield event("done", done)


# -- feedback and the interaction log ------------------------------------------------------


@post(
    "/feedback",
    status_code=200,
    summary="Rate an answer (up or down), optionally with a correction; again to replace it",
)
async def give_feedback(
    state: State, principal: Caller, data: JSONBody[FeedbackRequest]
) -> Feedback:
    log = _services(state).log
    try:
        found = await log.find(data.request_id, principal.collections)
        if found is None:
            raise AnswerNotFound(f"no answer with request_id {data.request_id!r}")
        return await log.give_feedback(
            found[0],
            Feedback(
                request_id=data.request_id,
                rating=data.rating,
                correction=data.correction,
                comment=data.comment,
                key_id=principal.key_id,
            ),
        )
    except FeedbackUnavailable as error:
        raise Conflict(str(error)) from None


@get(
    "/interactions",
    summary="Answered questions, newest first, with their feedback (admin)",
    opt={"scope": "admin"},
)
async def list_interactions(
    state: State,
    principal: Caller,
    rating: Annotated[
        Literal["up", "down", "none", "any"],
        QueryParameter(description="Only those rated up, down, not rated, or any"),
    ] = "any",
    since: Annotated[
        str | None,
        QueryParameter(description="Asked at or after this date or time (ISO 8601)", max_length=64),
    ] = None,
    until: Annotated[
        str | None,
        QueryParameter(description="Asked before this date or time (ISO 8601)", max_length=64),
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> InteractionList:
    try:
        found, next_offset = await _services(state).log.rated(
            principal.collections,
            rating=rating,
            since=_utc("since", since),
            until=_utc("until", until),
            limit=limit,
            offset=offset,
        )
    except FeedbackUnavailable as error:
        raise Conflict(str(error)) from None
    views = [
        InteractionView(
            request_id=r.interaction.request_id,
            at=r.interaction.at,
            question=r.interaction.question,
            answer=r.interaction.answer,
            answerable=r.interaction.answerable,
            confidence=r.interaction.confidence,
            backend=r.interaction.backend,
            collection=r.interaction.collection,
            scope=r.interaction.scope,
            chunk_ids=r.interaction.chunk_ids,
            cited_chunk_ids=r.interaction.cited_chunk_ids,
            feedback=r.feedback,
        )
        for r in found
    ]
    return InteractionList(views, limit, offset, next_offset)


def _utc(name: str, text: str | None) -> str | None:
    """A date or time (ISO 8601; UTC when it names no zone) in the log's own timestamp form,
    for comparing as text."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@get("/templates", summary="Prompt templates with their versions and variables")
async def list_templates(state: State) -> TemplateList:
    templates = sorted(_services(state).templates.values(), key=lambda t: t.name)
    return TemplateList([TemplateInfo(t.name, t.version, list(t.variables)) for t in templates])


# -- health --------------------------------------------------------------------------------


@get(
    "/metrics",
    summary="Prometheus metrics: requests, jobs, embedding, index, LLM calls, caches",
    opt={"scope": "admin"},
    media_type=CONTENT_TYPE,
)
async def metrics(state: State, principal: Caller) -> Response[bytes]:
    if principal.collections is not None:
        raise Forbidden("metrics cover every collection: they need a key not limited to some")
    observed: Metrics = state.metrics
    body = await _in_thread(observed.render)
    return Response(body, media_type=CONTENT_TYPE)


@get("/health", summary="The process is up", opt={"public": True})
async def health() -> Health:
    return Health("ok")


@get("/ready", summary="Store open, index loaded: counts, model, worker")
async def ready(state: State, principal: Caller) -> Ready:
    """The whole store's view for an admin key over every collection (and the keyless
    loopback user); for any other key, the counts of the collections it may read and nothing
    that moves with other tenants' activity (the change-log position, process ids)."""
    services = _services(state)
    index = services.catalog.reader.state
    if not principal.can("admin") or principal.collections is not None:
        names = None if principal.collections is None else sorted(principal.collections)
        rows = await services.reads.collections(names)
        chunks = sum(row[2] for row in rows)
        return Ready(
            status="ready",
            documents=sum(row[1] for row in rows),
            chunks=chunks,
            vectors=chunks,
            model=services.encoder.model_id,
            index=index.dense.spec,
            jobs=await services.reads.job_counts(names),
            query_runtime=getattr(services.encoder.embedder, "runtime", "torch"),
            lexical_entries=chunks,
            worker=WorkerInfo(
                mode=services.settings.ingest_worker,
                pid=None,
                restarts=0,
                ready=services.worker.ready,
            ),
        )
    return Ready(
        status="ready",
        documents=await services.reads.document_count(),
        chunks=len(index.dense),
        vectors=len(index.dense),
        model=services.encoder.model_id,
        index=index.dense.spec,
        jobs=await services.reads.job_counts(),
        query_runtime=getattr(services.encoder.embedder, "runtime", "torch"),
        lexical_entries=len(index.lexical),
        change_seq=index.change_seq,
        worker=WorkerInfo(
            mode=services.settings.ingest_worker,
            pid=services.worker.pid,
            restarts=services.worker.restarts,
            ready=services.worker.ready,
        ),
        server_pid=os.getpid(),
    )


# -- the application -----------------------------------------------------------------------


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
    default queries go through `ingest.load_query_embedder` (OpenVINO or ONNX Runtime where
    it can) and documents through the worker process's own embedder. `tracer_provider` (an
    OpenTelemetry `TracerProvider`) takes the spans; without one, the `tracing` setting decides.
    """
    observed = Metrics()
    if tracer_provider is None and settings.tracing:
        tracer_provider = otlp_provider()
    tracer = Tracer(tracer_provider)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        def open_services() -> Services:
            query_embedder = embedder or load_query_embedder(settings.embedder_config)
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
            yield
        finally:
            await services.close_async()
            await anyio.to_thread.run_sync(services.close)

    return Litestar(
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
            metrics,
            give_feedback,
            list_interactions,
            list_models,
            chat_completions,
            page,
            asset,
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
        # Files, plus the form's other fields; more parts is a 413 (see errors.status_of).
        multipart_form_part_limit=settings.max_files_per_upload + 8,
        openapi_config=OpenAPIConfig(title="ragsvc", version=__version__, path="/schema"),
    )


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise BadRequest(f"metadata is {len(raw)} characters; the limit is {MAX_METADATA_CHARS}")
    encoded = raw.encode("utf-8", "surrogatepass")
    reason = too_deep(encoded, "metadata")
    if reason:
        raise BadRequest(reason)
    half = lone_surrogate(encoded)
    if half:
        raise BadRequest(f"metadata escapes half a UTF-16 surrogate pair ({half}): not text")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise BadRequest(f"metadata is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object")
    if len(value) > MAX_METADATA_KEYS:
        raise BadRequest(f"metadata has {len(value)} keys; the limit is {MAX_METADATA_KEYS}")
    _check_integers(value)
    return value


def _check_integers(value: Any) -> None:
    """SQLite's JSON functions hold 64-bit integers: refuse wider ones here."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise BadRequest(f"metadata integer {value} is out of the 64-bit range")
    if isinstance(value, dict):
        for item in value.values():
            _check_integers(item)
    elif isinstance(value, list):
        for item in value:
            _check_integers(item)


def _safe_name(filename: str | None) -> str:
    """The client's file name as metadata: its last path part, printable, at most 255 chars."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] or "upload"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
