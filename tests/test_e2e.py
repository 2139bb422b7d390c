"""End to end against the real server process (`python -m ragsvc serve`) over real HTTP."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.data import NAACL, QUESTION, WHOLE_SENTENCE, dataset
from tests.support.processes import Server, wait_jobs

MARKDOWN = (
    b"# Release checklist\n\nTag the release, then publish the wheel to the package index.\n\n"
    b"Announce the release on the mailing list after the wheel is public.\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    running = Server(tmp_path / "data", tmp_path / "server.log").start()
    yield running
    running.stop()


@pytest.mark.slow
def test_pdf_and_markdown_question_cites_the_page(server: Server) -> None:
    pdf = dataset(*NAACL)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post(
            "/documents",
            params={"wait": "true"},
            files=[
                ("files", (pdf.name, pdf.read_bytes(), "application/pdf")),
                ("files", ("release.md", MARKDOWN, "text/markdown")),
            ],
        )
        assert response.status_code == 200, response.text
        pdf_job, md_job = response.json()["jobs"]
        assert pdf_job["state"] == md_job["state"] == "ready"
        assert pdf_job["pages"] == 8

        answer = client.post("/query", json={"question": QUESTION, "k": 5}).json()
        assert answer["answerable"] is True, answer
        # The whole sentence, its line breaks and line-end hyphen undone.
        assert WHOLE_SENTENCE in answer["answer"], answer["answer"]
        assert "\n" not in answer["answer"] and "F- " not in answer["answer"]
        cited = [s for s in answer["sources"] if s["cited"]]
        assert cited and cited[0]["document_id"] == pdf_job["document_id"]
        assert cited[0]["page_start"] <= 5 <= cited[0]["page_end"]

        assert client.delete(f"/documents/{pdf_job['document_id']}").status_code == 204
        again = client.post("/query", json={"question": QUESTION, "k": 5}).json()
        assert again["answerable"] is False
        assert all(s["document_id"] == md_job["document_id"] for s in again["sources"])


@pytest.mark.slow
def test_search_keeps_answering_during_a_500_document_job(server: Server) -> None:
    def note(i: int) -> bytes:
        # About 200 tokens each, so that the job takes long enough to matter.
        lines = [f"Note {i}. Shipment {i} of copper wire left dock {i % 17} on a Tuesday."]
        lines += [
            f"Item {j} of shipment {i} weighed {(i * 31 + j * 7) % 900 + 100} kilograms and was "
            f"checked by inspector number {(i + j) % 23} before loading onto truck {j * i % 41}."
            for j in range(6)
        ]
        lines.append(f"The invoice number is {i * 7919}.")
        return " ".join(lines).encode()

    files = [("files", (f"note-{i:03d}.txt", note(i), "text/plain")) for i in range(500)]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        started = time.monotonic()
        response = client.post("/documents", files=files)
        assert response.status_code == 202
        job_ids = [j["id"] for j in response.json()["jobs"]]
        latencies: list[float] = []
        while True:
            sent = time.monotonic()
            result = client.post("/search", json={"query": "copper wire shipment", "k": 3})
            assert result.status_code == 200
            latencies.append(time.monotonic() - sent)
            states = {client.get(f"/jobs/{job_ids[-1]}").json()["state"]}
            if states <= {"ready", "failed"}:
                break
            time.sleep(0.05)
        jobs = wait_jobs(client, job_ids)
        elapsed = time.monotonic() - started
        assert all(j["state"] == "ready" for j in jobs)
        assert client.get("/ready").json()["documents"] == 500
        hits = client.post("/search", json={"query": "invoice number 7919", "k": 3}).json()
        assert hits["results"][0]["source_name"].startswith("note-")
    # Searches were answered all along: many of them, none waiting for the job.
    print(
        f"500 documents in {elapsed:.1f} s; {len(latencies)} searches meanwhile, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    assert len(latencies) >= 10, (len(latencies), elapsed)
    assert max(latencies) < elapsed / 4, (max(latencies), elapsed)


@pytest.mark.slow
def test_sigkill_during_uploads_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", tmp_path / "server.log").start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def upload_batches() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for batch in range(1000):
                if stop.is_set():
                    return
                files = [
                    (
                        "files",
                        (
                            f"b{batch}-{i}.txt",
                            f"Batch {batch} file {i}: the harbour crane lifts container "
                            f"{batch * 100 + i} onto the ship.".encode(),
                            "text/plain",
                        ),
                    )
                    for i in range(10)
                ]
                try:
                    response = client.post("/documents", files=files)
                except httpx.TransportError:
                    return
                if response.status_code == 202:
                    acknowledged.extend(j["id"] for j in response.json()["jobs"])

    uploader = threading.Thread(target=upload_batches)
    uploader.start()
    try:
        while len(acknowledged) < 30:
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 1.0))
        server.kill()
    finally:
        stop.set()
        uploader.join(timeout=60)
        server.stop()

    queue = tmp_path / "data" / "jobs.sqlite3"
    with sqlite3.connect(queue) as conn:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    print(f"killed with {len(acknowledged)} jobs acknowledged; job states after the kill: {states}")
    restarted = Server(tmp_path / "data", tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=60) as client:
            jobs = wait_jobs(client, list(acknowledged))
            assert all(j["state"] == "ready" for j in jobs), [
                j for j in jobs if j["state"] != "ready"
            ]
            documents: list[dict[str, Any]] = []
            offset: int | None = 0
            while offset is not None:
                page = client.get("/documents", params={"limit": 1000, "offset": offset}).json()
                documents.extend(page["documents"])
                offset = page["next_offset"]
    finally:
        restarted.stop()
    names = [d["source_name"] for d in documents]
    assert len(names) == len(set(names)), "a document was stored twice"
    assert {j["document_id"] for j in jobs} <= {d["id"] for d in documents}
    assert len({j["document_id"] for j in jobs}) == len(jobs), "two jobs share a document"
