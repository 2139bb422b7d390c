"""The services the handlers use, opened in the application's lifespan: the catalog and its
follower thread, the query encoder, answering backends, job queue, keys, audit and interaction
logs, and the ingestion worker."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator

import anyio
from prometheus_client.core import Metric

from indexes.async_reads import AsyncStoreReads
from ingest import Embedder
from ragsvc.answering import Answer, LLMBackend, build_backends, load_templates
from ragsvc.answering.cache import ResponseCache
from ragsvc.api.auth import (
    RateLimiter,
)
from ragsvc.errors import (
    BadRequest,
)
from ragsvc.factory import make_query_embedder, open_catalog
from ragsvc.interactions.log import (
    InteractionLog,
)
from ragsvc.jobs.queue import (
    JOB_STATES,
    JobQueue,
)
from ragsvc.jobs.reads import AsyncJobReads
from ragsvc.jobs.supervisor import Worker, WorkerProcess, WorkerThread
from ragsvc.retrieval.query_encoder import QueryEncoder
from ragsvc.retrieval.reranker import Reranker, load_reranker
from ragsvc.security.audit import AuditLog
from ragsvc.security.keys import KeyStore
from ragsvc.settings import Settings
from ragsvc.telemetry.prometheus import (
    BREAKER_STATES,
    WORKER_METRICS,
    EmbeddingStats,
    counter,
    embedding_metrics,
    gauge,
    labelled_counter,
    labelled_gauge,
)
from ragsvc.telemetry.tracing import Tracer

logger = logging.getLogger(__name__)


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
        self.cache: ResponseCache[Answer] = ResponseCache(settings.answer_cache_size)
        self.catalog = open_catalog(settings, query_embedder)
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
        self._unloadable: str | None = None
        """A model the store moved to that does not load here (said once, not retried)."""
        self._follower = threading.Thread(target=self._follow, name="index-follower", daemon=True)
        self._follower.start()
        self.search_slots: anyio.CapacityLimiter
        """Threads retrieval runs in at once (`search_threads`)."""
        self.reads: AsyncStoreReads
        self.job_reads: AsyncJobReads
        self.log: InteractionLog

    async def open_async(self) -> None:
        self.search_slots = anyio.CapacityLimiter(
            self.settings.search_threads or os.cpu_count() or 1
        )
        self.reads = await AsyncStoreReads.open(self.settings.data_path)
        try:
            self.job_reads = await AsyncJobReads.open(self.settings.data_path)
        except BaseException:
            await self.reads.close()
            raise
        self.log = await InteractionLog.open(
            self.settings.data_path,
            self.settings.interaction_log,
            redact=self.settings.interaction_log_redact,
            retention_days=self.settings.interaction_log_retention_days,
        )

    def _follow(self) -> None:
        """Pick up what the worker and CLI commands commit, rebuilds made elsewhere, and a
        re-embed's switch to another model."""
        while not self._stopping.wait(self.settings.refresh_interval):
            try:
                if self.catalog.model_switched:
                    self.follow_model()
                self.catalog.refresh()
                self.catalog.maybe_save()
            except Exception:
                logger.exception("following the store failed; retrying")

    def follow_model(self) -> None:
        """Serve the model a re-embed switched the store to: its query encoder is loaded (and
        exported and checked) while the old model still answers, then the indexes and the
        encoder move together (cached answers are keyed by the store's generation, which
        the switch moved)."""
        model_id, _, name = self.catalog.stored_model()
        if model_id == self._unloadable:
            return
        embedder = make_query_embedder(self.settings)
        if embedder.model_id != model_id:
            self._unloadable = model_id
            logger.error(
                "the store moved to model %s (%s) but it loads as %s; still serving %s",
                model_id,
                name,
                embedder.model_id,
                self.catalog.model_id,
            )
            return
        previous = self.catalog.model_id
        self.catalog.follow_model()
        self.encoder.swap(embedder)
        logger.info("now serving model %s (re-embedded; was %s)", model_id, previous)

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
        yield counter(
            "ragsvc_query_forward_passes",
            "Forward passes of the query model (queries waiting together share one)",
            encoder.forward_passes,
        )
        yield counter(
            "ragsvc_query_batched",
            "Queries embedded by those passes (over forward passes: the mean batch size)",
            encoder.batched_queries,
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
        await self.job_reads.close()
        await self.log.close()
