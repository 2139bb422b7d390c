"""Metrics, traces and request ids: `/metrics` moves by exactly the traffic sent, one
`/query` makes the documented span tree, and one request id follows an upload into the
worker's log and a question into the interaction log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ingest import Embedder
from ragsvc.api.app import create_app
from ragsvc.settings import Settings
from tests.support.processes import Server, wait_jobs

NOTE = (
    b"The harbour office opens at seven. Ferries to the outer islands leave at nine and "
    b"return before dusk. Tickets are sold on board only."
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client | TestClient[Any]) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("observed")
    running = Server(folder / "data", folder / "server.log").start()
    yield running
    running.stop()


@pytest.mark.slow
def test_metrics_move_by_exactly_the_traffic_sent(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        before = scrape(client)
        upload = client.post("/documents", files=[("files", ("harbour.txt", NOTE))])
        assert upload.status_code == 202
        job = wait_jobs(client, [upload.json()["jobs"][0]["id"]])[0]
        assert job["state"] == "ready"
        deadline = time.monotonic() + 30
        while client.get("/ready").json()["vectors"] < job["chunks_total"]:
            assert time.monotonic() < deadline, "the server did not pick the document up"
            time.sleep(0.1)
        for _ in range(3):
            assert client.post("/search", json={"query": "ferry times"}).status_code == 200
        assert client.get("/documents/999999").status_code == 404
        assert client.post("/search", json={"query": ""}).status_code == 400
        after = scrape(client)

    def requests(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return moved(before, after, "ragsvc_http_requests_total", **labels)

    assert requests("/search", "POST", "200") == 3
    assert requests("/search", "POST", "400") == 1
    assert requests("/documents/{document_id}", "GET", "404") == 1
    assert requests("/documents", "POST", "202") == 1
    assert requests("/metrics", "GET", "200") == 1  # the first scrape
    polls = requests("/jobs/{job_id}", "GET", "200")
    assert polls >= 1
    search_latency = {"route": "/search", "method": "POST", "status": "200"}
    assert moved(before, after, "ragsvc_http_request_seconds_count", **search_latency) == 3
    assert moved(before, after, "ragsvc_jobs", state="ready") == 1
    assert value(after, "ragsvc_job_queue_depth") == 0
    chunks = job["chunks_total"]
    assert chunks >= 1
    assert moved(before, after, "ragsvc_chunks_embedded_total") == chunks
    assert moved(before, after, "ragsvc_embedding_batch_seconds_count") >= 1
    assert moved(before, after, "ragsvc_index_vectors") == chunks
    assert moved(before, after, "ragsvc_index_lexical_entries") == chunks
    # Three searches for one text: embedded once, then twice from the cache.
    assert moved(before, after, "ragsvc_query_embedding_cache_misses_total") == 1
    assert moved(before, after, "ragsvc_query_embedding_cache_hits_total") == 2


@pytest.mark.slow
def test_one_request_id_follows_an_upload_and_a_question(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        headers = {"X-Request-ID": "upload-7f3a"}
        upload = client.post(
            "/documents",
            files=[("files", ("ferries.txt", NOTE + b" Bikes ride free."))],
            headers=headers,
        )
        assert upload.headers["x-request-id"] == "upload-7f3a"
        wait_jobs(client, [upload.json()["jobs"][0]["id"]])
        answer = client.post(
            "/query",
            json={"question": "When do ferries leave?"},
            headers={"X-Request-ID": "ask-19"},
        )
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == "ask-19"
        assert answer.json()["request_id"] == "ask-19"
        made = client.get("/health")
        assert len(made.headers["x-request-id"]) == 32  # none given: one is made
        hostile = client.get("/health", headers={"X-Request-ID": "bad id\twith tabs"})
        assert hostile.headers["x-request-id"] != "bad id\twith tabs"

    def log_lines() -> list[dict[str, Any]]:
        text = server.log.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    # A request's access line is written once its response is sent: wait for the last one.
    deadline = time.monotonic() + 10
    lines = log_lines()
    while not any(e.get("request_id") == "ask-19" for e in lines):
        assert time.monotonic() < deadline, "no access line for the question"
        time.sleep(0.1)
        lines = log_lines()
    worker = [
        e
        for e in lines
        if e.get("request_id") == "upload-7f3a" and e["logger"] == "ragsvc.jobs.runner"
    ]
    assert any("started" in e["message"] for e in worker), lines[-20:]
    assert any("ready" in e["message"] for e in worker)
    assert {e["pid"] for e in worker} != {e["pid"] for e in lines if e["logger"] == "ragsvc.access"}
    access = [
        e for e in lines if e["logger"] == "ragsvc.access" and e.get("request_id") == "ask-19"
    ]
    assert access and access[0]["route"] == "/query" and access[0]["status"] == 200
    with sqlite3.connect(server.data_dir / "interactions.sqlite3") as log:
        ids = {row[0] for row in log.execute("SELECT request_id FROM interactions")}
    assert "ask-19" in ids


def test_one_query_makes_the_span_tree(tmp_path: Path, embedder: Embedder) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    app = create_app(settings, embedder=embedder, tracer_provider=provider)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        uploaded = client.post("/documents?wait=true", files=[("files", ("harbour.txt", NOTE))])
        assert uploaded.status_code == 200
        exporter.clear()
        response = client.post(
            "/query", json={"question": "When do ferries leave?", "mode": "hybrid"}
        )
        assert response.status_code == 200, response.text
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    root = by_name["POST /query"]
    assert root.parent is None
    assert root.attributes is not None and root.attributes["http.response.status_code"] == 200
    for child in ("embed", "dense", "lexical", "fuse", "answer"):
        span = by_name[child]
        assert span.parent is not None and span.parent.span_id == root.context.span_id, child
        assert span.context.trace_id == root.context.trace_id


def test_llm_calls_are_spans_under_answer(tmp_path: Path, embedder: Embedder) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.support.fake_llm import FakeLLM, llm_settings

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake = FakeLLM("openai")
    try:
        app = create_app(llm_settings(tmp_path, fake), embedder=embedder, tracer_provider=provider)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            client.post("/documents?wait=true", files=[("files", ("harbour.txt", NOTE))])
            exporter.clear()
            response = client.post("/query", json={"question": "When do ferries leave?"})
            assert response.status_code == 200, response.text
            samples = scrape(client)
    finally:
        fake.close()
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    llm_span, answer = by_name["llm"], by_name["answer"]
    assert llm_span.parent is not None and llm_span.parent.span_id == answer.context.span_id
    assert value(samples, "ragsvc_llm_calls_total", backend="openai") == 1
    assert value(samples, "ragsvc_llm_errors_total", backend="openai") == 0
    assert value(samples, "ragsvc_llm_breaker_state", backend="openai") == 0
