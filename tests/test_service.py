"""The HTTP API in-process (Litestar's TestClient, real store, index and model): routes,
the error shape, and every kind of bad input, each a 4xx that stores nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from ingest import Embedder
from ragsvc.api.app import create_app
from ragsvc.settings import Settings

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}
ROUTES = {
    ("post", "/documents"),
    ("get", "/jobs/{job_id}"),
    ("get", "/documents"),
    ("get", "/documents/{document_id}"),
    ("get", "/documents/{document_id}/chunks"),
    ("delete", "/documents/{document_id}"),
    ("post", "/search"),
    ("post", "/query"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/templates"),
}
NOTES = (
    b"# Field notes\n\nThe lighthouse keeper logs the weather every morning at six.\n\n"
    b"Storm warnings are raised with a red flag on the east tower.\n"
)


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient[Any]]:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        max_file_bytes=200_000,
        max_files_per_upload=5,
        ingest_worker="thread",
    )
    with TestClient(
        create_app(settings, embedder=embedder), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def _upload(client: TestClient[Any], *files: tuple[str, bytes], **form: str) -> Any:
    return client.post(
        "/documents?wait=true",
        files=[("files", (name, content)) for name, content in files],
        data=form,
    )


def _nothing_stored(client: TestClient[Any]) -> None:
    ready = client.get("/ready").json()
    assert ready["documents"] == 0 and ready["jobs"] == {}


def _assert_problem(response: Any, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert needle in body["detail"], body["detail"]


def test_every_route_is_in_the_schema(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json").json()
    listed = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert listed >= ROUTES
    upload = schema["paths"]["/documents"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]


def test_error_shape_is_pinned(client: TestClient[Any]) -> None:
    response = client.get("/documents/12345")
    _assert_problem(response, 404, "document 12345 does not exist")
    assert response.json() == {
        "type": "about:blank#not-found",
        "title": "Not found",
        "status": 404,
        "detail": "document 12345 does not exist",
        "instance": "/documents/12345",
    }


def test_upload_search_query_delete(client: TestClient[Any]) -> None:
    response = _upload(client, ("notes.md", NOTES), collection="field", metadata='{"team": "a"}')
    assert response.status_code == 200, response.text
    (job,) = response.json()["jobs"]
    assert job["state"] == "ready" and job["document_id"] and job["chunks_done"] >= 1
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "ready"
    document = client.get(f"/documents/{job['document_id']}").json()
    assert document["media_type"] == "text/markdown" and document["metadata"] == {"team": "a"}
    chunks = client.get(f"/documents/{job['document_id']}/chunks").json()["chunks"]
    assert chunks and chunks[0]["text"].startswith("Field notes")
    listing = client.get("/documents", params={"collection": "field"}).json()
    assert [d["id"] for d in listing["documents"]] == [job["document_id"]]

    hits = client.post("/search", json={"query": "storm warning flag", "k": 3}).json()
    assert "red flag" in hits["results"][0]["text"]
    answer = client.post("/query", json={"question": "How are storm warnings raised?"}).json()
    assert answer["answerable"] is True and "red flag" in answer["answer"]
    assert any(s["cited"] for s in answer["sources"])
    assert set(answer["timings"]) == {"embed_ms", "search_ms", "answer_ms", "total_ms"}

    assert client.delete(f"/documents/{job['document_id']}").status_code == 204
    answer = client.post("/query", json={"question": "How are storm warnings raised?"}).json()
    assert answer["answerable"] is False and answer["sources"] == []


@pytest.mark.parametrize(
    ("make_request", "status", "needle"),
    [
        (lambda c: c.post("/documents", files={"collection": (None, "x")}), 400, "no files"),
        (lambda c: c.post("/documents", data={"collection": "x"}), 400, "multipart"),
        (lambda c: _upload(c, ("empty.txt", b"")), 400, "empty file"),
        (lambda c: _upload(c, ("big.txt", b"x" * 200_001)), 413, "limit is 200000"),
        (lambda c: _upload(c, ("pic.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64)), 415, "PNG"),
        (lambda c: _upload(c, ("junk.txt", bytes(range(256)) * 8)), 415, "binary data"),
        (lambda c: _upload(c, ("a.md", NOTES), metadata="{oops"), 400, "not valid JSON"),
        (lambda c: _upload(c, ("a.md", NOTES), metadata="[1, 2]"), 400, "JSON object"),
        (lambda c: c.post("/search", json={"query": "x", "k": 0}), 400, "k"),
        (lambda c: c.post("/search", json={"query": "x", "k": 10_000}), 400, "k"),
        (lambda c: c.post("/query", json={"question": ""}), 400, "question"),
        (lambda c: c.post("/query", json={"question": "   "}), 400, "question is empty"),
        (lambda c: c.post("/query", json={"question": "x", "extra": 1}), 400, "extra"),
        (
            lambda c: c.post(
                "/query", content=b"{not json", headers={"content-type": "application/json"}
            ),
            400,
            "",
        ),
        (lambda c: c.post("/query", json={"question": "x", "collection": "nope"}), 404, "nope"),
        (lambda c: c.get("/jobs/does-not-exist"), 404, "job 'does-not-exist' does not exist"),
        (lambda c: c.get("/documents/999/chunks"), 404, "document 999"),
        (lambda c: c.delete("/documents/999"), 404, "document 999"),
        (lambda c: c.get("/documents", params={"collection": "nope"}), 404, "nope"),
        (lambda c: c.get("/documents", params={"limit": 0}), 400, "limit"),
        # Integers beyond SQLite's 64 bits, and maps past their bounds, anywhere in a request.
        (lambda c: c.get(f"/documents/{2**64}"), 400, "document_id"),
        (lambda c: c.delete(f"/documents/{2**64}"), 400, "document_id"),
        (lambda c: c.get("/documents", params={"offset": 2**64}), 400, "offset"),
        (lambda c: c.get("/jobs/" + "j" * 65), 400, "job_id"),
        (
            lambda c: c.post("/search", json={"query": "x", "filters": {"document_ids": [2**64]}}),
            400,
            "document_ids",
        ),
        (
            lambda c: c.post("/search", json={"query": "x", "filters": {"metadata": {"n": 2**64}}}),
            400,
            "metadata",
        ),
        (
            lambda c: c.post(
                "/search",
                json={"query": "x", "filters": {"metadata": {f"k{i}": i for i in range(1000)}}},
            ),
            400,
            "metadata",
        ),
        (lambda c: _upload(c, ("a.md", NOTES), metadata=f'{{"n": {2**64}}}'), 400, "64-bit"),
        (
            lambda c: _upload(
                c, ("a.md", NOTES), metadata="{" + ",".join(f'"k{i}": {i}' for i in range(65)) + "}"
            ),
            400,
            "65 keys",
        ),
        (lambda c: _upload(c, *[(f"{i}.md", NOTES) for i in range(6)]), 413, "limit is 5"),
        (
            lambda c: _upload(c, *[(f"{i}.md", NOTES) for i in range(20)]),
            413,
            "more files than max_files_per_upload",
        ),
    ],
)
def test_bad_input_gets_a_4xx_and_stores_nothing(
    client: TestClient[Any], make_request: Any, status: int, needle: str
) -> None:
    _assert_problem(make_request(client), status, needle)
    _nothing_stored(client)


def test_request_over_the_limit_is_413(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(
        data_dir=str(tmp_path / "data"), max_request_bytes=10_000, ingest_worker="thread"
    )
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        _assert_problem(_upload(client, ("a.txt", b"word " * 5000)), 413, "")
        _nothing_stored(client)


def test_corrupt_pdf_fails_its_job_and_the_server_stays_up(client: TestClient[Any]) -> None:
    # A PDF header, then nothing either engine can parse (PDFium reads some damaged files
    # pypdf cannot, such as qpdf's bad-xref.pdf, so a sample no longer serves here).
    broken = b"%PDF-1.4\n%garbage\n" + b"x" * 3000 + b"\n%%EOF\n"
    response = _upload(client, ("bad.pdf", broken), ("ok.md", NOTES))
    assert response.status_code == 200
    bad, good = response.json()["jobs"]
    assert bad["state"] == "failed" and "unreadable PDF" in bad["error"]
    assert bad["document_id"] is None and good["state"] == "ready"
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["documents"] == 1


def test_same_bytes_twice_is_one_document(client: TestClient[Any]) -> None:
    first = _upload(client, ("notes.md", NOTES)).json()["jobs"][0]
    second = _upload(client, ("renamed.md", NOTES)).json()["jobs"][0]
    assert second["outcome"] == "unchanged"
    assert second["document_id"] == first["document_id"]
    assert client.get("/ready").json()["documents"] == 1


def test_jobs_report_progress(client: TestClient[Any]) -> None:
    response = client.post("/documents", files=[("files", ("notes.md", NOTES))])
    assert response.status_code == 202
    job = response.json()["jobs"][0]
    assert job["state"] in ("queued", "extracting", "embedding", "ready")
    deadline = time.monotonic() + 60
    while job["state"] not in ("ready", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "ready"
    assert job["chunks_done"] == job["chunks_total"] >= 1
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_json_nested_past_the_limit_is_a_400_naming_the_field(
    client: TestClient[Any], levels: int
) -> None:
    nested = "[" * levels + "]" * levels
    schema = '{"a":' * levels + "1" + "}" * levels
    json_type = {"content-type": "application/json"}
    cases = [
        (client.post("/search", content=nested, headers=json_type), "request body nests"),
        (
            client.post(
                "/search", content=f'{{"query": "x", "filters": {nested}}}', headers=json_type
            ),
            "field 'filters' nests",
        ),
        (
            client.post(
                "/query",
                content=f'{{"question": "x", "response_schema": {schema}}}',
                headers=json_type,
            ),
            "field 'response_schema' nests",
        ),
        (_upload(client, ("a.txt", b"a short note"), metadata=f'{{"a": {nested}}}'), "metadata"),
    ]
    for response, needle in cases:
        _assert_problem(response, 400, needle)
    _nothing_stored(client)
    # Within the limit, nesting is only data.
    ok = client.post("/search", json={"query": "x", "filters": {"a": [[["b"]]]}})
    assert ok.status_code != 500


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    from ragsvc.api.json_limits import depth, too_deep

    assert depth(b'{"q": "[[[[{{{{", "f": {"a": [1, "]]]\\"[["]}}') == 3
    assert depth(b'"just a string"') == 0
    assert too_deep(b'{"a": [[1]]}', "body", limit=3) is None
    assert too_deep(b'{"a": 1, "b": [[[[1]]]]}', "body", limit=3) == (
        "body field 'b' nests 5 levels deep; the limit is 3"
    )


def test_half_a_surrogate_pair_is_a_400_that_says_so(client: TestClient[Any]) -> None:
    json_type = {"content-type": "application/json"}
    response = client.post("/search", content=b'{"query": "\\ud800"}', headers=json_type)
    _assert_problem(response, 400, "half a UTF-16 surrogate pair (\\ud800)")
    # A whole pair is text, and an escaped backslash before "ud800" is no escape at all.
    for text in (b'"\\ud83d\\ude00 harbour"', b'"\\\\ud800 harbour"'):
        response = client.post("/search", content=b'{"query": ' + text + b"}", headers=json_type)
        assert response.status_code == 200, response.text


def test_search_and_query_order_sources_and_name_their_scores_as_documented(
    client: TestClient[Any],
) -> None:
    notes = [
        ("tides.txt", b"The tide tables are printed weekly by the harbour office."),
        ("ferry.txt", b"The ferry to the island leaves the harbour at nine."),
        ("storm.txt", b"Storm warnings are raised with a red flag on the east tower."),
        ("bees.txt", b"The harbour office keeps two hives of bees on its roof."),
    ]
    assert _upload(client, *notes).status_code == 200
    question = "When does the ferry leave the harbour?"
    results = client.post("/search", json={"query": question, "k": 4}).json()["results"]
    # /search: best first by `score` (the ranking score of the mode), `similarity` beside it.
    scores = [hit["score"] for hit in results]
    assert scores == sorted(scores, reverse=True) and len(results) == 4
    answer = client.post("/query", json={"question": question, "k": 4}).json()
    sources = answer["sources"]
    # /query: sources numbered in the same retrieval order, with the same `score` (the
    # mode's) and `similarity` (the cosine to the question, on which confidence is computed,
    # so it need not fall with the number).
    assert [s["number"] for s in sources] == [1, 2, 3, 4]
    assert [(s["document_id"], s["char_start"]) for s in sources] == [
        (hit["document_id"], hit["char_start"]) for hit in results
    ]
    for source, hit in zip(sources, results, strict=True):
        assert source["score"] == pytest.approx(hit["score"], abs=1e-4)
        assert source["similarity"] == pytest.approx(hit["similarity"], abs=1e-4)
        assert source["rerank_score"] is None and hit["rerank_score"] is None
    assert sources[0]["source_name"] == "ferry.txt" and sources[0]["cited"]


def test_a_pdf_page_over_the_stream_limit_is_named_in_the_jobs_warning(
    tmp_path: Path, embedder: Embedder
) -> None:
    from tests.support.hostile_files import TEXT_PAGE, build_pdf, deflated_zeros

    settings = Settings(
        data_dir=str(tmp_path / "data"),
        ingest_worker="thread",
        extract_max_stream_bytes=1_000_000,
    )
    text_page = (TEXT_PAGE.format(n=1).encode(), "")
    pdf = build_pdf([text_page, (deflated_zeros(3_000_000), "/Filter /FlateDecode"), text_page])
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        response = _upload(client, ("ledger.pdf", pdf))
        assert response.status_code == 200, response.text
        (job,) = response.json()["jobs"]
        assert job["state"] == "ready" and job["outcome"] == "added"
        assert "page 2: skipped" in job["warning"]
        assert "over 1000000 bytes (setting extract_max_stream_bytes)" in job["warning"]


CONVERSATION_NOTES = [
    (
        "ghent.txt",
        b"The Treaty of Ghent ended the War of 1812 between Britain and the United States. "
        b"The treaty was signed on 24 December 1814 in the city of Ghent.",
    ),
    (
        "lease.txt",
        b"The lease of the harbour warehouse was signed in March 2020 for ten years. "
        b"When the lease was signed, the rent was fixed at 900 pounds a month.",
    ),
    ("bees.txt", b"The harbour office keeps two hives of bees on its roof."),
]
FIRST_TURN = [
    {"role": "user", "content": "What ended the War of 1812?"},
    {"role": "assistant", "content": "The Treaty of Ghent ended the War of 1812. [1]"},
]


def test_a_follow_up_is_searched_with_the_conversation(client: TestClient[Any]) -> None:
    """ "When was it signed?" alone finds the lease; after a question on the War of 1812 it
    finds the treaty, through `/query` and through the OpenAI-compatible route, and says what
    it searched."""
    assert _upload(client, *CONVERSATION_NOTES).status_code == 200
    follow_up = "When was it signed?"
    bare = client.post("/query", json={"question": follow_up, "k": 1}).json()
    assert bare["sources"][0]["source_name"] == "lease.txt" and bare["retrieval_query"] is None
    asked = client.post(
        "/query", json={"question": follow_up, "k": 1, "messages": FIRST_TURN}
    ).json()
    assert asked["sources"][0]["source_name"] == "ghent.txt", asked
    assert "1814" in asked["answer"]
    assert asked["retrieval_query"].startswith(follow_up)
    assert "War of 1812" in asked["retrieval_query"]
    chat = client.post(
        "/v1/chat/completions",
        json={
            "model": "ragsvc",
            "messages": [
                {"role": "system", "content": "Answer from the documents."},
                *FIRST_TURN,
                {"role": "user", "content": follow_up},
            ],
        },
    ).json()
    assert "1814" in chat["choices"][0]["message"]["content"], chat
    assert chat["ragsvc"]["retrieval_query"] == asked["retrieval_query"]
    logged = client.get("/interactions", params={"limit": 3}).json()["interactions"]
    # The question as asked, and what was searched beside it.
    assert logged[0]["question"] == follow_up
    assert logged[0]["retrieval_query"] == asked["retrieval_query"]


def test_the_conversation_is_bounded_and_checked(client: TestClient[Any]) -> None:
    assert _upload(client, *CONVERSATION_NOTES).status_code == 200
    # Beyond conversation_max_turns (8), the oldest turns go: here, the one that mattered.
    padding = [{"role": "user", "content": "Where are the hives?"}] * 8
    asked = client.post(
        "/query",
        json={"question": "When was it signed?", "k": 1, "messages": FIRST_TURN + padding},
    ).json()
    assert "War of 1812" not in asked["retrieval_query"]
    for bad, reason in (
        ([{"role": "system", "content": "x"}], "role"),
        ([{"role": "user"}], "content"),
        ([{"role": "user", "content": "x" * 20_001}], "20000"),
        ([{"role": "user", "content": "x"}] * 101, "100"),
    ):
        response = client.post("/query", json={"question": "When?", "messages": bad})
        assert response.status_code == 400 and reason in response.json()["detail"], response.text
