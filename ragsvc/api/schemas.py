"""Request and response bodies of the HTTP API, as msgspec structs.

Requests refuse unknown fields and carry their limits (`Meta`), so a bad body is a 400 that
names the field. Store rows (`DocumentRow`, `ChunkRow`, `SearchHit`) are returned as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from indexes import ChunkRow, DocumentRow, SearchHit
from indexes.fusion import Mode
from ragsvc.answering.conversation import Turn
from ragsvc.interactions.log import Feedback
from ragsvc.jobs.queue import Job

Question = Annotated[str, Meta(min_length=1, max_length=10_000)]
TopK = Annotated[int, Meta(ge=1, le=100)]
CollectionName = Annotated[str, Meta(min_length=1, max_length=200)]
# SQLite integers are 64-bit: anything wider is refused here rather than overflowing there.
RowId = Annotated[int, Meta(ge=1, le=2**63 - 1)]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=200)]
MetadataFilterValue = (
    Annotated[str, Meta(max_length=10_000)]
    | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    | float
    | bool
)
MAX_METADATA_KEYS = 64


class RequestBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Filters(RequestBody):
    """Every given condition must hold; `metadata` is equality on user metadata keys."""

    document_ids: Annotated[list[RowId], Meta(max_length=10_000)] | None = None
    media_types: (
        Annotated[list[Annotated[str, Meta(max_length=200)]], Meta(max_length=50)] | None
    ) = None
    metadata: (
        Annotated[dict[MetadataKey, MetadataFilterValue], Meta(max_length=MAX_METADATA_KEYS)] | None
    ) = None


class SearchRequest(RequestBody):
    query: Question
    k: TopK = 5
    collection: CollectionName | None = None
    mode: Mode | None = None
    """`dense`, `lexical` or `hybrid`; the `retrieval_mode` setting when absent."""
    filters: Filters | None = None


class QueryRequest(RequestBody):
    question: Question
    messages: Annotated[list[Turn], Meta(max_length=100)] | None = None
    """The conversation so far, oldest first: earlier questions (`user`) and the answers given
    (`assistant`). A follow-up is searched in its standalone form (`retrieval_query`)."""
    k: TopK = 5
    collection: CollectionName | None = None
    mode: Mode | None = None
    filters: Filters | None = None
    backend: Annotated[str, Meta(max_length=100)] | None = None
    """`extractive`, or the configured `answer_backend` (the default)."""
    stream: bool = False
    """Answer with Server-Sent Events: `sources`, `token`..., then `done` (or `error`)."""
    response_schema: dict[str, Any] | None = None
    """A JSON Schema the answer must match (LLM backends; not with `stream`)."""


class Timings(msgspec.Struct, frozen=True):
    """Milliseconds per stage."""

    embed_ms: float
    search_ms: float
    answer_ms: float = 0.0
    total_ms: float = 0.0


class SearchResult(msgspec.Struct, frozen=True):
    """One chunk `/search` found, best first."""

    chunk_id: int
    document_id: int
    source_name: str
    collection: str
    ordinal: int
    """The chunk's place in its document, from 0."""
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    text: str
    score: float
    """The rank score of the mode used: cosine similarity (dense), BM25 (lexical) or the
    fused score (hybrid). Compare scores within one response only."""
    similarity: float | None = None
    """The cosine similarity to the query, whatever ranked the chunk (none in lexical mode,
    which embeds no query)."""
    rerank_score: float | None = None
    """The reranker's score, when one is configured; it then decides the order."""
    retrievers: int = 1
    """How many retrievers had the chunk among their candidates (2 in hybrid: both agree)."""
    location: str | None = None
    """Where in the document beyond pages: heading path, slide, sheet and rows."""

    @classmethod
    def of(cls, hit: SearchHit) -> SearchResult:
        return cls(**msgspec.structs.asdict(hit))


class SearchResponse(msgspec.Struct, frozen=True):
    results: list[SearchResult]
    timings: Timings


class AnswerSource(msgspec.Struct, frozen=True):
    """A passage an answer was made from, numbered as the answer cites it."""

    number: int
    document_id: int
    source_name: str
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    snippet: str
    """The start of the passage as a reader sees it (line-end hyphens joined)."""
    score: float
    """The rank score of the mode that found the passage, as in `/search`."""
    similarity: float
    """The passage's cosine similarity to the question, on which `confidence` is computed
    (it need not fall with the number: the mode's score ordered them)."""
    cited: bool
    location: str | None = None
    """Where in the document beyond pages: heading path, slide, sheet and rows."""
    quote: str | None = None
    """The text the answer quotes from this source (the extractive answerer quotes)."""
    rerank_score: float | None = None
    """The reranker's score, when one is configured."""


class QueryResponse(msgspec.Struct, frozen=True):
    answer: str
    answerable: bool
    confidence: float
    backend: str
    sources: list[AnswerSource]
    timings: Timings
    model: str | None = None
    template: str | None = None
    citations_dropped: int = 0
    fallback_reason: str | None = None
    cached: bool = False
    data: Any = None
    """The JSON object matching `response_schema`, when one was asked for."""
    request_id: str = ""
    """Identifies this query in the interaction log."""
    retrieval_query: str | None = None
    """What was searched when the question came with a conversation: the follow-up in its
    standalone form."""


class TemplateInfo(msgspec.Struct, frozen=True):
    name: str
    version: int
    variables: list[str]


class TemplateList(msgspec.Struct, frozen=True):
    templates: list[TemplateInfo]


class FeedbackRequest(RequestBody):
    request_id: Annotated[str, Meta(min_length=1, max_length=128)]
    """The `request_id` of the answer (in every `/query` response and its `done` event)."""
    rating: Literal["up", "down"]
    correction: Annotated[str, Meta(min_length=1, max_length=20_000)] | None = None
    """What the answer should have said."""
    comment: Annotated[str, Meta(min_length=1, max_length=5_000)] | None = None


class InteractionView(msgspec.Struct, frozen=True):
    request_id: str
    at: str
    question: str
    answer: str | None
    answerable: bool | None
    confidence: float | None
    backend: str | None
    collection: str | None
    scope: list[str] | None
    """The collections the question could search when it named none (None: every one)."""
    chunk_ids: list[int]
    cited_chunk_ids: list[int]
    feedback: Feedback | None
    retrieval_query: str | None = None
    """What was searched for a follow-up: its standalone form."""


class InteractionList(msgspec.Struct, frozen=True):
    interactions: list[InteractionView]
    limit: int
    offset: int = 0
    next_offset: int | None = None


class JobList(msgspec.Struct, frozen=True):
    jobs: list[Job]
    limit: int | None = None
    offset: int = 0
    next_offset: int | None = None


class NewCollection(RequestBody):
    name: CollectionName


class CollectionInfo(msgspec.Struct, frozen=True):
    name: str
    documents: int
    chunks: int


class CollectionList(msgspec.Struct, frozen=True):
    collections: list[CollectionInfo]


class DocumentList(msgspec.Struct, frozen=True):
    documents: list[DocumentRow]
    limit: int
    offset: int
    next_offset: int | None


class ChunkList(msgspec.Struct, frozen=True):
    document_id: int
    chunks: list[ChunkRow]
    limit: int | None = None
    offset: int = 0
    next_offset: int | None = None
    """The offset of the next page, when there is one."""


class Health(msgspec.Struct, frozen=True):
    status: str


class WorkerInfo(msgspec.Struct, frozen=True):
    mode: str
    """`process` or `thread` (setting `ingest_worker`)."""
    pid: int | None
    """The worker's process id; None while it is being restarted."""
    restarts: int
    ready: bool = False
    """It has loaded its model and takes jobs (uploads are queued, and kept, before that)."""


class Ready(msgspec.Struct, frozen=True):
    status: str
    documents: int
    chunks: int
    """Chunks in the served index."""
    vectors: int
    model: str
    index: str
    jobs: dict[str, int]
    query_runtime: str = ""
    """What embeds queries: `openvino-bf16`, `onnxruntime-fp32`, or `torch`."""
    lexical_entries: int = 0
    """Chunks in the served BM25 index (equal to `vectors` once caught up)."""
    change_seq: int = 0
    """The store's change-log position the served index reflects."""
    worker: WorkerInfo | None = None
    server_pid: int = 0
