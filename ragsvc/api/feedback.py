"""Routes for what readers say of answers: feedback, the interaction log, and the prompt
templates answers were made with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from litestar import get, post
from litestar.datastructures import State
from litestar.params import JSONBody, QueryParameter

from ragsvc.api.common import Caller, services_of
from ragsvc.api.schemas import (
    FeedbackRequest,
    InteractionList,
    InteractionView,
    TemplateInfo,
    TemplateList,
)
from ragsvc.errors import (
    AnswerNotFound,
    BadRequest,
    Conflict,
)
from ragsvc.interactions.log import (
    Feedback,
    FeedbackUnavailable,
)


@post(
    "/feedback",
    status_code=200,
    summary="Rate an answer (up or down), optionally with a correction; again to replace it",
)
async def give_feedback(
    state: State, principal: Caller, data: JSONBody[FeedbackRequest]
) -> Feedback:
    log = services_of(state).log
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
        found, next_offset = await services_of(state).log.rated(
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
            retrieval_query=r.interaction.retrieval_query,
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
    templates = sorted(services_of(state).templates.values(), key=lambda t: t.name)
    return TemplateList([TemplateInfo(t.name, t.version, list(t.variables)) for t in templates])
