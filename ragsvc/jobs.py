"""The background job runner: the service's single writer of documents.

One thread takes queued jobs, oldest first, and runs them through the ingestion pipeline,
one batch per collection, recording each job's stage and outcome in the store. Searches and
queries run on other threads meanwhile and see a document once its job is ready.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from indexes.jobs import Job, JobStore
from ingest import IngestPipeline
from ingest.pipeline import DocumentOutcome, Stage
from ingest.sources import Loaded

MAX_ATTEMPTS = 3
logger = logging.getLogger(__name__)


class JobSource:
    """A `Source` that reads an uploaded file from its job row."""

    def __init__(self, job: Job, jobs: JobStore) -> None:
        self.job = job
        self.name = job.file_name
        self.key = job.id
        self._jobs = jobs

    def load(self) -> Loaded:
        return Loaded(self._jobs.payload(self.job.id), None, dict(self.job.metadata), None)


class JobRunner:
    def __init__(self, jobs: JobStore, pipeline: IngestPipeline, *, batch: int = 64) -> None:
        self.jobs = jobs
        self.pipeline = pipeline
        self.batch = batch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def start(self) -> None:
        resumed = self.jobs.requeue_interrupted()
        if resumed:
            logger.warning("resuming %d job(s) interrupted by a restart", resumed)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            pending = self.jobs.pending(self.batch)
            if not pending:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            by_collection: dict[str, list[Job]] = defaultdict(list)
            for job in pending:
                by_collection[job.collection].append(job)
            for collection, jobs in by_collection.items():
                self._run(collection, jobs)

    def _run(self, collection: str, jobs: list[Job]) -> None:
        def on_stage(key: str, stage: Stage, pages: int | None, chunks: int | None) -> None:
            self.jobs.mark_stage(key, stage, pages, chunks)

        def on_document(outcome: DocumentOutcome) -> None:
            self.jobs.finish(
                outcome.key,
                document_id=outcome.document_id,
                outcome=outcome.status,
                chunks=outcome.chunks,
                error=outcome.reason if outcome.status == "failed" else None,
            )

        try:
            self.pipeline.run(
                [JobSource(job, self.jobs) for job in jobs],
                collection=collection,
                on_document=on_document,
                on_stage=on_stage,
            )
        except Exception:
            logger.exception("ingestion batch of %d job(s) failed", len(jobs))
            for job in jobs:
                current = self.jobs.get(job.id)
                if current.state in ("ready", "failed"):
                    continue
                if current.attempts >= MAX_ATTEMPTS:
                    self.jobs.finish(
                        job.id,
                        document_id=None,
                        outcome="failed",
                        chunks=0,
                        error="internal error while ingesting; see the server log",
                    )
                else:
                    self.jobs.requeue(job.id)
