"""Hostile files through the real server, each its own job: the malformed PDFs of the shared
samples, decompression bombs, an xref loop, a 5,000-page PDF and a 45 MB text. Each ends
within its time limit, failed with its real reason or capped and saying so; `/health`
answers within a second throughout, the other jobs finish, and the server's memory stays
flat. Also the sandbox on its own: a timeout, and a child that dies."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.errors import ExtractionFailed
from ingest.extract.base import ExtractionLimits
from ingest.sandbox import ExtractionSandbox
from tests.support import hostile_files
from tests.support.data import dataset
from tests.support.processes import Server, wait_jobs


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class HealthWatch(threading.Thread):
    """Asks `/health` every 0.2 s and keeps the slowest answer, and the server's peak RSS."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.slowest = 0.0
        self.failures: list[str] = []
        self.peak_rss = _rss(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stopped.wait(0.2):
                started = time.perf_counter()
                try:
                    client.get("/health").raise_for_status()
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.peak_rss = max(self.peak_rss, _rss(self.pid))


def _malformed_samples() -> list[Path]:
    manifest = dataset("pdf_samples", "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in manifest]
    return [dataset("pdf_samples", r["file"]) for r in rows if r["category"] == "malformed"]


@pytest.mark.slow
def test_hostile_files_fail_or_cap_alone_and_the_server_carries_on(tmp_path: Path) -> None:
    files: dict[str, bytes] = {p.name: p.read_bytes() for p in _malformed_samples()}
    assert len(files) == 20
    files |= {
        "flate-bomb.pdf": hostile_files.flate_bomb(),
        "many-stream-bomb.pdf": hostile_files.many_stream_bomb(),
        "looping-xref.pdf": hostile_files.looping_xref(),
        "five-thousand-pages.pdf": hostile_files.text_pdf(5000),
        "huge.txt": hostile_files.huge_text(),
        "fine.md": b"# Fine\n\nThe gatekeeper opens the north gate at eight every morning.\n",
    }
    assert len(files["flate-bomb.pdf"]) < 20_000 and len(files["many-stream-bomb.pdf"]) < 3e6
    env = {"RAGSVC_MAX_FILE_BYTES": "60000000", "RAGSVC_EXTRACT_TIMEOUT": "60"}
    server = Server(tmp_path / "data", tmp_path / "server.log", env).start()
    assert server.process is not None
    watch = HealthWatch(server.url, server.process.pid)
    start_rss = _rss(server.process.pid)
    watch.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            jobs: dict[str, str] = {}
            for name, content in files.items():
                response = client.post("/documents", files=[("files", (name, content))])
                if response.status_code != 202:  # refused at the door, with a reason
                    assert response.status_code in (400, 415), (name, response.text)
                    assert response.json()["detail"]
                    continue
                jobs[name] = response.json()["jobs"][0]["id"]
            finished = dict(zip(jobs, wait_jobs(client, list(jobs.values()), 600), strict=True))
            time.sleep(1.0)  # the server follows the worker's commits within a second
            query = {"query": "gatekeeper north gate", "k": 3, "mode": "lexical"}
            found = client.post("/search", json=query).json()
    finally:
        watch.stopped.set()
        watch.join()
        end_rss = _rss(server.process.pid)
        server.stop()

    assert not watch.failures and watch.slowest < 1.0, (watch.slowest, watch.failures)
    assert watch.peak_rss - start_rss < 500e6 and end_rss - start_rss < 100e6
    for name, job in finished.items():
        assert job["state"] in ("ready", "failed"), name
        if job["state"] == "failed":
            assert job["error"], job
    assert finished["fine.md"]["state"] == "ready"
    assert "north gate" in found["results"][0]["text"]
    for bomb in ("flate-bomb.pdf", "many-stream-bomb.pdf"):
        assert finished[bomb]["state"] == "failed"
        assert "Limit" in finished[bomb]["error"] or "decompress" in finished[bomb]["error"]
    long = finished["five-thousand-pages.pdf"]
    assert long["state"] == "ready" and "first 2000 of 5000 pages" in long["warning"]
    huge = finished["huge.txt"]
    assert huge["state"] == "ready" and "capped" in huge["warning"]
    assert finished["looping-xref.pdf"]["state"] in ("ready", "failed")


@pytest.mark.slow
def test_the_sandbox_stops_a_slow_document_and_survives_a_dead_child() -> None:
    sandbox = ExtractionSandbox(ExtractionLimits(timeout=0.5))
    try:
        with pytest.raises(ExtractionFailed, match=r"took over 0\.5 s"):
            sandbox.extract(hostile_files.text_pdf(5000), "long.pdf")
        # The next document gets a fresh child and works.
        assert "Page 1:" in sandbox.extract(hostile_files.text_pdf(1), "one.pdf").text
        process: Any = sandbox._process
        process.kill()
        process.wait()
        assert "Page 2:" in sandbox.extract(hostile_files.text_pdf(2), "two.pdf").text
        assert sandbox.restarts == 2
    finally:
        sandbox.close()


@pytest.mark.slow
def test_a_document_over_the_memory_limit_fails_with_that_reason() -> None:
    sandbox = ExtractionSandbox(ExtractionLimits(max_memory=300_000_000))
    try:
        with pytest.raises(ExtractionFailed, match="memory"):
            sandbox.extract(hostile_files.huge_text(200_000_000), "huge.txt")
        assert sandbox.extract(b"A short note about tides.", "note.txt").text.startswith("A short")
    finally:
        sandbox.close()


@pytest.mark.slow
def test_a_word_document_that_inflates_to_gigabytes_fails_with_the_memory_limit() -> None:
    bomb = hostile_files.docx_bomb()
    assert len(bomb) < 5_000_000
    sandbox = ExtractionSandbox(ExtractionLimits())
    try:
        with pytest.raises(ExtractionFailed, match="extract_max_memory"):
            sandbox.extract(bomb, "report.docx")
        assert sandbox.extract(b"A short note about tides.", "note.txt").text.startswith("A short")
    finally:
        sandbox.close()
