"""The embedding cache: every chunk text's vector (and sentence vectors) stored once per
(model id, text hash), so a text seen again is never embedded again and an index can be
rebuilt without the model."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from indexes.rows import CONTEXT_SEPARATOR, ChunkEmbedding
from indexes.schema import StoreFile, batches


class EmbeddingCache(StoreFile):
    # -- embeddings --------------------------------------------------------------------------

    def cached_hashes(self, model_id: str, text_hashes: Iterable[bytes]) -> set[bytes]:
        """The subset of `text_hashes` that already has an embedding for `model_id`."""
        found: set[bytes] = set()
        for batch in batches(list(text_hashes)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                f"SELECT text_hash FROM embeddings WHERE model_id = ? AND text_hash IN ({marks})",
                (model_id, *batch),
            )
            found.update(bytes(r[0]) for r in rows)
        return found

    def vectors_for_chunks(
        self,
        model_id: str,
        chunk_ids: Sequence[int] | None,
        dimension: int,
        *,
        conn: sqlite3.Connection | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) batches for the given chunks, or for every chunk when None.

        `conn` reads through a writer's open transaction instead of this thread's reader.
        Raises `LookupError` when a chunk has no stored embedding for `model_id`.
        """
        conn = conn or self.reader()

        def rows_for(batch: list[int] | None) -> list[sqlite3.Row]:
            sql = (
                "SELECT ch.id, e.vector FROM chunks ch LEFT JOIN embeddings e "
                "ON e.model_id = ? AND e.text_hash = ch.text_hash"
            )
            if batch is None:
                return conn.execute(sql + " ORDER BY ch.id", (model_id,)).fetchall()
            marks = ",".join("?" * len(batch))
            return conn.execute(sql + f" WHERE ch.id IN ({marks})", (model_id, *batch)).fetchall()

        def to_arrays(rows: list[sqlite3.Row]) -> tuple[np.ndarray, np.ndarray]:
            missing = [int(r[0]) for r in rows if r[1] is None]
            if missing:
                raise LookupError(
                    f"{len(missing)} chunks have no stored embedding for {model_id!r} "
                    f"(first: {missing[:5]}); run `ragsvc rebuild --reembed`"
                )
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            return ids, vectors.reshape(len(rows), dimension)

        if chunk_ids is None:
            rows = rows_for(None)
            for start in range(0, len(rows), 10_000):
                yield to_arrays(rows[start : start + 10_000])
        else:
            for batch in batches(list(chunk_ids)):
                yield to_arrays(rows_for(batch))

    def texts_missing_embeddings(self, model_id: str) -> list[tuple[bytes, str]]:
        """Distinct (text hash, embedded text) of chunks with no embedding for `model_id`."""
        rows = self.reader().execute(
            f"SELECT ch.text_hash, MIN(COALESCE(ch.context || '{CONTEXT_SEPARATOR}', '') || "
            "ch.text) FROM chunks ch LEFT JOIN embeddings e "
            "ON e.model_id = ? AND e.text_hash = ch.text_hash WHERE e.text_hash IS NULL "
            "GROUP BY ch.text_hash",
            (model_id,),
        )
        return [(bytes(r[0]), str(r[1])) for r in rows]

    def chunks_missing_embeddings(
        self, model_id: str, after_id: int, limit: int
    ) -> tuple[int, list[tuple[bytes, str | None, str]]]:
        """The next chunks by id after `after_id` with no embedding for `model_id`, as (text
        hash, context, text), at most `limit`; and the last chunk id read (walk on from it:
        chunk ids only grow, so a walk also meets chunks committed while it runs)."""
        rows = (
            self.reader()
            .execute(
                "SELECT ch.id, ch.text_hash, ch.context, ch.text FROM chunks ch LEFT JOIN "
                "embeddings e ON e.model_id = ? AND e.text_hash = ch.text_hash "
                "WHERE ch.id > ? AND e.text_hash IS NULL ORDER BY ch.id LIMIT ?",
                (model_id, after_id, limit),
            )
            .fetchall()
        )
        if not rows:
            return after_id, []
        return int(rows[-1][0]), [(bytes(r[1]), r[2], str(r[3])) for r in rows]

    @staticmethod
    def count_missing_embeddings(conn: sqlite3.Connection, model_id: str) -> int:
        """Chunks with no embedding for `model_id`, read in `conn`'s transaction."""
        row = conn.execute(
            "SELECT COUNT(*) FROM chunks ch LEFT JOIN embeddings e ON e.model_id = ? "
            "AND e.text_hash = ch.text_hash WHERE e.text_hash IS NULL",
            (model_id,),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def insert_embeddings(
        conn: sqlite3.Connection,
        model_id: str,
        vectors: Mapping[bytes, np.ndarray | ChunkEmbedding],
    ) -> None:
        def row(text_hash: bytes, value: np.ndarray | ChunkEmbedding) -> tuple[Any, ...]:
            embedding = value if isinstance(value, ChunkEmbedding) else ChunkEmbedding(value)
            spans = embedding.sentence_spans
            sentences = embedding.sentence_vectors
            return (
                model_id,
                text_hash,
                np.ascontiguousarray(embedding.vector, dtype=np.float32).tobytes(),
                None if spans is None else np.ascontiguousarray(spans, dtype=np.int32).tobytes(),
                None
                if sentences is None
                else np.ascontiguousarray(sentences, dtype=np.float16).tobytes(),
            )

        conn.executemany(
            "INSERT OR IGNORE INTO embeddings(model_id, text_hash, vector, sentence_spans, "
            "sentence_vectors) VALUES (?, ?, ?, ?, ?)",
            (row(h, v) for h, v in vectors.items()),
        )

    def stored_embeddings(
        self, model_id: str, text_hashes: Sequence[bytes], dimension: int
    ) -> dict[bytes, ChunkEmbedding]:
        """The stored embeddings of these texts under `model_id`, as they were committed
        (sentence vectors float16): what a commit to another store takes."""
        found: dict[bytes, ChunkEmbedding] = {}
        for batch in batches(list(text_hashes)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                "SELECT text_hash, vector, sentence_spans, sentence_vectors FROM embeddings "
                f"WHERE model_id = ? AND text_hash IN ({marks})",
                (model_id, *batch),
            )
            for text_hash, vector, spans, vectors in rows:
                found[bytes(text_hash)] = ChunkEmbedding(
                    np.frombuffer(vector, dtype=np.float32),
                    None if spans is None else np.frombuffer(spans, dtype=np.int32).reshape(-1, 2),
                    None
                    if vectors is None
                    else np.frombuffer(vectors, dtype=np.float16).reshape(-1, dimension),
                )
        return found

    def sentences_for_chunks(
        self, model_id: str, chunk_ids: Sequence[int], dimension: int
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(spans, float32 vectors) of the chunks whose embedding stored sentence vectors."""
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for batch in batches(list(chunk_ids)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                "SELECT ch.id, e.sentence_spans, e.sentence_vectors FROM chunks ch "
                "JOIN embeddings e ON e.model_id = ? AND e.text_hash = ch.text_hash "
                f"WHERE ch.id IN ({marks}) AND e.sentence_vectors IS NOT NULL",
                (model_id, *batch),
            )
            for chunk_id, spans, vectors in rows:
                found[int(chunk_id)] = (
                    np.frombuffer(spans, dtype=np.int32).reshape(-1, 2),
                    np.frombuffer(vectors, dtype=np.float16)
                    .reshape(-1, dimension)
                    .astype(np.float32),
                )
        return found
