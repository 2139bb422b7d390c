"""The store's row types: what goes in (`NewDocument`, `NewChunk`, `ChunkEmbedding`), what
comes out (`DocumentRow`, `ChunkRow`, `ChunkData`, `Change`), and the column lists and queries
that read documents and chunks, shared by the synchronous store and the async reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import numpy as np

CONTEXT_SEPARATOR = "\n\n"


def embedded_text(context: str | None, text: str) -> str:
    """What is embedded and indexed for a chunk: its context, a blank line, its text."""
    return f"{context}{CONTEXT_SEPARATOR}{text}" if context else text


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ChunkEmbedding(NamedTuple):
    """A chunk text's embedding and, when the embedder pools them from the same forward pass,
    its sentences' spans (character offsets in the chunk text) and vectors."""

    vector: np.ndarray
    """float32, (dimension,), L2-normalised."""
    sentence_spans: np.ndarray | None = None
    """int32, (sentences, 2)."""
    sentence_vectors: np.ndarray | None = None
    """float16, (sentences, dimension), L2-normalised before rounding."""


class Change(NamedTuple):
    """What the change log says happened to chunks since a sequence number."""

    seq: int
    """The newest sequence number read; pass it back to read on from there."""
    added: np.ndarray
    removed: np.ndarray


class ChunkData(NamedTuple):
    """Chunks as an index needs them: ids (ascending), owners, text and vectors."""

    ids: np.ndarray
    document_ids: np.ndarray
    collection_ids: np.ndarray
    texts: list[str]
    vectors: np.ndarray


class NewChunk(msgspec.Struct, frozen=True):
    """A chunk ready to be stored; `text_hash` keys its embedding."""

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    text_hash: bytes
    page_start: int | None = None
    page_end: int | None = None
    location: str | None = None
    """Where in the document the chunk lies, beyond pages: "Intro > Results", "slide 2",
    "sheet Sales, rows 2-40"."""
    context: str | None = None
    """The document's title and heading path, embedded and indexed with the text (not part
    of `text` or its offsets); `text_hash` is the hash of `embedded_text`."""

    @property
    def embedded_text(self) -> str:
        return embedded_text(self.context, self.text)


class NewDocument(msgspec.Struct, frozen=True):
    """A fully extracted and chunked document, ready to be committed in one transaction."""

    collection: str
    source_name: str
    media_type: str
    sha256: str
    byte_size: int
    char_count: int
    chunks: list[NewChunk]
    external_id: str | None = None
    page_count: int | None = None
    metadata: dict[str, Any] = {}


class DocumentRow(msgspec.Struct, frozen=True):
    id: int
    collection: str
    source_name: str
    external_id: str | None
    media_type: str
    sha256: str
    byte_size: int
    status: str
    page_count: int | None
    char_count: int
    chunk_count: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ChunkRow(msgspec.Struct, frozen=True):
    id: int
    document_id: int
    ordinal: int
    text: str
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    token_count: int
    location: str | None = None


DOCUMENT_COLUMNS = """
    d.id, c.name, d.source_name, d.external_id, d.media_type, d.sha256, d.byte_size, d.status,
    d.page_count, d.char_count, d.chunk_count, d.metadata, d.created_at, d.updated_at
"""


CHUNK_COLUMNS = (
    "id, document_id, ordinal, text, page_start, page_end, char_start, char_end, token_count, "
    "location"
)
SELECT_DOCUMENT = (
    f"SELECT {DOCUMENT_COLUMNS} FROM documents d "
    "JOIN collections c ON c.id = d.collection_id WHERE d.id = ?"
)
SELECT_DOCUMENT_CHUNKS = (
    f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE document_id = ? ORDER BY ordinal"
)


def documents_query(
    collection: str | None, limit: int, offset: int, collections: Sequence[str] | None = None
) -> tuple[str, tuple[Any, ...]]:
    """A page of documents by id, of one collection or of any of `collections` when given:
    (SQL, parameters)."""
    sql = f"SELECT {DOCUMENT_COLUMNS} FROM documents d JOIN collections c ON c.id = d.collection_id"
    page = " ORDER BY d.id LIMIT ? OFFSET ?"
    if collection is not None:
        return sql + " WHERE c.name = ?" + page, (collection, limit, offset)
    if collections is not None:
        marks = ",".join("?" * len(collections))
        return sql + f" WHERE c.name IN ({marks})" + page, (*collections, limit, offset)
    return sql + page, (limit, offset)


def document_row(row: Any) -> DocumentRow:
    values = list(row)
    values[11] = json.loads(values[11])
    return DocumentRow(*values)
