"""Reads of documents, chunks and collections for async callers (the HTTP handlers), through
aiosqlite on a read-only connection, so an event loop never blocks. The SQL is the store's own
(`rows.SELECT_DOCUMENT`, ...), so there is one definition of each row."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

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


class AsyncReader:
    """A read-only aiosqlite connection to one SQLite file, and its two ways of reading."""

    FILE_NAME = DATABASE_NAME

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, data_dir: Path) -> Self:
        path = data_dir / cls.FILE_NAME
        conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def _one(self, sql: str, params: Any) -> Any:
        async with self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, params: Any) -> list[Any]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


class AsyncStoreReads(AsyncReader):
    """Documents, chunks and collections of the store."""

    # -- documents ---------------------------------------------------------------------------

    async def document(self, document_id: int) -> DocumentRow:
        row = await self._one(SELECT_DOCUMENT, (document_id,))
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
            if await self._one(known, (collection,)) is None:
                raise CollectionNotFound(collection)
        query = documents_query(collection, limit, offset, collections)
        rows = await self._all(*query)
        return [document_row(r) for r in rows]

    async def document_chunks(
        self, document_id: int, limit: int = -1, offset: int = 0
    ) -> list[ChunkRow]:
        """A document's chunks in order; a page of them with `limit` (-1: all)."""
        await self.document(document_id)  # 404 for an unknown document
        sql = f"{SELECT_DOCUMENT_CHUNKS} LIMIT ? OFFSET ?"
        rows = await self._all(sql, (document_id, limit, offset))
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
        rows = await self._all(sql + " GROUP BY c.id ORDER BY c.name", params)
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def document_count(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM documents", ())
        return int(row[0])
