"""The job runner: takes upload jobs from the queue and runs them through the ingestion
pipeline, recording each job's stage and outcome. It is the service's single writer of
documents, in the worker process (or a thread of the server, `ingest_worker = "thread"`).

One pipeline run is fed lazily: its source is a generator that takes a few jobs at a time,
round-robin across uploads, as the pipeline has room for them (`lookahead` documents ahead of
the embedder), so a job uploaded while thousands wait is among the next few taken. The run
goes on while there is work and ends when the queue has been empty for `idle_after` seconds.
A job taken before (its run was interrupted by a crash or a kill) runs alone, in its own run,
so that it cannot take others down with it; after `max_attempts` it fails for good. When a
re-embed switches the store to another model, the run's commit is refused: its jobs go back
to the queue, not counted as attempts, and the pipeline is built again with the new model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from indexes import ModelChanged
from ingest import IngestPipeline
from ingest.pipeline import DocumentOutcome, Stage
from ingest.ray_engine import RayIngestPipeline
from ingest.sources import Loaded
from ragsvc.jobs.queue import Job, JobQueue

logger = logging.getLogger(__name__)
TAKE = 4
"""Jobs taken from the queue at a time."""


class JobSource:
    """A `Source` that reads an uploaded file from its job row."""

    def __init__(self, job: Job, jobs: JobQueue) -> None:
        self.job = job
        self.name = job.file_name
        self.key = job.id
        self._jobs = jobs

    def load(self) -> Loaded:
        payload = self._jobs.payload(self.job.id)
        return Loaded(payload, None, dict(self.job.metadata), None, self.job.collection)


class JobRunner:
    def __init__(
        self,
        jobs: JobQueue,
        pipeline: IngestPipeline | RayIngestPipeline,
        *,
        idle_after: float = 1.0,
        poll: float = 0.25,
        reload: Callable[[], IngestPipeline | RayIngestPipeline] | None = None,
    ) -> None:
        self.jobs = jobs
        self.pipeline = pipeline
        self.reload = reload
        """Builds the pipeline again for the store's model, after a re-embed switched it."""
        self.idle_after = idle_after
        self.poll = poll
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._held: Job | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Resume interrupted jobs and run in a background thread."""
        self.resume_interrupted()
        self._thread = threading.Thread(target=self.run_forever, name="job-runner", daemon=True)
        self._thread.start()

    def resume_interrupted(self) -> None:
        requeued, given_up = self.jobs.requeue_interrupted()
        if requeued:
            logger.warning("resuming %d job(s) interrupted by a restart", requeued)
        if given_up:
            logger.error(
                "%d job(s) failed for good after %d attempts", given_up, self.jobs.max_attempts
            )

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        while not self._stopping.is_set():
            first = [self._held] if self._held is not None else self.jobs.take(TAKE)
            self._held = None
            if not first:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            self.run_once(first)

    def run_once(self, first: list[Job]) -> None:
        """One pipeline run over `first` and the jobs taken as it goes, until the queue has
        stayed empty for `idle_after` seconds (a retried job: over it alone)."""
        started: dict[str, Job] = {}

        def sources() -> Iterator[JobSource]:
            alone = any(j.attempts > 1 for j in first)
            batch = first
            idle_since = time.monotonic()
            while not self._stopping.is_set():
                for job in batch:
                    started[job.id] = job
                    logger.info(
                        "job %s started: %s (attempt %d)",
                        job.id,
                        job.file_name,
                        job.attempts,
                        extra={"request_id": job.request_id, "job_id": job.id},
                    )
                    yield JobSource(job, self.jobs)
                if alone:
                    return
                if batch:
                    idle_since = time.monotonic()
                batch = self.jobs.take(TAKE)
                if any(j.attempts > 1 for j in batch):
                    self._held = batch[0]  # a retried job: it runs alone, next
                    return
                if not batch:
                    if time.monotonic() - idle_since >= self.idle_after:
                        return
                    self._wake.wait(self.poll)
                    self._wake.clear()

        def on_stage(key: str, stage: Stage, pages: int | None, chunks: int | None) -> None:
            self.jobs.mark_stage(key, stage, pages, chunks)

        def on_document(outcome: DocumentOutcome) -> None:
            self.jobs.finish(
                outcome.key,
                document_id=outcome.document_id,
                outcome=outcome.status,
                chunks=outcome.chunks,
                error=outcome.reason if outcome.status == "failed" else None,
                warning=outcome.reason if outcome.status != "failed" else None,
            )
            job = started.pop(outcome.key, None)
            logger.info(
                "job %s %s: %s",
                outcome.key,
                "failed" if outcome.status == "failed" else "ready",
                outcome.reason or outcome.status,
                extra={
                    "request_id": job.request_id if job else None,
                    "job_id": outcome.key,
                    "document_id": outcome.document_id,
                },
            )

        try:
            self.pipeline.run(sources(), on_document=on_document, on_stage=on_stage)
        except ModelChanged as error:
            if self.reload is None:
                raise
            logger.info("%s: reloading with the store's model", error)
            for job in started.values():
                self.jobs.requeue(job.id, count_attempt=False)
            replaced = self.pipeline
            replaced.close()
            replaced.catalog.close()
            self.pipeline = self.reload()
        except Exception:
            logger.exception("ingestion run failed with %d job(s) unfinished", len(started))
            for job in started.values():
                if job.attempts >= self.jobs.max_attempts:
                    self.jobs.finish(
                        job.id,
                        document_id=None,
                        outcome="failed",
                        chunks=0,
                        error=f"gave up after {job.attempts} attempts: internal error while "
                        "ingesting (see the worker log)",
                    )
                else:
                    self.jobs.requeue(job.id)
