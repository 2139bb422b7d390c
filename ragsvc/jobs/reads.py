"""Reads of the job queue for async callers (the HTTP handlers), through aiosqlite on a read-only
connection, so an event loop never blocks. The SQL is the queue's own (`SELECT_JOB`, ...)."""

from __future__ import annotations

from indexes.async_reads import AsyncReader
from ragsvc.jobs.queue import (
    COUNT_BY_STATE,
    QUEUE_NAME,
    SELECT_JOB,
    Job,
    JobNotFound,
    job_from_row,
    jobs_query,
)


class AsyncJobReads(AsyncReader):
    """Jobs of the queue."""

    FILE_NAME = QUEUE_NAME

    async def job(self, job_id: str) -> Job:
        row = await self._one(SELECT_JOB, (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def jobs(self, job_ids: list[str]) -> list[Job]:
        return [await self.job(job_id) for job_id in job_ids]

    async def job_page(
        self, state: str | None, collections: list[str] | None, limit: int, offset: int
    ) -> list[Job]:
        rows = await self._all(*jobs_query(state, collections, limit, offset))
        return [job_from_row(r) for r in rows]

    async def job_counts(self, collections: list[str] | None = None) -> dict[str, int]:
        """Jobs by state, of every collection or of `collections`."""
        sql, params = COUNT_BY_STATE, tuple[str, ...]()
        if collections is not None:
            marks = ",".join("?" * len(collections))
            sql = f"SELECT state, COUNT(*) FROM jobs WHERE collection IN ({marks}) GROUP BY state"
            params = tuple(collections)
        return {str(r[0]): int(r[1]) for r in await self._all(sql, params)}
