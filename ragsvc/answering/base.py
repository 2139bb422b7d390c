"""The `LLMBackend` contract: a question and numbered passages in, a cited answer out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import msgspec

from ragsvc.answering.conversation import Turn

NOT_FOUND = "Not found in the documents."


class Passage(msgspec.Struct, frozen=True):
    """A retrieved chunk, numbered from 1 in the order given to the backend."""

    number: int
    chunk_id: int
    document_id: int
    source_name: str
    text: str
    similarity: float
    """The cosine similarity of the passage to the question, on which confidence is
    calibrated, whatever ranked it."""
    score: float = 0.0
    """The rank score of the retrieval mode that found it (cosine, BM25 or fused)."""
    rerank_score: float | None = None
    """A reranker's score, when one ordered the passages."""
    page_start: int | None = None
    page_end: int | None = None
    char_start: int = 0
    char_end: int = 0
    retrievers: int = 1
    """How many retrievers found the passage (2 when dense and lexical agree)."""
    location: str | None = None
    """Where in its document the passage lies beyond pages (heading path, slide, sheet)."""
    sentence_spans: Any = None
    """The sentences of `text` as an int array of (start, end), when stored with the chunk."""
    sentence_vectors: Any = None
    """Their float32 vectors, pooled at ingestion from the chunk's own forward pass."""


class Answer(msgspec.Struct, frozen=True):
    text: str
    citations: list[int]
    """Numbers of the passages the answer cites (after unsupported citations are dropped)."""
    confidence: float
    answerable: bool
    backend: str
    model: str | None = None
    template: str | None = None
    citations_dropped: int = 0
    fallback_reason: str | None = None
    """Set when the configured backend failed and this answer is the extractive fallback's."""
    data: Any = None
    """The validated JSON object, when a response schema was asked for."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    quotes: dict[int, str] = {}
    """Passage number to the text quoted from it, where the backend quotes (extractive)."""


class LLMBackend(Protocol):
    name: str
    model: str | None

    def answer(
        self,
        question: str,
        passages: list[Passage],
        *,
        response_schema: dict[str, Any] | None = None,
    ) -> Answer:
        """Answer from the passages only; `answerable=False` when they do not support one."""
        ...

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str | Answer]:
        """Text pieces as they are produced, then the final `Answer`."""
        ...

    def cache_key(
        self, question: str, passages: list[Passage], response_schema: dict[str, Any] | None
    ) -> str | None:
        """A key for deterministic requests (same prompt, same answer), or None."""
        ...

    def condense(self, question: str, history: Sequence[Turn]) -> str | None:
        """A follow-up rewritten to stand alone after `history`, or None where the backend
        does not rewrite (the caller then searches a form made without it)."""
        ...
