"""Running the ingestion worker beside the server: as a supervised process, or as a thread.

`WorkerProcess` starts `python -m ragsvc.jobs.worker` and restarts it whenever it exits while the
server runs (a crash, an out-of-memory kill, a SIGKILL), after a backoff that grows from 1 s
to 30 s and resets once a worker has lived a minute. The jobs it was running go back to the
queue when the new one starts. The server keeps answering meanwhile: it only reads.

`WorkerThread` runs the same job runner inside the server process with a given embedder,
for tests and small set-ups (`ingest_worker = "thread"`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

import msgspec

from ingest import Embedder
from ragsvc.jobs.worker import (
    PARENT_VARIABLE,
    SETTINGS_VARIABLE,
    acquire_worker_lock,
    build_runner,
    close_runner,
    worker_ready,
)
from ragsvc.settings import Settings

logger = logging.getLogger(__name__)
BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER = 1.0, 30.0, 60.0


class Worker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def pid(self) -> int | None:
        """The worker's process id (the server's own for a thread worker)."""
        ...

    @property
    def restarts(self) -> int: ...

    @property
    def ready(self) -> bool:
        """Whether the worker has loaded its model and takes jobs."""
        ...


class WorkerProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._restarts = 0
        self._thread = threading.Thread(
            target=self._supervise, name="worker-supervisor", daemon=True
        )

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def ready(self) -> bool:
        return worker_ready(self.settings.data_path, self.pid)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            SETTINGS_VARIABLE: msgspec.json.encode(self.settings).decode(),
            PARENT_VARIABLE: str(os.getpid()),
        }
        # The worker's output goes where the server's logs go, stderr: stdout may be a
        # protocol channel (`ragsvc mcp` over stdio).
        return subprocess.Popen(
            [sys.executable, "-m", "ragsvc.jobs.worker"],
            env=environment,
            cwd=Path.cwd(),
            stdout=2,
        )

    def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            self._process = self._spawn()
            code = self._process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            logger.error(
                "ingestion worker (pid %d) exited with %s; restarting in %.0f s",
                self._process.pid,
                f"signal {-code}" if code < 0 else f"code {code}",
                backoff,
            )
            self._restarts += 1
            if self._stopping.wait(backoff):
                return
            backoff = min(BACKOFF_MAX, backoff * 2)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(timeout=5)


class WorkerThread:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._lock = acquire_worker_lock(settings.data_path)
        self._runner = build_runner(settings, embedder)

    @property
    def pid(self) -> int | None:
        return os.getpid()

    @property
    def restarts(self) -> int:
        return 0

    @property
    def ready(self) -> bool:
        return True  # its runner was built with the server

    def start(self) -> None:
        self._runner.start()

    def notify(self) -> None:
        self._runner.notify()

    def stop(self) -> None:
        self._runner.stop()
        close_runner(self._runner)
        os.close(self._lock)
