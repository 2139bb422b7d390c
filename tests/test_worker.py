"""The ingestion worker beside a real server: killed mid-batch while queries run, and the
data directory written by CLI commands (`ingest`, `rebuild`) while the server serves it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.data import write_corpus
from tests.support.processes import Server, run_ragsvc, wait_jobs


class Searcher:
    """A client searching back to back in a thread; every status it saw is kept."""

    def __init__(self, url: str, query: str) -> None:
        self.url = url
        self.query = query
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Searcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            number = 0
            while not self._stop.is_set():
                number += 1
                try:
                    response = client.post("/search", json={"query": f"{self.query} {number}"})
                    self.statuses.append(response.status_code)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                time.sleep(0.02)


def _note(i: int) -> bytes:
    return (
        f"Logbook {i}. The ferry {i % 13} crossed the fjord at dawn carrying {i * 3} crates of "
        f"apples. Captain number {i % 7} signed entry {i * 101}."
    ).encode()


@pytest.mark.slow
def test_worker_killed_mid_batch_while_queries_run(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            files = [("files", (f"log-{i:03d}.txt", _note(i), "text/plain")) for i in range(300)]
            job_ids = [j["id"] for j in client.post("/documents", files=files).json()["jobs"]]
            first_worker = client.get("/ready").json()["worker"]["pid"]
            assert first_worker is not None and first_worker != server.process.pid  # type: ignore[union-attr]
            with Searcher(server.url, "ferry crossing the fjord") as searcher:
                deadline = time.monotonic() + 180
                while client.get("/ready").json()["jobs"].get("ready", 0) < 20:
                    assert time.monotonic() < deadline, "the worker stored nothing"
                    time.sleep(0.1)
                assert client.get("/ready").json()["worker"]["ready"] is True
                os.kill(first_worker, signal.SIGKILL)
                killed_at = client.get("/ready").json()["jobs"]
                jobs = wait_jobs(client, job_ids, timeout=300)
                ready = client.get("/ready").json()
            assert searcher.errors == [] and set(searcher.statuses) == {200}
            assert len(searcher.statuses) > 20
            assert ready["worker"]["restarts"] >= 1
            assert ready["worker"]["pid"] not in (None, first_worker)
            assert ready["worker"]["ready"] is True  # the new worker said so, not the dead one
            assert all(j["state"] == "ready" for j in jobs), killed_at
            documents = client.get("/documents", params={"limit": 1000}).json()["documents"]
            names = [d["source_name"] for d in documents]
            assert sorted(names) == sorted(f"log-{i:03d}.txt" for i in range(300))
            assert len({j["document_id"] for j in jobs}) == 300
            # Committed by the worker, searchable through the running server once it has
            # followed the change log that far.
            stored = sum(j["chunks_total"] or 0 for j in jobs)
            deadline = time.monotonic() + 30
            while client.get("/ready").json()["chunks"] < stored:
                assert time.monotonic() < deadline, "the server did not follow the worker"
                time.sleep(0.1)
            hits = client.post("/search", json={"query": "entry 29997", "mode": "lexical"}).json()
            assert hits["results"][0]["source_name"] == "log-297.txt"
    finally:
        server.stop()


def _search(client: httpx.Client, query: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


@pytest.mark.slow
def test_cli_ingest_and_rebuild_beside_a_live_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            files = [("files", (f"seed-{i}.txt", _note(i), "text/plain")) for i in range(20)]
            assert client.post("/documents?wait=true", files=files).status_code == 200
            write_corpus(tmp_path / "more", 12)
            with Searcher(server.url, "volcano magma") as searcher:
                ingest = run_ragsvc(
                    "--data-dir", str(data_dir), "ingest", str(tmp_path / "more"), "--no-progress"
                )
                assert ingest.returncode == 0, ingest.stderr
                deadline = time.monotonic() + 10
                while not any(
                    h["source_name"].startswith("more/")
                    for h in _search(client, "magma rises through the crust", k=10)
                ):
                    assert time.monotonic() < deadline, "CLI ingest not picked up by the server"
                    time.sleep(0.1)
                assert client.get("/ready").json()["index"].startswith("IDMap2,Flat")
                rebuild = run_ragsvc("--data-dir", str(data_dir), "rebuild", "--index-type", "hnsw")
                assert rebuild.returncode == 0, rebuild.stderr
                deadline = time.monotonic() + 10
                while not client.get("/ready").json()["index"].startswith("IDMap2,HNSW"):
                    assert time.monotonic() < deadline, "the server did not move to the rebuild"
                    time.sleep(0.1)
            assert searcher.errors == [] and set(searcher.statuses) == {200}
            assert len(searcher.statuses) > 20
            ready = client.get("/ready").json()
            assert ready["chunks"] == ready["vectors"] > 0
            hits = _search(client, "tides follow the moon", mode="dense")
            assert hits and "moon" in hits[0]["text"]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_job_reported_ready_is_searchable_at_once(tmp_path: Path) -> None:
    # The server would follow the worker's commits only once a minute here: a document whose
    # job a client has read as "ready" (alone, or in the list) must already be searchable.
    server = Server(tmp_path / "data", tmp_path / "server.log", {"RAGSVC_REFRESH_INTERVAL": "60"})
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:

            def upload(name: str, text: str) -> str:
                files = [("files", (name, text.encode(), "text/plain"))]
                return str(client.post("/documents", files=files).json()["jobs"][0]["id"])

            first = upload("quillwort.txt", "The quillwort grows in the shallows of the loch.")
            assert wait_jobs(client, [first])[0]["state"] == "ready"  # GET /jobs/{id}
            hits = _search(client, "quillwort", mode="lexical")
            assert [h["source_name"] for h in hits] == ["quillwort.txt"]

            second = upload("wrack.txt", "Bladderwrack clings to the rocks below the pier.")
            deadline = time.monotonic() + 120
            while second not in {
                j["id"] for j in client.get("/jobs", params={"state": "ready"}).json()["jobs"]
            }:
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.1)
            hits = _search(client, "bladderwrack", mode="lexical")
            assert [h["source_name"] for h in hits] == ["wrack.txt"]
    finally:
        server.stop()
