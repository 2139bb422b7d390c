"""The change log: every chunk added or removed, in order (`chunk_changes`, written by triggers),
which the in-memory indexes follow; pruned once a saved index snapshot covers it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from indexes.rows import CONTEXT_SEPARATOR, Change, ChunkData
from indexes.schema import StoreFile, batches

_NO_IDS = np.zeros(0, dtype=np.int64)


class ChangeLog(StoreFile):
    """The store's `chunk_changes` table, and the chunk data a follower reads with it."""

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on this thread's reader: every query in it sees one state."""
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def change_seq(conn: sqlite3.Connection) -> int:
        """The newest change-log sequence number (0 before any chunk was written)."""
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'chunk_changes'"
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def pruned_through(self, conn: sqlite3.Connection | None = None) -> int:
        row = (
            (conn or self.reader())
            .execute("SELECT value FROM meta WHERE key = 'chunk_changes_pruned_through'")
            .fetchone()
        )
        return int(row[0]) if row is not None else 0

    def changes_since(self, seq: int, conn: sqlite3.Connection) -> Change | None:
        """Chunks added and removed after `seq` (an id in both lists was added, then removed),
        or None when the log no longer reaches back that far (it was pruned)."""
        if seq < self.pruned_through(conn):
            return None
        rows = conn.execute(
            "SELECT seq, chunk_id, added FROM chunk_changes WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        if not rows:
            return Change(seq, _NO_IDS, _NO_IDS)
        added = np.fromiter((r[1] for r in rows if r[2]), dtype=np.int64)
        removed = np.fromiter((r[1] for r in rows if not r[2]), dtype=np.int64)
        return Change(int(rows[-1][0]), added, removed)

    @staticmethod
    def prune_changes(conn: sqlite3.Connection, through: int) -> None:
        """Forget changes up to `through`, which a saved index snapshot already reflects."""
        conn.execute("DELETE FROM chunk_changes WHERE seq <= ?", (through,))
        StoreFile.set_meta(conn, "chunk_changes_pruned_through", str(through))

    @staticmethod
    def chunk_total(conn: sqlite3.Connection) -> int:
        """How many chunks the store holds (as `conn`'s transaction sees it)."""
        return int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunk_data(
        self,
        model_id: str,
        dimension: int,
        chunk_ids: Sequence[int] | None,
        conn: sqlite3.Connection,
        batch: int = 10_000,
    ) -> Iterator[ChunkData]:
        """Chunks with their document, collection, text and vector, by ascending id; every
        chunk when `chunk_ids` is None. Raises `LookupError` for a chunk with no embedding."""
        select = (
            "SELECT ch.id, ch.document_id, d.collection_id, "
            f"COALESCE(ch.context || '{CONTEXT_SEPARATOR}', '') || ch.text, e.vector "
            "FROM chunks ch "
            "JOIN documents d ON d.id = ch.document_id LEFT JOIN embeddings e "
            "ON e.model_id = ? AND e.text_hash = ch.text_hash"
        )

        def to_data(rows: list[sqlite3.Row]) -> ChunkData:
            missing = [int(r[0]) for r in rows if r[4] is None]
            if missing:
                raise LookupError(
                    f"{len(missing)} chunks have no stored embedding for {model_id!r} "
                    f"(first: {missing[:5]}); run `ragsvc rebuild --reembed`"
                )
            count = len(rows)
            return ChunkData(
                np.fromiter((r[0] for r in rows), dtype=np.int64, count=count),
                np.fromiter((r[1] for r in rows), dtype=np.int64, count=count),
                np.fromiter((r[2] for r in rows), dtype=np.int64, count=count),
                [str(r[3]) for r in rows],
                np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(
                    count, dimension
                ),
            )

        if chunk_ids is None:
            cursor = conn.execute(select + " ORDER BY ch.id", (model_id,))
            while rows := cursor.fetchmany(batch):
                yield to_data(rows)
            return
        ordered = sorted(int(i) for i in chunk_ids)
        for part in batches(ordered):
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                select + f" WHERE ch.id IN ({marks}) ORDER BY ch.id", (model_id, *part)
            ).fetchall()
            if rows:
                yield to_data(rows)
