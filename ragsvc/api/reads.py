"""Reads for the service's async handlers, through aiosqlite, so the event loop never blocks.

Job status, document listings and chunk pages are plain SQLite reads; aiosqlite runs them on
its own thread per connection and hands results back to the loop. The SQL is the store's and
the queue's own (`SELECT_DOCUMENT`, `SELECT_JOB`, ...), so there is one definition of each row.
Both connections are read-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from indexes import ChunkRow, CollectionNotFound, DocumentNotFound, DocumentRow
from indexes.catalog import DATABASE_NAME
from indexes.store import (
    SELECT_DOCUMENT,
    SELECT_DOCUMENT_CHUNKS,
    document_row,
    documents_query,
)
from ragsvc.jobs.queue import (
    COUNT_BY_STATE,
    QUEUE_NAME,
    SELECT_JOB,
    Job,
    JobNotFound,
    job_from_row,
    jobs_query,
)


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout=30000")
    return conn


class AsyncReads:
    def __init__(self, store: aiosqlite.Connection, jobs: aiosqlite.Connection) -> None:
        self._store = store
        self._jobs = jobs

    @classmethod
    async def open(cls, data_dir: Path) -> AsyncReads:
        store = await _connect(data_dir / DATABASE_NAME)
        try:
            jobs = await _connect(data_dir / QUEUE_NAME)
        except BaseException:
            await store.close()
            raise
        return cls(store, jobs)

    async def close(self) -> None:
        await self._store.close()
        await self._jobs.close()

    async def _one(self, conn: aiosqlite.Connection, sql: str, params: Any) -> Any:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, conn: aiosqlite.Connection, sql: str, params: Any) -> list[Any]:
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    # -- jobs --------------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        row = await self._one(self._jobs, SELECT_JOB, (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def jobs(self, job_ids: list[str]) -> list[Job]:
        return [await self.job(job_id) for job_id in job_ids]

    async def job_page(
        self, state: str | None, collections: list[str] | None, limit: int, offset: int
    ) -> list[Job]:
        rows = await self._all(self._jobs, *jobs_query(state, collections, limit, offset))
        return [job_from_row(r) for r in rows]

    async def job_counts(self, collections: list[str] | None = None) -> dict[str, int]:
        """Jobs by state, of every collection or of `collections`."""
        sql, params = COUNT_BY_STATE, tuple[str, ...]()
        if collections is not None:
            marks = ",".join("?" * len(collections))
            sql = f"SELECT state, COUNT(*) FROM jobs WHERE collection IN ({marks}) GROUP BY state"
            params = tuple(collections)
        return {str(r[0]): int(r[1]) for r in await self._all(self._jobs, sql, params)}

    # -- documents ---------------------------------------------------------------------------

    async def document(self, document_id: int) -> DocumentRow:
        row = await self._one(self._store, SELECT_DOCUMENT, (document_id,))
        if row is None:
            raise DocumentNotFound(document_id)
        return document_row(row)

    async def documents(
        self,
        collection: str | None,
        *,
        limit: int,
        offset: int,
        collections: list[str] | None = None,
    ) -> list[DocumentRow]:
        """A page of documents, of `collection` or of any of `collections` when given."""
        if collection is not None:
            known = "SELECT 1 FROM collections WHERE name = ?"
            if await self._one(self._store, known, (collection,)) is None:
                raise CollectionNotFound(collection)
        query = documents_query(collection, limit, offset, collections)
        rows = await self._all(self._store, *query)
        return [document_row(r) for r in rows]

    async def document_chunks(
        self, document_id: int, limit: int = -1, offset: int = 0
    ) -> list[ChunkRow]:
        """A document's chunks in order; a page of them with `limit` (-1: all)."""
        await self.document(document_id)  # 404 for an unknown document
        sql = f"{SELECT_DOCUMENT_CHUNKS} LIMIT ? OFFSET ?"
        rows = await self._all(self._store, sql, (document_id, limit, offset))
        return [ChunkRow(*row) for row in rows]

    async def collections(self, names: list[str] | None) -> list[tuple[str, int, int]]:
        """(name, documents, chunks) of every collection, or of those of `names` that exist."""
        sql = (
            "SELECT c.name, COUNT(d.id), COALESCE(SUM(d.chunk_count), 0) FROM collections c "
            "LEFT JOIN documents d ON d.collection_id = c.id"
        )
        params: tuple[str, ...] = ()
        if names is not None:
            sql += f" WHERE c.name IN ({','.join('?' * len(names))})"
            params = tuple(names)
        rows = await self._all(self._store, sql + " GROUP BY c.id ORDER BY c.name", params)
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def document_count(self) -> int:
        row = await self._one(self._store, "SELECT COUNT(*) FROM documents", ())
        return int(row[0])
