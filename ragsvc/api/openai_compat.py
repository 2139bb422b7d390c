"""An OpenAI-compatible front door: `POST /v1/chat/completions` and `GET /v1/models`.

Chat front-ends (Open WebUI, LibreChat) and the OpenAI SDKs can use ragsvc as a model. The
last user message is the question, answered through `/query`'s own path (retrieval, the
configured backend, citations, confidence, the interaction log); the user and assistant
messages before it are the conversation it follows (`/query`'s `messages`), so a follow-up is
searched in its standalone form. Models are `ragsvc` (every collection the key may read) and
`ragsvc/COLLECTION` (one).
Keys work as `Authorization: Bearer KEY`, which is how the SDKs send them.

Besides OpenAI's fields, a completion carries `sources` (as in `/query`: document, pages,
location, snippet, score, `cited`) and `ragsvc` (`answerable`, `confidence`, `backend`,
`request_id`). Streamed, the answer comes as `chat.completion.chunk` events, the last of
which (with `finish_reason`) carries `sources` and `ragsvc`, then `data: [DONE]`.
Errors have OpenAI's shape, `{"error": {"message", "type", "code"}}`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody
from litestar.response import ServerSentEventMessage
from msgspec import Meta

from indexes import NotFound
from ragsvc.answering.conversation import Turn
from ragsvc.api.answer_flow import EventStream, answer_question
from ragsvc.api.common import Caller
from ragsvc.api.problems import status_of
from ragsvc.api.schemas import QueryRequest, QueryResponse
from ragsvc.errors import BadRequest, ServiceError
from ragsvc.interactions.log import Interaction, interaction_scope
from ragsvc.security.keys import Principal
from ragsvc.telemetry.logs import REQUEST_ID

MODEL = "ragsvc"
MAX_MESSAGES = 1000
logger = logging.getLogger(__name__)


class OpenAIError(msgspec.Struct, frozen=True):
    message: str
    type: str
    code: int


class OpenAIErrorBody(msgspec.Struct, frozen=True):
    """What every error of these routes is, as OpenAI's clients expect it."""

    error: OpenAIError


def _error_responses() -> dict[int, ResponseSpec]:
    """The OpenAPI document's word for these routes' errors: OpenAI's shape, not the
    problem details of the rest of the API."""
    reasons = {
        400: "malformed request",
        413: "a request over max_request_bytes",
        401: "no API key, or one unknown or revoked",
        403: "the key's scope or collections do not allow it",
        404: "an unknown model (collection)",
        429: "over the key's rate limit",
        500: "an internal error",
        502: "the LLM failed",
    }
    return {
        status: ResponseSpec(
            data_container=OpenAIErrorBody, description=reason, media_type="application/json"
        )
        for status, reason in reasons.items()
    }


ERROR_RESPONSES = _error_responses()


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: Annotated[str, Meta(max_length=20_000)] | list[ContentPart] | None = None


class ChatCompletionRequest(msgspec.Struct, frozen=True):
    """OpenAI's request; fields ragsvc does not use (temperature, tools...) are accepted and
    ignored, since clients send them by default."""

    model: Annotated[str, Meta(min_length=1, max_length=300)]
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    user: str | None = None


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return " ".join(p.text or "" for p in message.content or [] if p.type == "text")


def _question(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            text = _text(message).strip()
            if not text:
                raise BadRequest("the last user message is empty")
            return text
    raise BadRequest("no user message: the last user message is the question")


def _conversation(body: ChatCompletionRequest) -> list[Turn]:
    """The user and assistant messages before the last user message (system ones aside)."""
    last = max(i for i, m in enumerate(body.messages) if m.role == "user")
    return [
        Turn("user" if m.role == "user" else "assistant", _text(m).strip())
        for m in body.messages[:last]
        if m.role in ("user", "assistant") and _text(m).strip()
    ]


def _collection(model: str, principal: Principal, known: set[str]) -> str | None:
    if model == MODEL:
        return None
    prefix = f"{MODEL}/"
    name = model.removeprefix(prefix)
    if not model.startswith(prefix) or name not in known or not principal.sees(name):
        raise NotFound(f"model {model!r} does not exist; GET /v1/models lists them")
    return name


def _extras(response: QueryResponse) -> dict[str, Any]:
    return {
        "sources": msgspec.to_builtins(response.sources),
        "ragsvc": {
            "answerable": response.answerable,
            "confidence": response.confidence,
            "backend": response.backend,
            "model": response.model,
            "request_id": response.request_id,
            "retrieval_query": response.retrieval_query,
        },
    }


@get(
    "/v1/models",
    summary="OpenAI-compatible: the models (ragsvc, and one per collection)",
    exception_handlers={Exception: lambda r, e: openai_error(r, e)},
    responses=ERROR_RESPONSES,
)
async def list_models(state: State, principal: Caller) -> dict[str, Any]:
    services = state.services
    names = None if principal.collections is None else sorted(principal.collections)
    collections = [row[0] for row in await services.reads.collections(names)]
    created = int(time.time())
    ids = [MODEL, *(f"{MODEL}/{name}" for name in collections)]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": created, "owned_by": MODEL} for i in ids],
    }


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="OpenAI-compatible: answer the last user message from the documents, with sources",
    exception_handlers={Exception: lambda r, e: openai_error(r, e)},
    responses=ERROR_RESPONSES,
)
async def chat_completions(
    state: State,
    principal: Caller,
    data: JSONBody[ChatCompletionRequest],
) -> Any:

    services = state.services
    question = _question(data)
    known = {row[0] for row in await services.reads.collections(None)}
    collection = _collection(data.model, principal, known)
    request_id = REQUEST_ID.get() or uuid.uuid4().hex
    record = Interaction(
        request_id=request_id,
        question=question,
        collection=collection,
        key_id=principal.key_id,
        scope=interaction_scope(principal.collections, collection),
    )
    query = QueryRequest(
        question=question,
        messages=_conversation(data) or None,
        collection=collection,
        stream=data.stream,
    )
    completion_id = f"chatcmpl-{request_id}"
    created = int(time.time())
    result = await answer_question(services, principal, query, record, streaming=data.stream)
    if isinstance(result, QueryResponse):
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": data.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            **_extras(result),
        }
    return EventStream(_chunks(result, completion_id, created, data.model))


async def _chunks(
    events: AsyncIterator[ServerSentEventMessage], completion_id: str, created: int, model: str
) -> AsyncIterator[ServerSentEventMessage]:
    """`/query`'s events as OpenAI's `chat.completion.chunk`s, then `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return msgspec.json.encode(body).decode()

    yield ServerSentEventMessage(data=chunk({"role": "assistant", "content": ""}))
    async for event in events:
        payload = msgspec.json.decode(str(event.data))
        if event.event == "token":
            yield ServerSentEventMessage(data=chunk({"content": payload["text"]}))
        elif event.event == "done":
            done = msgspec.convert(payload, QueryResponse)
            yield ServerSentEventMessage(data=chunk({}, "stop", **_extras(done)))
        elif event.event == "error":
            error = {"message": payload["detail"], "type": "upstream_error", "code": 502}
            yield ServerSentEventMessage(data=msgspec.json.encode({"error": error}).decode())
    yield ServerSentEventMessage(data="[DONE]")


def openai_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """Errors on `/v1/` routes in OpenAI's shape, with the same status as elsewhere."""
    status, detail = status_of(error)
    if status == 500:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
    kind = "invalid_request_error" if status < 500 else "server_error"
    headers = error.response_headers() if isinstance(error, ServiceError) else None
    return Response(
        {"error": {"message": detail, "type": kind, "code": status}},
        status_code=status,
        headers=headers or None,
    )
