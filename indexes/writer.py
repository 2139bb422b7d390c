"""Writing documents: every mutation of documents, chunks and embeddings, one transaction each.

A document is stored complete (row, chunks, embeddings) or not at all. The writer touches only
SQLite: triggers record every chunk added or removed in the change log in the same
transaction, and every process holding indexes in memory (`IndexReader`) follows that log, so
writers in several processes (the service's worker, a CLI ingest) can work beside each other.
SQLite serialises their transactions; the dedup checks run inside them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
import numpy as np

from indexes.errors import DocumentNotFound, ModelChanged
from indexes.rows import ChunkEmbedding, NewDocument, utc_now
from indexes.store import Store

CommitAction = Literal["added", "replaced", "unchanged"]


class CommitResult(msgspec.Struct, frozen=True):
    document_id: int
    source_name: str
    action: CommitAction
    chunk_count: int


class StoreWriter:
    """The write path of one store, for one embedding model."""

    def __init__(self, store: Store, model_id: str) -> None:
        self.store = store
        self.model_id = model_id

    def commit(
        self,
        documents: Sequence[NewDocument],
        vectors: Mapping[bytes, np.ndarray | ChunkEmbedding],
    ) -> list[CommitResult]:
        """Store documents, each complete or not at all, in one transaction.

        `vectors` holds the embeddings computed for this batch; any chunk text not in it
        must already have a stored embedding. A document whose bytes already exist in its
        collection is left as it is ("unchanged"); one whose source name exists with other
        bytes replaces the old version ("replaced"). Raises `LookupError`, storing nothing,
        when a chunk would be left without an embedding.
        """
        results: list[CommitResult] = []
        with self.store.write() as conn:
            stored = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()
            if stored is not None and stored[0] != self.model_id:
                raise ModelChanged(str(stored[0]), self.model_id)
            Store.insert_embeddings(conn, self.model_id, vectors)
            first_new = _next_id(conn, "documents")
            for document in documents:
                results.append(self._commit_one(conn, document))
            unembedded = conn.execute(
                "SELECT COUNT(*) FROM chunks ch LEFT JOIN embeddings e ON e.model_id = ? "
                "AND e.text_hash = ch.text_hash WHERE ch.document_id >= ? AND e.vector IS NULL",
                (self.model_id, first_new),
            ).fetchone()[0]
            if unembedded:
                raise LookupError(
                    f"{unembedded} chunks have no embedding for {self.model_id!r}; "
                    "nothing was stored"
                )
        return results

    def _commit_one(self, conn: sqlite3.Connection, document: NewDocument) -> CommitResult:
        collection_id = Store.ensure_collection(conn, document.collection)
        existing = conn.execute(
            "SELECT id FROM documents WHERE collection_id = ? AND sha256 = ?",
            (collection_id, document.sha256),
        ).fetchone()
        if existing is not None:
            return CommitResult(int(existing[0]), document.source_name, "unchanged", 0)
        action: CommitAction = "added"
        previous = conn.execute(
            "SELECT id FROM documents WHERE collection_id = ? AND source_name = ?",
            (collection_id, document.source_name),
        ).fetchone()
        if previous is not None:
            action = "replaced"
            conn.execute("DELETE FROM documents WHERE id = ?", (previous[0],))
        now = utc_now()
        cursor = conn.execute(
            "INSERT INTO documents(collection_id, external_id, source_name, media_type, "
            "sha256, byte_size, status, page_count, char_count, chunk_count, metadata, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?)",
            (
                collection_id,
                document.external_id,
                document.source_name,
                document.media_type,
                document.sha256,
                document.byte_size,
                document.page_count,
                document.char_count,
                len(document.chunks),
                msgspec.json.encode(document.metadata).decode(),
                now,
                now,
            ),
        )
        document_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT INTO chunks(document_id, ordinal, text, page_start, page_end, "
            "char_start, char_end, token_count, text_hash, location, context) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    document_id,
                    c.ordinal,
                    c.text,
                    c.page_start,
                    c.page_end,
                    c.char_start,
                    c.char_end,
                    c.token_count,
                    c.text_hash,
                    c.location,
                    c.context,
                )
                for c in document.chunks
            ),
        )
        return CommitResult(document_id, document.source_name, action, len(document.chunks))

    def delete_document(self, document_id: int, collection: str | None = None) -> int:
        """Delete a document, its chunks and embeddings' references; returns how many chunks
        went. Raises `DocumentNotFound` (or `CollectionNotFound`) and changes nothing."""
        with self.store.write() as conn:
            if collection is not None:
                collection_id = self.store.collection_id(collection, conn)
                row = conn.execute(
                    "SELECT chunk_count FROM documents WHERE id = ? AND collection_id = ?",
                    (document_id, collection_id),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT chunk_count FROM documents WHERE id = ?", (document_id,)
                ).fetchone()
            if row is None:
                raise DocumentNotFound(document_id, collection)
            conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            return int(row[0])

    def create_collection(self, name: str) -> bool:
        """Create an empty collection; False when it already exists."""
        with self.store.write(bump_generation=False) as conn:
            exists = conn.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone()
            if exists is None:
                Store.ensure_collection(conn, name)
            return exists is None

    def delete_collection(self, name: str) -> tuple[int, int]:
        """Delete a collection with its documents, chunks and their vectors: (documents,
        chunks) deleted. Raises `CollectionNotFound` and changes nothing."""
        with self.store.write() as conn:
            collection_id = self.store.collection_id(name, conn)
            documents, chunks = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(chunk_count), 0) FROM documents "
                "WHERE collection_id = ?",
                (collection_id,),
            ).fetchone()
            conn.execute("DELETE FROM documents WHERE collection_id = ?", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            return int(documents), int(chunks)

    def store_embeddings(
        self, model_id: str, vectors: Mapping[bytes, np.ndarray | ChunkEmbedding]
    ) -> None:
        with self.store.write(bump_generation=False) as conn:
            Store.insert_embeddings(conn, model_id, vectors)

    def set_model(self, model_id: str, dimension: int, model_name: str | None = None) -> bool:
        """Make `model_id` the store's model, in one transaction that first checks every chunk
        has an embedding for it: False (nothing changed) when one does not (a writer of the
        old model committed since they were counted). `model_name` is what loads the model."""
        with self.store.write() as conn:
            if Store.count_missing_embeddings(conn, model_id):
                return False
            Store.set_meta(conn, "model_id", model_id)
            Store.set_meta(conn, "dimension", str(dimension))
            if model_name is not None:
                Store.set_meta(conn, "embedding_model", model_name)
        self.model_id = model_id
        return True

    def drop_embeddings(self, model_id: str) -> int:
        """Forget every stored embedding of `model_id` (a re-embed given up); returns how many."""
        with self.store.write(bump_generation=False) as conn:
            return conn.execute("DELETE FROM embeddings WHERE model_id = ?", (model_id,)).rowcount


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    """The id AUTOINCREMENT gives the next row of `table` (ids are never reused)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) + 1 if row is not None else 1
