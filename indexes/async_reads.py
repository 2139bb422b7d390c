"""Reads of documents, chunks and collections for async callers (the HTTP handlers), through
aiosqlite on a read-only connection, so an event loop never blocks. The SQL is the store's own
(`rows.SELECT_DOCUMENT`, ...), so there is one definition of each row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from indexes.errors import CollectionNotFound, DocumentNotFound
from indexes.rows import (
    SELECT_DOCUMENT,
    SELECT_DOCUMENT_CHUNKS,
    ChunkRow,
    DocumentRow,
    document_row,
    documents_query,
)
from indexes.schema import BUSY_TIMEOUT_MS, DATABASE_NAME


async def connect_readonly(path: Path) -> aiosqlite.Connection:
    """A read-only aiosqlite connection to a SQLite file."""
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class AsyncStoreReads:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._store = conn

    @classmethod
    async def open(cls, data_dir: Path) -> AsyncStoreReads:
        return cls(await connect_readonly(data_dir / DATABASE_NAME))

    async def close(self) -> None:
        await self._store.close()

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Any) -> Any:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @staticmethod
    async def _all(conn: aiosqlite.Connection, sql: str, params: Any) -> list[Any]:
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

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
