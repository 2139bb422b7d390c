"""Real processes for the tests: the `ragsvc` command in a child process, a `ragsvc serve`
server on a free port, and waiting for its jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ragsvc.api.server_process import ServerProcess
from tests.support.data import ROOT


def run_ragsvc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `ragsvc` command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "ragsvc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


class Server(ServerProcess):
    """A `ragsvc serve` child process on a free loopback port, logging at info level."""

    def __init__(self, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, log, {"RAGSVC_LOG_LEVEL": "info", **(env or {})}, cwd=ROOT)


def wait_jobs(
    client: httpx.Client, job_ids: list[str], timeout: float = 300
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [client.get(f"/jobs/{job_id}").json() for job_id in job_ids]
        if all(j["state"] in ("ready", "failed") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.25)
