"""The SQLite store: collections, documents, chunks and embeddings, the source of truth.

Everything needed to rebuild the vector index lives here: chunk text, the embedding of every
chunk text keyed by (model id, text hash), the model id and its dimension. Its parts:

    schema.py           the schema, migrations and connections (`StoreFile`)
    rows.py             the row types
    embedding_cache.py  vectors by (model id, text hash)
    change_log.py       chunks added and removed, in order
    store.py            this: collections, documents and chunks, and the reads the service needs

Reads use one connection per thread; writes go through `Store.write()`, one transaction at a
time under a lock, and each write transaction advances the store's *generation*, which the
vector-index manifest records so that a stale index is detected on open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from indexes.change_log import ChangeLog
from indexes.embedding_cache import EmbeddingCache
from indexes.errors import CollectionNotFound, DocumentNotFound
from indexes.rows import (
    CHUNK_COLUMNS,
    SELECT_DOCUMENT,
    SELECT_DOCUMENT_CHUNKS,
    ChunkRow,
    DocumentRow,
    NewChunk,
    document_row,
    documents_query,
    utc_now,
)
from indexes.schema import batches


class Store(EmbeddingCache, ChangeLog):
    """One SQLite store file: its collections, documents and chunks, the embedding cache and
    the change log (see `StoreFile` for connections and writes)."""

    # -- collections and documents -----------------------------------------------------------

    def collection_id(self, name: str, conn: sqlite3.Connection | None = None) -> int:
        row = (
            (conn or self.reader())
            .execute("SELECT id FROM collections WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise CollectionNotFound(name)
        return int(row[0])

    def collection_ids(self, names: Sequence[str]) -> list[int]:
        """The ids of those of `names` that exist."""
        rows = (
            self.reader()
            .execute(
                f"SELECT id FROM collections WHERE name IN ({','.join('?' * len(names))})", names
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows]

    @staticmethod
    def ensure_collection(conn: sqlite3.Connection, name: str) -> int:
        conn.execute(
            "INSERT INTO collections(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
            (name, utc_now()),
        )
        return int(conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()[0])

    def collections(self) -> list[str]:
        rows = self.reader().execute("SELECT name FROM collections ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def find_by_sha256(self, collection: str, sha256: str) -> int | None:
        row = (
            self.reader()
            .execute(
                "SELECT d.id FROM documents d JOIN collections c ON c.id = d.collection_id "
                "WHERE c.name = ? AND d.sha256 = ?",
                (collection, sha256),
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def document(self, document_id: int) -> DocumentRow:
        row = self.reader().execute(SELECT_DOCUMENT, (document_id,)).fetchone()
        if row is None:
            raise DocumentNotFound(document_id)
        return document_row(row)

    def documents(
        self, collection: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[DocumentRow]:
        if collection is not None:
            self.collection_id(collection)
        sql, params = documents_query(collection, limit, offset)
        rows = self.reader().execute(sql, params).fetchall()
        return [document_row(r) for r in rows]

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        found: dict[int, ChunkRow] = {}
        for batch in batches(list(chunk_ids)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch
            )
            for row in rows:
                found[int(row[0])] = ChunkRow(*row)
        return found

    def document_chunks(self, document_id: int) -> list[ChunkRow]:
        rows = self.reader().execute(SELECT_DOCUMENT_CHUNKS, (document_id,))
        return [ChunkRow(*row) for row in rows]

    def change_position(self) -> int:
        """The newest change-log sequence number: what a copy of the store reflects."""
        with self.snapshot() as conn:
            return self.change_seq(conn)

    def stored_chunks(self, document_id: int) -> list[NewChunk]:
        """A document's chunks as they were committed, with the context and text hash that key
        their embeddings (to move the document into another store)."""
        rows = self.reader().execute(
            "SELECT ordinal, text, char_start, char_end, token_count, text_hash, page_start, "
            "page_end, location, context FROM chunks WHERE document_id = ? ORDER BY ordinal",
            (document_id,),
        )
        return [
            NewChunk(
                ordinal=row[0],
                text=row[1],
                char_start=row[2],
                char_end=row[3],
                token_count=row[4],
                text_hash=bytes(row[5]),
                page_start=row[6],
                page_end=row[7],
                location=row[8],
                context=row[9],
            )
            for row in rows
        ]

    def chunk_ids(self, collection: str | None = None) -> np.ndarray:
        if collection is None:
            rows = self.reader().execute("SELECT id FROM chunks ORDER BY id")
        else:
            collection_id = self.collection_id(collection)
            rows = self.reader().execute(
                "SELECT ch.id FROM chunks ch JOIN documents d ON d.id = ch.document_id "
                "WHERE d.collection_id = ? ORDER BY ch.id",
                (collection_id,),
            )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def document_ids_where(self, where: str, params: Sequence[object]) -> np.ndarray:
        """Ids of documents matching a condition on `d` (documents) and `col` (collections)."""
        rows = self.reader().execute(
            "SELECT d.id FROM documents d JOIN collections col ON col.id = d.collection_id "
            f"WHERE {where}",
            list(params),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    # -- counts ------------------------------------------------------------------------------

    def counts(self) -> list[tuple[str, int, int]]:
        """(collection, documents, chunks) for every collection."""
        rows = self.reader().execute(
            "SELECT c.name, COUNT(DISTINCT d.id), COUNT(ch.id) FROM collections c "
            "LEFT JOIN documents d ON d.collection_id = c.id "
            "LEFT JOIN chunks ch ON ch.document_id = d.id GROUP BY c.id ORDER BY c.name"
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def chunk_count(self) -> int:
        return int(self.reader().execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    # -- reads the service needs --------------------------------------------------------------

    def neighbour_chunks(self, document_id: int, ordinal: int, radius: int) -> list[ChunkRow]:
        """The document's chunks `radius` before and after chunk `ordinal`, in order."""
        rows = self.reader().execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks "
            "WHERE document_id = ? AND ordinal BETWEEN ? AND ? ORDER BY ordinal",
            (document_id, ordinal - radius, ordinal + radius),
        )
        return [ChunkRow(*row) for row in rows]

    def documents_named_under(self, collection: str, prefix: str) -> dict[str, tuple[int, str]]:
        """name → (document id, sha256) of the collection's documents named under `prefix`."""
        rows = self.reader().execute(
            "SELECT d.source_name, d.id, d.sha256 FROM documents d "
            "JOIN collections c ON c.id = d.collection_id "
            "WHERE c.name = ? AND substr(d.source_name, 1, ?) = ?",
            (collection, len(prefix), prefix),
        )
        return {str(name): (int(doc_id), str(sha)) for name, doc_id, sha in rows}

    def all_documents(self, collections: Sequence[str] | None = None) -> list[DocumentRow]:
        """Every document by id, of every collection or of those of `collections`."""
        sql, params = documents_query(None, -1, 0, collections)
        return [document_row(r) for r in self.reader().execute(sql, params)]

    def chunk_documents(self) -> dict[int, int]:
        """chunk id → document id, of every chunk."""
        rows = self.reader().execute("SELECT id, document_id FROM chunks")
        return {int(chunk_id): int(document_id) for chunk_id, document_id in rows}

    def external_ids(self, *, by_chunk: bool = False) -> dict[int, str]:
        """document id → the id a corpus gave it (`external_id`); with `by_chunk`, chunk id →
        its document's external id."""
        if by_chunk:
            sql = (
                "SELECT ch.id, d.external_id FROM chunks ch "
                "JOIN documents d ON d.id = ch.document_id"
            )
        else:
            sql = "SELECT id, external_id FROM documents"
        return {int(key): str(value) for key, value in self.reader().execute(sql)}
