"""Routes for `/search` (the top-k chunks) and `/query` (an answer with its sources)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from ragsvc.api.answer_flow import (
    EventStream,
    answer_question,
    embed_for_retrieval,
    search_filter,
    timed_retrieval,
)
from ragsvc.api.common import Caller, in_search_thread, services_of
from ragsvc.api.schemas import (
    QueryRequest,
    QueryResponse,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from ragsvc.interactions.log import (
    Interaction,
    interaction_scope,
)
from ragsvc.telemetry.logs import REQUEST_ID


@post("/search", status_code=200, summary="Top-k chunks for a query")
async def search(state: State, principal: Caller, data: JSONBody[SearchRequest]) -> SearchResponse:
    services = services_of(state)
    where = search_filter(principal, data.query, "query", data.collection, data.filters)
    embedded = await embed_for_retrieval(services, data.query, data.mode)
    retrieved, timings = await in_search_thread(
        services,
        timed_retrieval,
        services,
        data.query,
        data.k,
        where,
        data.mode,
        embedded_query=embedded,
    )
    return SearchResponse([SearchResult.of(hit) for hit in retrieved.hits], timings)


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
    services = services_of(state)
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
