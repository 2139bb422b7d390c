"""Keeping the knowledge: an online backup taken while uploads and queries run, restored into a
fresh directory; damaged archives refused with nothing written; the backup over HTTP."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexes import Catalog, snapshot
from ragsvc.cli.main import main
from tests.support.data import dataset, write_corpus
from tests.support.processes import Server, run_ragsvc, wait_jobs


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _scifact(folder: Path, documents: int, queries: int) -> list[str]:
    """The first `documents` SciFact abstracts as text files; the first `queries` questions."""
    folder.mkdir(parents=True)
    lines = dataset("scifact", "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines[:documents]:
        row = json.loads(line)
        (folder / f"{row['_id']}.txt").write_text(
            f"{row['title']}\n\n{row['text']}", encoding="utf-8"
        )
    questions = dataset("scifact", "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in questions[:queries]]


def _top10(client: httpx.Client, queries: list[str]) -> list[list[int]]:
    found = []
    for text in queries:
        response = client.post(
            "/search", json={"query": text, "k": 10, "collection": "base", "mode": "dense"}
        )
        assert response.status_code == 200, response.text
        found.append([hit["chunk_id"] for hit in response.json()["results"]])
    return found


@pytest.mark.slow
def test_backup_during_uploads_and_queries_restores_every_acknowledged_document(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    queries = _scifact(tmp_path / "base", 300, 50)
    ingested = run_ragsvc(
        "--data-dir", str(source), "ingest", str(tmp_path / "base"), "--collection", "base"
    )
    assert ingested.returncode == 0, ingested.stderr
    stream = write_corpus(tmp_path / "stream", 400, seed=7)
    server = Server(source, tmp_path / "source.log").start()
    acknowledged: list[tuple[float, str]] = []
    searches: list[int] = []
    stop = threading.Event()

    def upload() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for path in stream:
                if stop.is_set():
                    return
                response = client.post(
                    "/documents",
                    data={"collection": "incoming"},
                    files=[("files", (path.name, path.read_bytes(), "text/plain"))],
                )
                assert response.status_code == 202, response.text
                acknowledged.append((time.monotonic(), response.json()["jobs"][0]["id"]))

    def query() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                for text in queries[:10]:
                    response = client.post("/search", json={"query": text, "k": 10})
                    searches.append(response.status_code)

    threads = [threading.Thread(target=upload), threading.Thread(target=query)]
    for thread in threads:
        thread.start()
    try:
        while len(acknowledged) < 40:
            time.sleep(0.05)
        started = time.monotonic()
        taken = run_ragsvc("--data-dir", str(source), "backup", "--out", str(tmp_path / "b.tgz"))
        ended = time.monotonic()
        assert taken.returncode == 0, taken.stderr
        after_backup = len(acknowledged)
        time.sleep(1.0)  # uploads carry on after the backup
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            wait_jobs(client, [job for _, job in acknowledged])
            expected = _top10(client, queries)
    finally:
        server.stop()
    before = [job for at, job in acknowledged if at < started]
    print(
        f"backup in {ended - started:.1f} s with {len(before)} uploads acknowledged before it, "
        f"{after_backup} by its end, {len(acknowledged)} in all; {len(searches)} searches"
    )
    assert set(searches) == {200}
    assert len(acknowledged) > after_backup, "no upload ran after the backup"

    restored = tmp_path / "restored"
    back = run_ragsvc("restore", str(tmp_path / "b.tgz"), "--data-dir", str(restored))
    assert back.returncode == 0, back.stderr
    assert "index snapshot restored" in back.stdout, back.stdout
    built = snapshot.read_manifest(restored / "index")
    server = Server(restored, tmp_path / "restored.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            jobs = wait_jobs(client, before)
            assert all(j["state"] == "ready" for j in jobs), jobs
            names = {
                d["source_name"]
                for d in client.get(
                    "/documents", params={"collection": "incoming", "limit": 1000}
                ).json()["documents"]
            }
            assert {Path(stream[i]).name for i in range(len(before))} <= names
            assert _top10(client, queries) == expected
    finally:
        server.stop()
    opened = snapshot.read_manifest(restored / "index")
    assert built is not None and opened is not None and opened.build_id == built.build_id
    stats = json.loads(run_ragsvc("--data-dir", str(restored), "stats", "--json").stdout)
    assert stats["chunks"] == stats["vectors_in_memory"], stats


@pytest.fixture
def archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data_dir = tmp_path / "data"
    write_corpus(tmp_path / "seed", 3)
    code, _, err = _run(
        capsys, "--data-dir", str(data_dir), "ingest", str(tmp_path / "seed"), "--no-progress"
    )
    assert code == 0, err
    code, _, err = _run(
        capsys, "--data-dir", str(data_dir), "backup", "--out", str(tmp_path / "a.tgz")
    )
    assert code == 0, err
    return tmp_path / "a.tgz"


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(info, tar.extractfile(info).read()) for info in tar]  # type: ignore[union-attr]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body))
    path.write_bytes(gzip.compress(buffer.getvalue()))


def _flip_in_member(archive: Path, target: Path) -> str:
    """A copy with one byte of the store flipped (the gzip stream rewritten around it, so the
    damage is in the member, not only in the compression)."""
    members = _members(archive)
    for number, (info, body) in enumerate(members):
        if info.name == "ragsvc.sqlite3":
            flipped = bytearray(body)
            flipped[len(body) // 2] ^= 0x01
            members[number] = (info, bytes(flipped))
    _write(target, members)
    return "ragsvc.sqlite3"


@pytest.mark.parametrize(
    "damage", ["flipped byte", "flipped compressed byte", "truncated", "added member"]
)
def test_damaged_archive_is_refused_naming_the_member_with_nothing_written(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    bad = tmp_path / "bad.tgz"
    raw = archive.read_bytes()
    named: str | None
    if damage == "flipped byte":
        named = _flip_in_member(archive, bad)
    elif damage == "flipped compressed byte":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0x10
        bad.write_bytes(bytes(flipped))
        named = None  # whichever member the compressed stream broke in
    elif damage == "truncated":
        bad.write_bytes(raw[: len(raw) * 2 // 3])
        named = None
    else:
        members = _members(archive)
        extra = tarfile.TarInfo("index/extra.sh")
        extra.size = 10
        members.append((extra, b"echo hi!\n\n"))
        _write(bad, members)
        named = "index/extra.sh"
    target = tmp_path / "target"
    code, out, err = _run(capsys, "restore", str(bad), "--data-dir", str(target))
    assert code == 2, (out, err)
    listed = {info.name for info, _ in _members(archive)}
    assert "member '" in err, err
    quoted = err.split("member '", 1)[1].split("'", 1)[0]
    assert quoted == named if named else quoted in listed, err
    assert not target.exists(), "a refused restore wrote something"


def test_restore_refuses_a_directory_in_use_or_not_empty(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, "restore", str(archive), "--data-dir", str(target))
    assert code == 2 and "not empty" in err and "--force" in err
    code, out, err = _run(capsys, "restore", str(archive), "--data-dir", str(target), "--force")
    assert code == 0, err
    assert (target / "notes.txt").read_text() == "mine"
    code, out, _ = _run(capsys, "--data-dir", str(target), "search", "bees waggle dance", "-k", "1")
    assert code == 0 and "waggle" in out


@pytest.mark.slow
def test_backup_over_http_needs_an_admin_key_and_restores(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_corpus(tmp_path / "seed", 5)
    assert run_ragsvc("--data-dir", str(data_dir), "ingest", str(tmp_path / "seed")).returncode == 0
    admin, writer = (
        run_ragsvc(
            "--data-dir", str(data_dir), "keys", "create", "--name", scope, "--scope", scope
        ).stdout.split()[-1]
        for scope in ("admin", "write")
    )
    server = Server(data_dir, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            refused = client.post("/admin/backup", headers={"Authorization": f"Bearer {writer}"})
            assert refused.status_code == 403, refused.text
            response = client.post("/admin/backup", headers={"Authorization": f"Bearer {admin}"})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/gzip"
            (tmp_path / "http.tgz").write_bytes(response.content)
    finally:
        server.stop()
    assert not any((data_dir / ".backups").iterdir()), "the staged copy was left behind"
    back = run_ragsvc("restore", str(tmp_path / "http.tgz"), "--data-dir", str(tmp_path / "r"))
    assert back.returncode == 0, back.stderr
    assert "restored 5 documents" in back.stdout
    stats: dict[str, Any] = json.loads(
        run_ragsvc("--data-dir", str(tmp_path / "r"), "stats", "--json").stdout
    )
    assert stats["documents"] == 5 and stats["chunks"] == stats["vectors_in_index_file"]


HASHING = "tests.support.hashing_embedder:HashingEmbedder"


def _hits(data_dir: Path, embedder: Any, queries: list[str]) -> list[list[tuple[str, int, float]]]:
    from indexes import Catalog

    with Catalog.open(data_dir, readonly=True) as catalog:
        found = []
        for text in queries:
            hits = catalog.retrieve(
                k=5, vector=embedder.embed_query(text), text=text, mode="hybrid"
            )
            found.append(
                [
                    (catalog.document(h.document_id).source_name, h.ordinal, round(h.score, 5))
                    for h in hits
                ]
            )
    return found


def test_collection_moves_to_another_installation_without_embedding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    write_corpus(tmp_path / "seed", 12)
    code, _, err = _run(
        capsys,
        "--data-dir",
        str(source),
        "ingest",
        str(tmp_path / "seed"),
        "--collection",
        "notes",
        "--no-progress",
    )
    assert code == 0, err
    archive = tmp_path / "notes.tgz"
    code, out, err = _run(
        capsys, "--data-dir", str(source), "export", "collection", "notes", "--out", str(archive)
    )
    assert code == 0, err
    assert "12 documents" in out
    code, out, err = _run(capsys, "--data-dir", str(target), "import", str(archive))
    assert code == 0, err
    assert "imported 12 documents" in out and "; 0 texts embedded" in out, out
    queries = ["how do bees find flowers", "magma and the crust", "what the moon does to tides"]
    assert _hits(target, embedder, queries) == _hits(source, embedder, queries)
    with Catalog.open(target, readonly=True) as moved, Catalog.open(source, readonly=True) as kept:
        documents = {d.source_name: d for d in moved.all_documents()}
        for original in kept.all_documents():
            copy = documents[original.source_name]
            assert (copy.sha256, copy.chunk_count, copy.metadata, copy.page_count) == (
                original.sha256,
                original.chunk_count,
                original.metadata,
                original.page_count,
            )
            assert [
                (c.text, c.char_start, c.char_end, c.location)
                for c in moved.document_chunks(copy.id)
            ] == [
                (c.text, c.char_start, c.char_end, c.location)
                for c in kept.document_chunks(original.id)
            ]
        assert moved.chunk_sentences(list(moved.chunk_documents())), "sentence vectors came too"

    # Again under the same name: refused, saying how to choose another.
    code, _, err = _run(capsys, "--data-dir", str(target), "import", str(archive))
    assert code == 2 and "--collection NEW" in err
    code, out, err = _run(
        capsys, "--data-dir", str(target), "import", str(archive), "--collection", "copy"
    )
    assert code == 0 and "into collection copy; 0 texts embedded" in out, (out, err)


def test_collection_of_another_model_is_refused_unless_reembedded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed, real = tmp_path / "hashed", tmp_path / "real"
    write_corpus(tmp_path / "seed", 4)
    monkeypatch.setenv("RAGSVC_EMBEDDER", HASHING)
    code, _, err = _run(
        capsys, "--data-dir", str(hashed), "ingest", str(tmp_path / "seed"), "--no-progress"
    )
    assert code == 0, err
    archive = tmp_path / "hashed.tgz"
    code, _, err = _run(
        capsys, "--data-dir", str(hashed), "export", "collection", "default", "--out", str(archive)
    )
    assert code == 0, err
    monkeypatch.delenv("RAGSVC_EMBEDDER")
    write_corpus(tmp_path / "other", 2, seed=3)
    code, _, err = _run(
        capsys,
        "--data-dir",
        str(real),
        "ingest",
        str(tmp_path / "other"),
        "--collection",
        "mine",
        "--no-progress",
    )
    assert code == 0, err
    code, _, err = _run(capsys, "--data-dir", str(real), "import", str(archive))
    assert code == 2, err
    assert "test/hashing-64" in err and "--reembed" in err, err
    with Catalog.open(real, readonly=True) as catalog:
        assert [c for c, _, _ in catalog.counts()] == ["mine"]
    code, out, err = _run(capsys, "--data-dir", str(real), "import", str(archive), "--reembed")
    assert code == 0, err
    assert "imported 4 documents" in out and "texts embedded with sentence-transformers" in out
    assert "; 0 texts" not in out


def test_collection_archive_with_bad_content_but_good_checksums_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive re-made by hand, checksums and all: its content is checked too, before
    anything is stored (with two documents a transaction, the good ones would otherwise be)."""
    import msgspec

    from ragsvc.archive import collection
    from ragsvc.archive.format import extract, staged_members, verify, write_archive_file

    monkeypatch.setattr(collection, "COMMIT_DOCUMENTS", 2)
    source = tmp_path / "source"
    write_corpus(tmp_path / "seed", 3)
    assert _run(capsys, "--data-dir", str(source), "ingest", str(tmp_path / "seed"))[0] == 0
    archive = tmp_path / "good.tgz"
    code, _, err = _run(
        capsys, "--data-dir", str(source), "export", "collection", "default", "--out", str(archive)
    )
    assert code == 0, err
    for damage, expected in (
        ("documents.jsonl", "documents.jsonl line 4"),
        ("embeddings/vectors.npy", "embeddings/vectors.npy in the archive is unreadable"),
    ):
        unpacked = tmp_path / f"unpacked-{damage.replace('/', '-')}"
        manifest = verify(archive)
        extract(archive, manifest, unpacked)
        target = unpacked / damage
        lines = target.read_bytes().splitlines(keepends=True)
        bad = b"".join(lines) + b'{"source_name": 7}\n'  # after three good documents
        target.write_bytes(bad if damage.endswith("l") else b"x")
        remade = tmp_path / f"remade-{damage.replace('/', '-')}.tgz"
        write_archive_file(
            unpacked, msgspec.structs.replace(manifest, members=staged_members(unpacked)), remade
        )
        other = tmp_path / f"other-{damage.replace('/', '-')}"
        code, _, err = _run(capsys, "--data-dir", str(other), "import", str(remade))
        assert code == 2 and expected in err, err
        with Catalog.open(other, readonly=True) as catalog:
            assert catalog.counts() == [], "a refused import stored something"
