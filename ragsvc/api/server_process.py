"""`ragsvc serve` as a child process on a free loopback port, for tests, benchmarks and
scripts that need a real server: start it, wait until `/health` answers, stop or kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        log: Path,
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        ready_timeout: float = 300.0,
    ) -> None:
        self.data_dir = data_dir
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        """Start the server; returns once `/health` answers 200. Raises `RuntimeError`, with
        the end of its log, when it exits or is not ready in time."""
        command = [sys.executable, "-m", "ragsvc", "--data-dir", str(self.data_dir), "serve",
                   "--port", str(self.port)]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.cwd, stdout=log, stderr=log, env=self.env
            )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()[-4000:]}")
            try:
                # /health needs no key, and answers once the lifespan has opened everything.
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in {self.ready_timeout:.0f} s")
            time.sleep(0.2)

    def ready(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/ready", headers=headers, timeout=30).json())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
