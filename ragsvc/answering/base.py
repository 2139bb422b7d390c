"""The `LLMBackend` contract: a question and numbered passages in, a cited answer out."""

from __future__ import annotations

from typing import Protocol

import msgspec

NOT_FOUND = "Not found in the documents."


class Passage(msgspec.Struct, frozen=True):
    """A retrieved chunk, numbered from 1 in the order given to the backend."""

    number: int
    chunk_id: int
    document_id: int
    source_name: str
    text: str
    score: float
    page_start: int | None = None
    page_end: int | None = None
    char_start: int = 0
    char_end: int = 0


class Answer(msgspec.Struct, frozen=True):
    text: str
    citations: list[int]
    """Numbers of the passages the answer cites."""
    confidence: float
    answerable: bool
    backend: str
    model: str | None = None


class LLMBackend(Protocol):
    name: str

    def answer(self, question: str, passages: list[Passage]) -> Answer:
        """Answer from the passages only; `answerable=False` when they do not support one."""
        ...
