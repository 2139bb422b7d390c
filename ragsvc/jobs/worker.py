"""The ingestion worker: `python -m ragsvc.jobs.worker`, started and supervised by the server.

It runs the upload jobs of one data directory and is the service's single writer of
documents: it loads the document embedder (torch, bf16 where the CPU has it), lowers its own
CPU priority (`worker_nice`) so that queries in the server keep their CPU, and commits to the
store, which the server follows through the change log. It holds `worker.lock` for as long as
it runs, so two servers on one directory never run jobs twice. It dies with the server (Linux
parent-death signal, and a check of its parent otherwise) and stops cleanly on SIGTERM,
finishing the pool it is embedding. Settings come from the server, as JSON in
`RAGSVC_WORKER_SETTINGS`.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import msgspec

from ingest import Embedder, IngestPipeline
from ingest.ray_engine import RayIngestPipeline
from ragsvc.errors import RagsvcError
from ragsvc.factory import make_embedder, make_pipeline, open_catalog
from ragsvc.jobs.queue import JobQueue
from ragsvc.jobs.runner import JobRunner
from ragsvc.settings import Settings
from ragsvc.telemetry.logs import configure_logging
from ragsvc.telemetry.prometheus import WORKER_METRICS, EmbeddingStats

SETTINGS_VARIABLE = "RAGSVC_WORKER_SETTINGS"
PARENT_VARIABLE = "RAGSVC_WORKER_PARENT"
LOCK_NAME = "worker.lock"
READY_NAME = "worker.ready"
"""Holds the pid of the worker that has loaded its model and takes jobs."""
EXIT_BUSY = 3
LOOKAHEAD = 4
"""Documents prepared ahead of the embedder: enough to keep it fed (extraction is fast beside
embedding), few so that a job uploaded behind thousands is taken, and embedded, soon."""
logger = logging.getLogger("ragsvc.jobs.worker")


class WorkerBusy(RagsvcError):
    """Another worker runs the jobs of this data directory."""


def acquire_worker_lock(data_dir: Path) -> int:
    """Hold `worker.lock` (released when the process ends); raises `WorkerBusy`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(handle, 64).decode(errors="replace").strip() or "unknown"
        os.close(handle)
        raise WorkerBusy(
            f"another ragsvc worker (pid {holder}) runs the jobs of {data_dir}"
        ) from None
    os.ftruncate(handle, 0)
    os.write(handle, f"{os.getpid()}\n".encode())
    return handle


def worker_is_running(data_dir: Path) -> bool:
    """Whether some process holds this directory's worker lock (a server is running)."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return False
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def mark_ready(data_dir: Path) -> None:
    """Say that this process takes jobs now (`worker_ready` reads it)."""
    partial = data_dir / f"{READY_NAME}.{os.getpid()}"
    partial.write_text(f"{os.getpid()}\n")
    os.replace(partial, data_dir / READY_NAME)


def worker_ready(data_dir: Path, pid: int | None) -> bool:
    """Whether the worker process `pid` has said it takes jobs."""
    if pid is None:
        return False
    try:
        return int((data_dir / READY_NAME).read_text().strip() or 0) == pid
    except (OSError, ValueError):
        return False


def build_runner(settings: Settings, embedder: Embedder | None = None) -> JobRunner:
    """The job runner of a data directory, with its embedder (the store's model unless
    given) and a catalog that only writes (it never loads an index). After a re-embed
    switched the store's model, the runner builds its pipeline again with the new one."""
    stats = EmbeddingStats(settings.data_path / WORKER_METRICS)

    def build(model: Embedder | None) -> IngestPipeline | RayIngestPipeline:
        model = model or make_embedder(settings)
        return make_pipeline(
            settings,
            open_catalog(settings, model),
            model,
            pool_chunks=settings.worker_pool_chunks,
            lookahead=LOOKAHEAD,
            on_batch=stats.record,
        )

    queue = JobQueue(settings.data_path, max_attempts=settings.job_max_attempts)
    return JobRunner(queue, build(embedder), reload=lambda: build(None))


def close_runner(runner: JobRunner) -> None:
    """Close what `build_runner` opened."""
    catalog = runner.pipeline.catalog
    try:
        runner.pipeline.close()
        runner.jobs.close()
    finally:
        catalog.close()


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> int:
    settings = msgspec.json.decode(os.environ[SETTINGS_VARIABLE], type=Settings)
    configure_logging(settings.log_level, settings.log_format, process="worker")
    if os.environ.get(PARENT_VARIABLE):
        _die_with_parent(int(os.environ[PARENT_VARIABLE]))
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    try:
        acquire_worker_lock(settings.data_path)
    except WorkerBusy as error:
        logger.error("%s", error)
        return EXIT_BUSY
    runner = build_runner(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.resume_interrupted()
    mark_ready(settings.data_path)
    logger.info("worker ready (pid %d, nice %d)", os.getpid(), os.nice(0))
    try:
        runner.run_forever()
    finally:
        close_runner(runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
