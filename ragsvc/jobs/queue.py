"""The upload job queue: `jobs.sqlite3` in the data directory, owned by the service.

A job is created with its uploaded bytes in one transaction, before the client hears back,
so an acknowledged upload is never lost. It moves queued → extracting → embedding → ready |
failed. Jobs are taken fairly: round-robin across upload requests (`upload_id`), so one file
uploaded while another request's 5,000 files wait is taken within the next batch, not after
them all. Every take counts an attempt; a job that was taken before (its run crashed or was
killed) runs alone, so it cannot take a batch of others down with it, and after
`max_attempts` it fails for good with the reason. Re-running a job is safe: a document whose
bytes are already stored is found by its hash, not stored twice. The bytes go when a job ends.

The queue lives beside the document store, not in it: uploads never wait for an ingestion
transaction, and the embedded index knows nothing about HTTP uploads. Stores from before
this split kept a `jobs` table in `ragsvc.sqlite3`; it is moved here once, on first open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from indexes import NotFound
from indexes.rows import utc_now
from indexes.schema import BUSY_TIMEOUT_MS, DATABASE_NAME, open_side_file
from ragsvc.errors import RagsvcError

JobState = Literal["queued", "extracting", "embedding", "ready", "failed", "cancelled"]
TERMINAL_STATES: tuple[JobState, ...] = ("ready", "failed", "cancelled")
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
QUEUE_NAME = "jobs.sqlite3"
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    upload_id     TEXT NOT NULL,
    collection    TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    payload       BLOB,
    byte_size     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    pages         INTEGER,
    chunks_total  INTEGER,
    chunks_done   INTEGER NOT NULL DEFAULT 0,
    document_id   INTEGER,
    outcome       TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    warning       TEXT,
    request_id    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, upload_id);
"""


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")
        self.job_id = job_id


class JobNotCancellable(RagsvcError):
    """The job has started (or ended): it can no longer be cancelled."""


class NewJob(msgspec.Struct, frozen=True):
    collection: str
    file_name: str
    payload: bytes
    metadata: dict[str, Any] = {}


class Job(msgspec.Struct, frozen=True):
    id: str
    upload_id: str
    """The upload request the job came in; jobs are taken round-robin across uploads."""
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
    warning: str | None = None
    """For a stored document, what its uploader should know, if anything: the limit that cut
    it short (`capped: ...`), pages left out (each named, with the reason) or read by OCR."""
    request_id: str | None = None
    """The id of the upload request (`X-Request-ID`); the worker logs the job under it."""


JOB_COLUMNS = (
    "id, upload_id, collection, file_name, metadata, byte_size, state, pages, chunks_total, "
    "chunks_done, document_id, outcome, error, attempts, created_at, started_at, finished_at, "
    "warning, request_id"
)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"


def jobs_query(
    state: str | None, collections: list[str] | None, limit: int, offset: int
) -> tuple[str, list[Any]]:
    """A page of jobs, newest first, optionally in one state and among some collections."""
    where, params = [], []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if collections is not None:
        where.append(f"collection IN ({','.join('?' * len(collections))})")
        params.extend(collections)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {JOB_COLUMNS} FROM jobs{clause} ORDER BY rowid DESC LIMIT ? OFFSET ?"
    return sql, [*params, limit, offset]


COUNT_BY_STATE = "SELECT state, COUNT(*) FROM jobs GROUP BY state"
# Round-robin across uploads: a job's turn is its place among *all* its upload's jobs, taken
# or not, so an upload that has had n jobs taken waits behind every upload that has had fewer
# (numbering only the queued jobs would put the oldest uploads first at every take).
_FAIR_QUEUED = f"""
SELECT {JOB_COLUMNS} FROM (
    SELECT {JOB_COLUMNS}, rowid AS position,
           ROW_NUMBER() OVER (PARTITION BY upload_id ORDER BY rowid) AS turn
    FROM jobs WHERE upload_id IN (SELECT upload_id FROM jobs WHERE state = 'queued')
) WHERE state = 'queued' ORDER BY turn, position LIMIT ?
"""


def job_from_row(row: Any) -> Job:
    values = list(row)
    values[4] = json.loads(values[4])
    return Job(*values)


class JobQueue:
    """Job rows in `jobs.sqlite3`. Thread-safe: one locked writer connection, per-thread readers."""

    def __init__(self, data_dir: Path, *, max_attempts: int = 3) -> None:
        self.path = data_dir / QUEUE_NAME
        self.max_attempts = max_attempts
        data_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        columns = {row[1] for row in self._writer.execute("PRAGMA table_info(jobs)")}
        if "warning" not in columns:  # a queue from schema version 1
            self._writer.execute("ALTER TABLE jobs ADD COLUMN warning TEXT")
        if "request_id" not in columns:  # from version 2
            self._writer.execute("ALTER TABLE jobs ADD COLUMN request_id TEXT")
        self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        _import_legacy_jobs(data_dir, self._writer)

    def _connect(self) -> sqlite3.Connection:
        # Durable: an acknowledged upload survives power loss.
        return open_side_file(self.path, durable=True)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        self._readers = []
        self._local = threading.local()
        self._writer.close()

    # -- the service's side ------------------------------------------------------------------

    def create(self, jobs: list[NewJob], request_id: str | None = None) -> list[Job]:
        """Create all jobs of one upload request in one transaction: all are acknowledged or
        none are."""
        now = utc_now()
        upload_id = uuid.uuid4().hex
        ids = [uuid.uuid4().hex for _ in jobs]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO jobs(id, upload_id, collection, file_name, metadata, payload, "
                "byte_size, state, created_at, request_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                [
                    (
                        job_id,
                        upload_id,
                        job.collection,
                        job.file_name,
                        json.dumps(job.metadata),
                        job.payload,
                        len(job.payload),
                        now,
                        request_id,
                    )
                    for job_id, job in zip(ids, jobs, strict=True)
                ],
            )
        return [self.get(job_id) for job_id in ids]

    def get(self, job_id: str) -> Job:
        row = self._reader().execute(SELECT_JOB, (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job (its bytes go); raises `JobNotCancellable` once it started."""
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            if row[0] != "queued":
                raise JobNotCancellable(
                    f"job {job_id!r} is {row[0]}; only a queued job can be cancelled"
                )
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', payload = NULL, finished_at = ?, "
                "error = 'cancelled before it started' WHERE id = ?",
                (utc_now(), job_id),
            )
        return self.get(job_id)

    def counts(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._reader().execute(COUNT_BY_STATE)}

    # -- the worker's side -------------------------------------------------------------------

    def payload(self, job_id: str) -> bytes:
        row = self._reader().execute("SELECT payload FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            raise JobNotFound(job_id)
        return bytes(row[0])

    def take(self, limit: int) -> list[Job]:
        """Up to `limit` queued jobs, round-robin across uploads, moved to `extracting`; each
        counts one attempt. A job taken before (its run was interrupted) comes back alone."""
        now = utc_now()
        with self._write() as conn:
            jobs = [job_from_row(r) for r in conn.execute(_FAIR_QUEUED, (limit,)).fetchall()]
            retried = [j for j in jobs if j.attempts > 0]
            if retried:
                jobs = retried[:1]
            conn.executemany(
                "UPDATE jobs SET attempts = attempts + 1, state = 'extracting', "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                [(now, j.id) for j in jobs],
            )
        return [
            msgspec.structs.replace(j, attempts=j.attempts + 1, state="extracting") for j in jobs
        ]

    def requeue_interrupted(self) -> tuple[int, int]:
        """Put jobs a crash left half-done back in the queue, failing those that used up
        their attempts; returns (requeued, given up)."""
        reason = (
            f"gave up after {self.max_attempts} attempts: ingestion stopped while this file "
            "was being processed each time (the worker crashed or was killed)"
        )
        now = utc_now()
        with self._write() as conn:
            given_up = conn.execute(
                "UPDATE jobs SET state = 'failed', outcome = 'failed', error = ?, payload = NULL, "
                "finished_at = ? WHERE state IN ('extracting', 'embedding') AND attempts >= ?",
                (reason, now, self.max_attempts),
            ).rowcount
            requeued = conn.execute(
                "UPDATE jobs SET state = 'queued' WHERE state IN ('extracting', 'embedding')"
            ).rowcount
        return requeued, given_up

    def requeue(self, job_id: str, *, count_attempt: bool = True) -> None:
        """Queue a taken job again; `count_attempt=False`: its take is not held against it
        (the run stopped for a reason of the service's, not the document's)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - ? WHERE id = ?",
                (0 if count_attempt else 1, job_id),
            )

    def mark_stage(
        self, job_id: str, state: JobState, pages: int | None, chunks_total: int | None
    ) -> None:
        with self._write() as conn:
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
        warning: str | None = None,
    ) -> None:
        state: JobState = "failed" if error else "ready"
        now = utc_now()
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, document_id = ?, outcome = ?, error = ?, "
                "warning = ?, chunks_done = ?, chunks_total = COALESCE(chunks_total, ?), "
                "payload = NULL, started_at = COALESCE(started_at, ?), finished_at = ? "
                "WHERE id = ?",
                (state, document_id, outcome, error, warning, chunks, chunks, now, now, job_id),
            )


def _import_legacy_jobs(data_dir: Path, queue: sqlite3.Connection) -> None:
    """Move a `jobs` table left in the document store by an older version into the queue."""
    store_path = data_dir / DATABASE_NAME
    if not store_path.exists():
        return
    store = sqlite3.connect(store_path, isolation_level=None)
    try:
        store.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        exists = store.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
        ).fetchone()
        if exists is None:
            return
        store.execute("BEGIN IMMEDIATE")
        try:
            rows = store.execute(
                "SELECT id, id, collection, file_name, metadata, payload, byte_size, state, "
                "pages, chunks_total, chunks_done, document_id, outcome, error, attempts, "
                "created_at, started_at, finished_at FROM jobs ORDER BY rowid"
            ).fetchall()
            queue.execute("BEGIN IMMEDIATE")
            queue.executemany(
                "INSERT OR IGNORE INTO jobs(id, upload_id, collection, file_name, metadata, "
                "payload, byte_size, state, pages, chunks_total, chunks_done, document_id, "
                "outcome, error, attempts, created_at, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            queue.execute("COMMIT")
            store.execute("DROP TABLE jobs")
            store.execute("COMMIT")
        except BaseException:
            if queue.in_transaction:
                queue.execute("ROLLBACK")
            store.execute("ROLLBACK")
            raise
    finally:
        store.close()
