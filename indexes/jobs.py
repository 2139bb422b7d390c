"""Ingestion jobs, kept in the store so that an acknowledged upload is never lost.

A job is created with its uploaded bytes in one transaction, before the client hears back.
It moves queued → extracting → embedding → ready | failed; on start-up, jobs a crash left in
extracting or embedding go back to queued. Re-running a job is safe: a document whose bytes are
already stored is found by its hash, not stored twice. The bytes are dropped when a job ends.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any, Literal

import msgspec

from indexes.errors import NotFound
from indexes.store import Store, utc_now

JobState = Literal["queued", "extracting", "embedding", "ready", "failed"]


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")
        self.job_id = job_id


class NewJob(msgspec.Struct, frozen=True):
    collection: str
    file_name: str
    payload: bytes
    metadata: dict[str, Any] = {}


class Job(msgspec.Struct, frozen=True):
    id: str
    collection: str
    file_name: str
    metadata: dict[str, Any]
    byte_size: int
    state: JobState
    pages: int | None
    chunks_total: int | None
    chunks_done: int
    document_id: int | None
    outcome: str | None
    error: str | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None


_COLUMNS = (
    "id, collection, file_name, metadata, byte_size, state, pages, chunks_total, chunks_done, "
    "document_id, outcome, error, attempts, created_at, started_at, finished_at"
)


def _job(row: sqlite3.Row) -> Job:
    values = list(row)
    values[3] = json.loads(values[3])
    return Job(*values)


class JobStore:
    """Job rows in a `Store`; writes go through the store's single writer."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, jobs: list[NewJob]) -> list[Job]:
        """Create all jobs of one request in one transaction: all are acknowledged or none."""
        now = utc_now()
        ids = [uuid.uuid4().hex for _ in jobs]
        with self.store.write(bump_generation=False) as conn:
            conn.executemany(
                "INSERT INTO jobs(id, collection, file_name, metadata, payload, byte_size, state, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                [
                    (
                        job_id,
                        job.collection,
                        job.file_name,
                        json.dumps(job.metadata),
                        job.payload,
                        len(job.payload),
                        now,
                    )
                    for job_id, job in zip(ids, jobs, strict=True)
                ],
            )
        return [self.get(job_id) for job_id in ids]

    def get(self, job_id: str) -> Job:
        row = (
            self.store.reader()
            .execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    def payload(self, job_id: str) -> bytes:
        row = (
            self.store.reader()
            .execute("SELECT payload FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        if row is None or row[0] is None:
            raise JobNotFound(job_id)
        return bytes(row[0])

    def pending(self, limit: int) -> list[Job]:
        """Queued jobs, oldest first; each is counted as one more attempt."""
        rows = (
            self.store.reader()
            .execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' "
                "ORDER BY created_at, rowid LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        jobs = [_job(r) for r in rows]
        if jobs:
            with self.store.write(bump_generation=False) as conn:
                conn.executemany(
                    "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", [(j.id,) for j in jobs]
                )
        return jobs

    def requeue_interrupted(self) -> int:
        """Put jobs a crash left half-done back in the queue; returns how many."""
        with self.store.write(bump_generation=False) as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'queued' WHERE state IN ('extracting', 'embedding')"
            )
            return cursor.rowcount

    def requeue(self, job_id: str) -> None:
        with self.store.write(bump_generation=False) as conn:
            conn.execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (job_id,))

    def mark_stage(
        self, job_id: str, state: JobState, pages: int | None, chunks_total: int | None
    ) -> None:
        with self.store.write(bump_generation=False) as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, pages = COALESCE(?, pages), "
                "chunks_total = COALESCE(?, chunks_total), "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                (state, pages, chunks_total, utc_now(), job_id),
            )

    def finish(
        self,
        job_id: str,
        *,
        document_id: int | None,
        outcome: str,
        chunks: int,
        error: str | None,
    ) -> None:
        state: JobState = "failed" if error else "ready"
        with self.store.write(bump_generation=False) as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, document_id = ?, outcome = ?, error = ?, "
                "chunks_done = ?, chunks_total = COALESCE(chunks_total, ?), payload = NULL, "
                "started_at = COALESCE(started_at, ?), finished_at = ? WHERE id = ?",
                (state, document_id, outcome, error, chunks, chunks, utc_now(), utc_now(), job_id),
            )

    def counts(self) -> dict[str, int]:
        rows = self.store.reader().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {str(r[0]): int(r[1]) for r in rows}
