"""The path from a question to an answer, shared by `/query` and the OpenAI-compatible route:
context retrieval, the backend, the answer cache, the interaction log, and the answer as JSON or
as Server-Sent Events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import jsonschema
import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from indexes import SearchFilter
from indexes.fusion import Mode
from ingest.cleaning import readable
from ragsvc.answering import Answer, LLMBackend, Passage
from ragsvc.answering.chat import BackendError
from ragsvc.answering.conversation import bounded, standalone
from ragsvc.api.auth import visible, visible_collections
from ragsvc.api.common import in_search_thread, in_thread, ms
from ragsvc.api.schemas import (
    AnswerSource,
    Filters,
    QueryRequest,
    QueryResponse,
    Timings,
)
from ragsvc.api.services import Services
from ragsvc.errors import (
    BadRequest,
)
from ragsvc.interactions.log import (
    Interaction,
)
from ragsvc.retrieval.retriever import (
    QueryVector,
    Retrieved,
    context_depth,
    context_hits,
    needs_vector,
    retrieve,
)
from ragsvc.retrieval.retriever import passages as to_passages
from ragsvc.security.keys import Principal

SNIPPET_CHARS = 300


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

    settings = services.settings
    history = bounded(
        data.messages or [], settings.conversation_max_turns, settings.conversation_max_chars
    )
    # A follow-up is searched in its standalone form: the LLM's rewrite (condense template)
    # where the backend has one, else the form made without an LLM.
    rewritten = await in_thread(backend.condense, data.question, history) if history else None
    question = rewritten or standalone(data.question, history)  # the question itself alone

    where = search_filter(principal, question, "question", data.collection, data.filters)
    embedded = await embed_for_retrieval(services, question, data.mode, need_vector=True)

    def context() -> tuple[list[Passage], Timings]:
        depth = context_depth(services.settings, data.k)
        retrieved, timings = timed_retrieval(
            services,
            question,
            depth,
            where,
            data.mode,
            need_vector=True,
            embedded_query=embedded,
        )
        hits = context_hits(services.catalog, services.settings, retrieved.hits, data.k)
        return to_passages(services.catalog, hits), timings

    passages, retrieval = await in_search_thread(services, context)
    # The backend answers the rewrite when there is one; otherwise the follow-up as asked,
    # from the passages its no-LLM form found (their similarity to that form ranks them).
    asked = rewritten or data.question
    key = backend.cache_key(asked, passages, data.response_schema)
    if key is not None:
        key = f"{key}:{services.catalog.generation()}"
    record = msgspec.structs.replace(
        record,
        chunk_ids=[p.chunk_id for p in passages],
        scores=[round(p.similarity, 4) for p in passages],
        backend=backend.name,
        embed_ms=retrieval.embed_ms,
        search_ms=retrieval.search_ms,
        streamed=streaming,
        retrieval_query=question if history else None,
    )
    if streaming:
        return _answer_events(services, backend, asked, passages, retrieval, key, record)
    started = time.perf_counter()
    cached = services.cache.get(key) if key is not None else None
    answer = cached
    if answer is None:

        def answer_it() -> Answer:
            with services.tracer.span("answer", backend=backend.name):
                return backend.answer(asked, passages, response_schema=data.response_schema)

        answer = await in_thread(answer_it)
    if key is not None and cached is None and answer.fallback_reason is None:
        services.cache.put(key, answer)
    response = query_response(
        answer, passages, retrieval, time.perf_counter() - started, cached, record
    )
    await services.log.record(interaction(record, answer, response, passages))
    return response


def interaction(
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


def query_response(
    answer: Answer,
    passages: list[Passage],
    retrieval: Timings,
    answer_seconds: float,
    cached: Answer | None = None,
    record: Interaction | None = None,
) -> QueryResponse:
    answer_ms = ms(answer_seconds)
    sources = [
        AnswerSource(
            number=p.number,
            document_id=p.document_id,
            source_name=p.source_name,
            page_start=p.page_start,
            page_end=p.page_end,
            char_start=p.char_start,
            char_end=p.char_end,
            snippet=readable(p.text)[:SNIPPET_CHARS],
            score=round(p.score, 4),
            similarity=round(p.similarity, 4),
            rerank_score=None if p.rerank_score is None else round(p.rerank_score, 4),
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
        request_id=record.request_id if record else "",
        retrieval_query=record.retrieval_query if record else None,
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
    yield event("sources", query_response(empty, passages, retrieval, 0.0).sources)
    cached = services.cache.get(key) if key is not None else None
    if cached is not None:
        yield event("token", {"text": cached.text})
        elapsed = time.perf_counter() - started
        done = query_response(cached, passages, retrieval, elapsed, cached, record)
        await services.log.record(interaction(record, cached, done, passages))
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
    done = query_response(final, passages, retrieval, elapsed, None, record)
    await services.log.record(interaction(record, final, done, passages))
    yield event("done", done)


def search_filter(
    principal: Principal,
    text: str,
    field: str,
    collection: str | None,
    filters: Filters | None = None,
) -> SearchFilter:
    """What a search of `text` may return, once the checks that refuse it have passed: the
    text is not empty, the caller may see the collection. Before any work is done for it."""
    if not text.strip():
        raise BadRequest(f"{field} is empty")
    return SearchFilter(
        collection=visible(principal, collection),
        collections=visible_collections(principal, collection),
        document_ids=filters.document_ids if filters else None,
        media_types=filters.media_types if filters else None,
        metadata=filters.metadata if filters else None,
    )


async def embed_for_retrieval(
    services: Services, text: str, mode: Mode | None, *, need_vector: bool = False
) -> QueryVector | None:
    """The query's vector when its retrieval needs one, awaited on the event loop (no thread
    waits for the query model); None for lexical retrieval."""
    if not needs_vector(mode or services.settings.retrieval_mode, need_vector):
        return None
    encoder = services.encoder
    model = encoder.model_id
    started = time.perf_counter()
    with services.tracer.stage("embed"):
        vector = await encoder.embed_query_async(text)
    return QueryVector(vector, model, time.perf_counter() - started)


def timed_retrieval(
    services: Services,
    text: str,
    k: int,
    where: SearchFilter,
    mode: Mode | None = None,
    *,
    need_vector: bool = False,
    embedded_query: QueryVector | None = None,
) -> tuple[Retrieved, Timings]:
    """The top-k chunks for `text` among those `where` allows (see `search_filter`), with
    the time each stage took (runs in a thread)."""
    retrieved = retrieve(
        services.catalog,
        services.encoder,
        services.settings,
        text,
        k=k,
        mode=mode,
        filters=where,
        need_vector=need_vector,
        stage=services.tracer.stage,
        reranker=services.reranker,
        embedded_query=embedded_query,
    )
    embed_s, search_s = retrieved.embed_seconds, retrieved.search_seconds
    timings = Timings(embed_ms=ms(embed_s), search_ms=ms(search_s), total_ms=ms(embed_s + search_s))
    return retrieved, timings
