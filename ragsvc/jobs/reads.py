"""Reads of the job queue for async callers (the HTTP handlers), through aiosqlite on a read-only
connection, so an event loop never blocks. The SQL is the queue's own (`SELECT_JOB`, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from indexes.async_reads import connect_readonly
from ragsvc.jobs.queue import (
    COUNT_BY_STATE,
    QUEUE_NAME,
    SELECT_JOB,
    Job,
    JobNotFound,
    job_from_row,
    jobs_query,
)


class AsyncJobReads:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._jobs = conn

    @classmethod
    async def open(cls, data_dir: Path) -> AsyncJobReads:
        return cls(await connect_readonly(data_dir / QUEUE_NAME))

    async def close(self) -> None:
        await self._jobs.close()

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Any) -> Any:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @staticmethod
    async def _all(conn: aiosqlite.Connection, sql: str, params: Any) -> list[Any]:
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

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
