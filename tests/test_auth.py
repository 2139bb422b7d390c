"""API keys, scopes and collections as tenants, on every route the OpenAPI schema lists; the
keyless loopback mode against other sites and foreign Host headers; the `keys` commands."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from ingest import Embedder
from ragsvc.api.app import create_app
from ragsvc.security.keys import KeyStore
from ragsvc.settings import Settings
from tests.support.processes import Server, run_ragsvc

SECRET_B = b"The vault code of team B is 4471; it is kept in the cellar behind the wine racks."
NOTES_A = b"Team A keeps the lighthouse log. The lamp is cleaned every Sunday morning."


class Tenants:
    """Two collections, a document and a job in each, and keys of every kind."""

    def __init__(self, client: TestClient[Any], keys: KeyStore) -> None:
        self.client = client
        self.document: dict[str, int] = {}
        self.job: dict[str, str] = {}
        self.answer: dict[str, str] = {}
        for collection, content in (("a", NOTES_A), ("b", SECRET_B)):
            response = client.post(
                "/documents?wait=true",
                files=[("files", (f"{collection}.txt", content))],
                data={"collection": collection},
            )
            assert response.status_code == 200, response.text
            (job,) = response.json()["jobs"]
            self.job[collection] = job["id"]
            self.document[collection] = job["document_id"]
            asked = client.post(
                "/query", json={"question": "What is written here?", "collection": collection}
            )
            self.answer[collection] = asked.json()["request_id"]
        self.admin = keys.create("ops", "admin")
        self.reader = keys.create("dashboard", "read")
        self.writer_a = keys.create("team a", "write", ["a"])
        self.admin_a = keys.create("team a lead", "admin", ["a"])
        revoked = keys.create("old laptop", "admin")
        keys.revoke(revoked.split("_")[1])
        self.revoked = revoked


# How to call each operation of the schema against collection `target`: (path, request kwargs).
# A route added to the app without an entry here fails the test, so none can be missed.
Call = Callable[[Tenants, str], tuple[str, dict[str, Any]]]
CALLS: dict[tuple[str, str], Call] = {
    ("post", "/documents"): lambda t, c: (
        "/documents",
        {"files": [("files", ("new.txt", b"A new note."))], "data": {"collection": c}},
    ),
    ("get", "/jobs/{job_id}"): lambda t, c: (f"/jobs/{t.job[c]}", {}),
    ("get", "/documents"): lambda t, c: ("/documents", {"params": {"collection": c}}),
    ("get", "/documents/{document_id}"): lambda t, c: (f"/documents/{t.document[c]}", {}),
    ("get", "/documents/{document_id}/chunks"): lambda t, c: (
        f"/documents/{t.document[c]}/chunks",
        {},
    ),
    ("delete", "/documents/{document_id}"): lambda t, c: (f"/documents/{t.document[c]}", {}),
    ("post", "/search"): lambda t, c: (
        "/search",
        {"json": {"query": "vault code", "collection": c}},
    ),
    ("post", "/query"): lambda t, c: (
        "/query",
        {"json": {"question": "What is the vault code?", "collection": c}},
    ),
    ("get", "/collections"): lambda t, c: ("/collections", {}),
    ("post", "/collections"): lambda t, c: ("/collections", {"json": {"name": c}}),
    ("delete", "/collections/{name}"): lambda t, c: (f"/collections/{c}", {}),
    ("get", "/templates"): lambda t, c: ("/templates", {}),
    ("get", "/ready"): lambda t, c: ("/ready", {}),
    ("get", "/health"): lambda t, c: ("/health", {}),
    ("get", "/jobs"): lambda t, c: ("/jobs", {}),
    ("delete", "/jobs/{job_id}"): lambda t, c: (f"/jobs/{t.job[c]}", {}),
    ("get", "/metrics"): lambda t, c: ("/metrics", {}),
    ("post", "/admin/backup"): lambda t, c: ("/admin/backup", {}),
    ("post", "/feedback"): lambda t, c: (
        "/feedback",
        {"json": {"request_id": t.answer[c], "rating": "up"}},
    ),
    ("get", "/interactions"): lambda t, c: ("/interactions", {}),
    ("get", "/v1/models"): lambda t, c: ("/v1/models", {}),
    ("post", "/v1/chat/completions"): lambda t, c: (
        "/v1/chat/completions",
        {
            "json": {
                "model": f"ragsvc/{c}",
                "messages": [{"role": "user", "content": "What is the vault code?"}],
            }
        },
    ),
}
WRITES = {
    ("post", "/documents"),
    ("delete", "/documents/{document_id}"),
    ("delete", "/jobs/{job_id}"),
}
ADMIN = {
    ("post", "/collections"),
    ("delete", "/collections/{name}"),
    ("get", "/metrics"),
    ("post", "/admin/backup"),
    ("get", "/interactions"),
}
UNSCOPED = {
    ("get", "/templates"),
    ("get", "/ready"),
    ("get", "/health"),
    ("get", "/collections"),
    ("get", "/jobs"),
    ("get", "/v1/models"),
    ("get", "/metrics"),
    ("post", "/admin/backup"),
    ("get", "/interactions"),
}
PUBLIC = {("get", "/health")}


@pytest.fixture
def tenants(tmp_path: Path, embedder: Embedder) -> Iterator[Tenants]:
    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    app = create_app(settings, embedder=embedder)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        keys = KeyStore.open(settings.data_path)
        try:
            yield Tenants(client, keys)
        finally:
            keys.close()


def _call(tenants: Tenants, operation: tuple[str, str], target: str, key: str | None) -> Any:
    path, kwargs = CALLS[operation](tenants, target)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return tenants.client.request(operation[0].upper(), path, headers=headers, **kwargs)


def test_every_route_checks_keys_scopes_and_collections(tenants: Tenants) -> None:
    client = tenants.client
    admin = {"Authorization": f"Bearer {tenants.admin}"}
    schema = client.get("/schema/openapi.json", headers=admin).json()
    operations = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert operations == set(CALLS), "a route without an isolation check"
    assert client.get("/schema/openapi.json").status_code == 401

    for operation in sorted(operations - PUBLIC):
        for key in (None, "rsk_000000000000_guess", tenants.revoked):
            response = _call(tenants, operation, "a", key)
            assert response.status_code == 401, (operation, key, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
        response = _call(tenants, operation, "b", tenants.reader)
        expected = 403 if operation in WRITES | ADMIN else 200
        assert response.status_code == expected, (operation, response.text)
        if operation in ADMIN:
            response = _call(tenants, operation, "b", tenants.writer_a)
            assert response.status_code == 403, (operation, response.text)
        if operation not in UNSCOPED:
            tenant_key = tenants.admin_a if operation in ADMIN else tenants.writer_a
            response = _call(tenants, operation, "b", tenant_key)
            assert response.status_code == 404, (operation, response.text)
            assert b"4471" not in response.content
    assert _call(tenants, ("get", "/health"), "a", None).status_code == 200

    # Listings, searches and answers without a collection see only the key's own.
    team_a = {"Authorization": f"Bearer {tenants.writer_a}"}
    listed = client.get("/documents", headers=team_a).json()["documents"]
    assert {d["collection"] for d in listed} == {"a"}
    collections = client.get("/collections", headers=team_a).json()["collections"]
    assert [c["name"] for c in collections] == ["a"]
    jobs = client.get("/jobs", headers=team_a).json()["jobs"]
    assert jobs and {j["collection"] for j in jobs} == {"a"}
    models = [m["id"] for m in client.get("/v1/models", headers=team_a).json()["data"]]
    assert models == ["ragsvc", "ragsvc/a"]
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "ragsvc", "messages": [{"role": "user", "content": "vault code?"}]},
        headers=team_a,
    )
    assert chat.status_code == 200 and "4471" not in chat.text
    # The interaction log shows a limited admin key only the answers from its collections.
    logged = client.get("/interactions", headers=lead_a_key(tenants)).json()["interactions"]
    assert logged and all(i["collection"] == "a" or i["scope"] == ["a"] for i in logged)
    everything_logged = client.get("/interactions", headers=admin).json()["interactions"]
    assert {i["collection"] for i in everything_logged} >= {"a", "b"}
    # Metrics count every collection: a key limited to some may not read them.
    lead_a = {"Authorization": f"Bearer {tenants.admin_a}"}
    assert client.get("/metrics", headers=lead_a).status_code == 403
    assert client.get("/metrics", headers=admin).status_code == 200
    # So does a backup.
    assert client.post("/admin/backup", headers=lead_a).status_code == 403
    backup = client.post("/admin/backup", headers=admin)
    assert backup.status_code == 200 and backup.content[:2] == b"\x1f\x8b"  # gzip
    hits = client.post("/search", json={"query": "vault code", "k": 10}, headers=team_a).json()
    assert hits["results"] and {h["collection"] for h in hits["results"]} == {"a"}
    answer = client.post("/query", json={"question": "What is the vault code?"}, headers=team_a)
    assert answer.status_code == 200 and "4471" not in answer.text
    # The same questions with an unlimited key find B's document, which is still there.
    everything = client.post("/search", json={"query": "vault code"}, headers=admin).json()
    assert "4471" in everything["results"][0]["text"]
    assert client.get(f"/documents/{tenants.document['b']}", headers=admin).status_code == 200
    # Team A's keys work on their own collection, writes included.
    own = _call(tenants, ("delete", "/documents/{document_id}"), "a", tenants.writer_a)
    assert own.status_code == 204
    lead = {"Authorization": f"Bearer {tenants.admin_a}"}
    assert client.post("/collections", json={"name": "a"}, headers=lead).status_code == 409
    assert client.delete("/collections/a", headers=lead).status_code == 204
    assert client.get("/collections", headers=admin).json()["collections"] == [
        {"name": "b", "documents": 1, "chunks": 1}
    ]


def lead_a_key(tenants: Tenants) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenants.admin_a}"}


@pytest.mark.slow
def test_without_keys_other_sites_and_foreign_hosts_are_refused(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            upload = {"files": [("files", ("note.txt", b"The ferry leaves at seven."))]}
            forged = client.post("/documents", headers={"Origin": "http://evil.example"}, **upload)
            assert forged.status_code == 403 and "cross-site" in forged.json()["detail"]
            rebound = client.get("/documents", headers={"Host": "evil.example"})
            assert rebound.status_code == 403 and "Host" in rebound.json()["detail"]
            assert (
                client.delete("/documents/1", headers={"Host": "evil.example"}).status_code == 403
            )
            assert server.ready()["jobs"] == {}  # nothing was stored
            own = client.post("/documents?wait=true", headers={"Origin": server.url}, **upload)
            assert own.status_code == 200
            assert client.get("/documents").json()["documents"][0]["source_name"] == "note.txt"
    finally:
        server.stop()


@pytest.mark.slow
def test_keys_commands_and_serving_beyond_loopback(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    refused = run_ragsvc("--data-dir", data, "serve", "--host", "0.0.0.0", timeout=60)
    assert refused.returncode == 2 and "without API keys" in refused.stderr

    created = run_ragsvc("--data-dir", data, "keys", "create", "--name", "ci", "--scope", "read",
                         "--collection", "docs")  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    assert key.startswith("rsk_")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("keys.sqlite3*"))
    assert key.split("_", 2)[2].encode() not in stored  # only its hash is kept
    listed = run_ragsvc("--data-dir", data, "keys", "list")
    assert "ci" in listed.stdout and "docs" in listed.stdout and key not in listed.stdout
    key_id = key.split("_")[1]
    assert run_ragsvc("--data-dir", data, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in run_ragsvc("--data-dir", data, "keys", "list").stdout
    unknown = run_ragsvc("--data-dir", data, "keys", "revoke", "nosuchkey")
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr
    bad = run_ragsvc("--data-dir", data, "keys", "create", "--name", " ", "--scope", "read")
    assert bad.returncode == 2
    with sqlite3.connect(tmp_path / "data" / "keys.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 1


@pytest.mark.slow
def test_rate_limits_quotas_and_the_audit_log(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    keys = KeyStore.open(settings.data_path)
    limited = keys.create("script", "read", rate_limit=3)
    writer = keys.create("uploader", "write", upload_quota=100)
    writer_id = writer.split("_")[1]
    keys.close()
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        answers = [
            client.get("/templates", headers={"X-API-Key": limited}).status_code for _ in range(4)
        ]
        assert answers[:3] == [200, 200, 200] and answers[3] == 429
        refused = client.get("/templates", headers={"X-API-Key": limited})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "requests per second" in refused.json()["detail"]

        as_writer = {"Authorization": f"Bearer {writer}"}
        first = client.post(
            "/documents?wait=true", files=[("files", ("a.txt", b"x" * 60))], headers=as_writer
        )
        assert first.status_code == 200
        over = client.post("/documents", files=[("files", ("b.txt", b"y" * 60))], headers=as_writer)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert "bytes a day" in over.json()["detail"]
        listed = client.get("/documents", headers=as_writer).json()["documents"]
        assert [d["source_name"] for d in listed] == ["a.txt"]  # the refused one stored nothing
        document_id = listed[0]["id"]
        assert client.delete(f"/documents/{document_id}", headers=as_writer).status_code == 204
        assert client.delete("/documents/999", headers=as_writer).status_code == 404

    data = str(tmp_path / "data")
    assert run_ragsvc("--data-dir", data, "keys", "revoke", writer_id).returncode == 0
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        late = client.post("/documents", files=[("files", ("c.txt", b"z" * 60))], headers=as_writer)
        assert late.status_code == 401
    tail = run_ragsvc("--data-dir", data, "audit", "tail", "--json")
    entries = [json.loads(line) for line in tail.stdout.splitlines()]
    by_action = [(e["action"], e["actor"], e["outcome"][:3]) for e in entries]
    assert ("upload", writer_id, "ok") in by_action
    assert ("upload", writer_id, "429") in by_action
    assert ("delete", writer_id, "ok") in by_action
    assert ("delete", writer_id, "404") in by_action
    assert ("key.revoke", "cli", "ok") in by_action
    # A revoked key's refused write is audited under its id, not as anonymous.
    assert ("upload", f"{writer_id} (revoked)", "401") in by_action
    revoke = next(e for e in entries if e["action"] == "key.revoke")
    assert writer_id in revoke["target"] and revoke["client"].startswith("cli:")
    upload = next(e for e in entries if e["action"] == "upload" and e["outcome"] == "ok")
    assert upload["target"].startswith("jobs ") and "in collection default" in upload["target"]
    assert upload["client"] and upload["at"]


def test_a_tenant_keys_ready_counts_its_own_and_does_not_move_with_another_tenant(
    tenants: Tenants,
) -> None:
    client = tenants.client
    team_a = {"Authorization": f"Bearer {tenants.writer_a}"}  # team a's key watches
    admin = {"Authorization": f"Bearer {tenants.admin}"}
    before = client.get("/ready", headers=team_a).json()
    assert before["documents"] == 1 and before["jobs"] == {"ready": 1}
    assert before["change_seq"] == 0 and before["server_pid"] == 0
    assert before["worker"]["pid"] is None
    whole = client.get("/ready", headers=admin).json()
    assert whole["documents"] == 2 and whole["change_seq"] > 0 and whole["server_pid"] > 0

    # Another tenant uploads (collection b, with the admin key).
    response = client.post(
        "/documents?wait=true",
        files=[("files", ("more-b.txt", b"Another secret note of team b, filed today."))],
        data={"collection": "b"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert client.get("/ready", headers=team_a).json() == before
    assert client.get("/ready", headers=admin).json()["documents"] == 3
    # A key over every collection but without admin scope sees every collection's counts,
    # but still not the change-log position or process ids.
    reader = client.get("/ready", headers={"Authorization": f"Bearer {tenants.reader}"}).json()
    assert reader["documents"] == 3 and reader["change_seq"] == 0


def test_refused_uploads_say_why_and_are_audited_under_the_key(
    tmp_path: Path, embedder: Embedder
) -> None:
    from ragsvc.security.audit import AuditLog

    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    keys = KeyStore.open(settings.data_path)
    writer = keys.create("uploader", "write")
    keys.close()
    writer_id = writer.split("_")[1]
    as_writer = {"Authorization": f"Bearer {writer}"}
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        long_name = "n" * 10_000 + ".txt"
        named = client.post(
            "/documents", files=[("files", (long_name, b"a short note"))], headers=as_writer
        )
        assert named.status_code == 413, named.text
        assert "a file name that long" in named.json()["detail"]
        half = client.post(
            "/documents",
            files=[("files", ("note.txt", b"a short note"))],
            data={"metadata": '{"title": "\\ud800"}'},
            headers=as_writer,
        )
        assert half.status_code == 400, half.text
        assert "half a UTF-16 surrogate pair (\\ud800)" in half.json()["detail"]
    audit = AuditLog.open(settings.data_path)
    try:
        entries = [(e.actor, e.action, e.outcome[:3]) for e in audit.tail(10)]
    finally:
        audit.close()
    assert (writer_id, "upload", "413") in entries
    assert (writer_id, "upload", "400") in entries
    assert len(entries) == 2  # each refusal once
