"""Ingestion on Ray (`ragsvc ingest --engine ray`, `ingest_engine = "ray"`) against a local
Ray cluster the tests start with `ray start`: the same documents, chunks and embeddings as the
local engine, nothing lost or stored twice when the ingest is SIGKILLed, and the server's
worker handing its upload jobs to Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.data import dataset
from tests.support.processes import Server, run_ragsvc, wait_jobs

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ragsvc[ray]')")
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A one-node Ray cluster on loopback, with more logical CPUs than the actors take so
    that Ray Data's own tasks can run beside them."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # socket paths must stay short
    port = _free_port()
    # Token authentication turns itself on once a token file exists (~/.ray/auth_token, made
    # by any earlier local Ray); a loopback test cluster and its drivers go without it.
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [
            str(RAY),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=4",
            "--include-dashboard=false",
            "--object-store-memory=300000000",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous


def _records(count: int) -> list[str]:
    lines = dataset("scifact", "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return lines[:count]


def _store(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "ragsvc.sqlite3")


def _documents(data_dir: Path) -> dict[str, tuple[str, int]]:
    with _store(data_dir) as conn:
        rows = conn.execute(
            "SELECT d.source_name, d.sha256, COUNT(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id"
        ).fetchall()
    return {str(name): (str(sha), int(chunks)) for name, sha, chunks in rows}


def _chunks(data_dir: Path) -> dict[tuple[str, int], tuple[str, int, int, int | None, bytes]]:
    with _store(data_dir) as conn:
        rows = conn.execute(
            "SELECT d.source_name, c.ordinal, c.text, c.char_start, c.char_end, c.page_start, "
            "e.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN embeddings e ON e.text_hash = c.text_hash"
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5], r[6]) for r in rows}


def _sentence_vectors(data_dir: Path) -> int:
    with _store(data_dir) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM embeddings WHERE sentence_vectors IS NOT NULL"
            ).fetchone()[0]
        )


def test_ray_ingest_stores_what_the_local_engine_stores(tmp_path: Path, ray_address: str) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_records(40)) + "\n", encoding="utf-8")
    files = tmp_path / "files"
    files.mkdir()
    pdf = dataset("pdf_samples", "pdfminer.six", "samples", "nonfree", "naacl06-shinyama.pdf")
    shutil.copy(pdf, files / "paper.pdf")
    (files / "notes.txt").write_text("Glaciers carve valleys as they slide.\n", encoding="utf-8")
    (files / "broken.pdf").write_bytes(b"%PDF-1.7\nnot a pdf at all")

    results = {}
    for engine in ("local", "ray"):
        data = tmp_path / engine
        args = ["--data-dir", str(data), "ingest", "--no-progress", "--engine", engine]
        if engine == "ray":
            args += ["--ray-address", ray_address]
        jsonl = run_ragsvc(*args, "--jsonl", str(corpus), timeout=600)
        assert jsonl.returncode == 0, jsonl.stderr[-3000:]
        assert "40 added" in jsonl.stdout
        loose = run_ragsvc(*args, str(files), timeout=600)
        assert loose.returncode == 1, loose.stderr[-3000:]  # the broken PDF fails, alone
        assert "2 added" in loose.stdout and "1 failed" in loose.stdout
        assert "broken.pdf" in loose.stderr
        results[engine] = data

    local, distributed = results["local"], results["ray"]
    assert _documents(distributed) == _documents(local)
    assert len(_documents(local)) == 42
    local_chunks, ray_chunks = _chunks(local), _chunks(distributed)
    assert local_chunks.keys() == ray_chunks.keys()
    cosines = []
    for key, (text, start, end, page, vector) in local_chunks.items():
        other = ray_chunks[key]
        assert other[:4] == (text, start, end, page)
        a, b = np.frombuffer(vector, np.float32), np.frombuffer(other[4], np.float32)
        cosines.append(float(a @ b))
    assert min(cosines) >= 0.9999
    assert _sentence_vectors(distributed) == _sentence_vectors(local) > 0

    for data in (local, distributed):
        again = run_ragsvc(
            "--data-dir", str(data), "ingest", "--no-progress", "--engine", "ray",
            "--ray-address", ray_address, "--jsonl", str(corpus), timeout=600,
        )  # fmt: skip
        assert again.returncode == 0 and "40 unchanged" in again.stdout, again.stderr[-2000:]
    searches = []
    for data in (local, distributed):
        found = run_ragsvc("--data-dir", str(data), "search", "named entity tagger", "--json")
        searches.append(json.loads(found.stdout))
    assert [h["source_name"] for h in searches[0]] == [h["source_name"] for h in searches[1]]


def test_a_sigkilled_ray_ingest_loses_nothing_committed_and_stores_nothing_twice(
    tmp_path: Path, ray_address: str
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_records(400)) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    env = {
        **os.environ,
        "RAGSVC_RAY_BATCH_DOCUMENTS": "8",
        "RAGSVC_RAY_COMMIT_CHUNKS": "16",
    }
    command = [
        sys.executable, "-m", "ragsvc", "--data-dir", str(data), "ingest", "--no-progress",
        "--engine", "ray", "--ray-address", ray_address, "--jsonl", str(corpus),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    committed: dict[str, tuple[str, int]] = {}
    while time.monotonic() < deadline and process.poll() is None:
        if (data / "ragsvc.sqlite3").exists():
            try:
                committed = _documents(data)
            except sqlite3.OperationalError:
                committed = {}  # the schema is still being made
            if len(committed) >= 40:
                break
        time.sleep(0.2)
    assert process.poll() is None, "the ingest finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    acknowledged = _documents(data)
    assert 40 <= len(acknowledged) < 400
    assert all(chunks > 0 for _, chunks in acknowledged.values())  # whole documents only

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(acknowledged)} unchanged" in again.stdout
    assert f"{400 - len(acknowledged)} added" in again.stdout
    final = _documents(data)
    assert len(final) == 400
    assert {name: final[name] for name in acknowledged} == acknowledged
    with _store(data) as conn:
        names = [r[0] for r in conn.execute("SELECT source_name FROM documents")]
        hashes = [r[0] for r in conn.execute("SELECT sha256 FROM documents")]
        orphans = conn.execute(
            "SELECT COUNT(*) FROM chunks c LEFT JOIN embeddings e ON e.text_hash = c.text_hash "
            "WHERE e.vector IS NULL"
        ).fetchone()[0]
    assert len(names) == len(set(names)) == len(set(hashes)) == 400
    assert orphans == 0


def test_the_servers_worker_hands_upload_jobs_to_ray(tmp_path: Path, ray_address: str) -> None:
    env = {"RAGSVC_INGEST_ENGINE": "ray", "RAGSVC_RAY_ADDRESS": ray_address}
    server = Server(tmp_path / "data", tmp_path / "server.log", env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            notes = [f"Note {i}: the quokka colony counted {i} adults." for i in range(5)]
            files = [
                ("files", (f"note-{i}.txt", note.encode(), "text/plain"))
                for i, note in enumerate(notes)
            ]
            accepted = client.post("/documents", files=files)
            assert accepted.status_code == 202, accepted.text
            jobs = wait_jobs(client, [j["id"] for j in accepted.json()["jobs"]], timeout=300)
            assert [j["state"] for j in jobs] == ["ready"] * 5
            assert all(j["chunks_total"] == 1 for j in jobs)
            deadline = time.monotonic() + 30
            while True:
                hits = client.post(
                    "/search", json={"query": "quokka colony adults", "k": 5, "mode": "lexical"}
                ).json()["results"]
                if len(hits) == 5 or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
        assert sorted(h["source_name"] for h in hits) == [f"note-{i}.txt" for i in range(5)]
    finally:
        server.stop()
