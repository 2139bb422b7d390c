"""Routes that tell whether the service is well: `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.datastructures import State

from ragsvc.api.common import Caller, in_thread, services_of
from ragsvc.api.schemas import (
    Health,
    Ready,
    WorkerInfo,
)
from ragsvc.errors import (
    Forbidden,
)
from ragsvc.telemetry.prometheus import (
    CONTENT_TYPE,
    Metrics,
)


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
    body = await in_thread(observed.render)
    return Response(body, media_type=CONTENT_TYPE)


@get("/health", summary="The process is up", opt={"public": True})
async def health() -> Health:
    return Health("ok")


@get("/ready", summary="Store open, index loaded: counts, model, worker")
async def ready(state: State, principal: Caller) -> Ready:
    """The whole store's view for an admin key over every collection (and the keyless
    loopback user); for any other key, the counts of the collections it may read and nothing
    that moves with other tenants' activity (the change-log position, process ids)."""
    services = services_of(state)
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
            jobs=await services.job_reads.job_counts(names),
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
        jobs=await services.job_reads.job_counts(),
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
