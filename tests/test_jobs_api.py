"""Jobs over HTTP: listing by state with pages, cancelling a queued job (and not a started one),
and a document's chunks in pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from ingest import Embedder
from ragsvc.api.app import create_app
from ragsvc.jobs.queue import JobNotCancellable, JobQueue, NewJob
from ragsvc.settings import Settings

LONG = ("The ferry timetable changes in winter. " * 200).encode()


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient[Any]]:
    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as c:
        yield c


def test_jobs_are_listed_by_state_in_pages(client: TestClient[Any]) -> None:
    files = [
        ("files", (f"note-{n}.txt", f"Note {n} about tide tables.".encode())) for n in range(5)
    ]
    files.append(("files", ("empty.md", b"   ")))
    response = client.post("/documents?wait=true", files=files[:5])
    assert response.status_code == 200
    first = client.get("/jobs", params={"limit": 2}).json()
    assert len(first["jobs"]) == 2 and first["next_offset"] == 2
    rest = client.get("/jobs", params={"limit": 2, "offset": 4}).json()
    assert len(rest["jobs"]) == 1 and rest["next_offset"] is None
    names = {j["file_name"] for j in client.get("/jobs", params={"state": "ready"}).json()["jobs"]}
    assert names == {f"note-{n}.txt" for n in range(5)}
    assert client.get("/jobs", params={"state": "queued"}).json()["jobs"] == []
    bad = client.get("/jobs", params={"state": "sleeping"})
    assert bad.status_code == 400


def test_a_finished_job_cannot_be_cancelled_and_an_unknown_one_is_404(
    client: TestClient[Any],
) -> None:
    job = client.post("/documents?wait=true", files=[("files", ("a.txt", b"Tides."))]).json()
    job_id = job["jobs"][0]["id"]
    refused = client.delete(f"/jobs/{job_id}")
    assert refused.status_code == 409
    assert "only a queued job can be cancelled" in refused.json()["detail"]
    assert client.delete("/jobs/no-such-job").status_code == 404


def test_a_queued_job_is_cancelled_and_its_bytes_go(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    try:
        [job] = queue.create([NewJob("c", "a.txt", b"hello")])
        cancelled = queue.cancel(job.id)
        assert cancelled.state == "cancelled" and cancelled.finished_at is not None
        assert queue.take(10) == []  # never taken
        row = queue._reader().execute("SELECT payload FROM jobs").fetchone()
        assert row[0] is None
        with pytest.raises(JobNotCancellable):
            queue.cancel(job.id)
    finally:
        queue.close()


def test_chunks_come_in_pages(client: TestClient[Any]) -> None:
    job = client.post("/documents?wait=true", files=[("files", ("long.txt", LONG))]).json()
    document_id = job["jobs"][0]["document_id"]
    everything = client.get(f"/documents/{document_id}/chunks").json()
    total = len(everything["chunks"])
    assert total >= 3 and everything["next_offset"] is None
    pages, offset = [], 0
    while offset is not None:
        page = client.get(
            f"/documents/{document_id}/chunks", params={"limit": 2, "offset": offset}
        ).json()
        pages.extend(page["chunks"])
        offset = page["next_offset"]
    assert [c["ordinal"] for c in pages] == list(range(total))
    assert client.get(f"/documents/{document_id}/chunks", params={"limit": 0}).status_code == 400
