"""A model change with a gate, while a real server answers and ingests: a weaker model is
refused by the gate and the old one keeps serving; a model that is not worse is re-embedded
beside the old one, survives a SIGKILL halfway without embedding anything twice, and the
server moves to it when the new index is complete, with every upload made meanwhile."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.data import ROOT, dataset
from tests.support.models import perturbed_model, small_beir
from tests.support.processes import Server, run_ragsvc, wait_jobs

pytestmark = pytest.mark.slow


def _stored_embeddings(data_dir: Path, model_id: str) -> int:
    with sqlite3.connect(data_dir / "ragsvc.sqlite3") as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (model_id,)
            ).fetchone()[0]
        )


def _distinct_texts(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "ragsvc.sqlite3") as conn:
        return int(conn.execute("SELECT COUNT(DISTINCT text_hash) FROM chunks").fetchone()[0])


class Traffic:
    """Searches and uploads against a server from two threads, until stopped."""

    def __init__(self, url: str, queries: list[str]) -> None:
        self.url = url
        self.queries = queries
        self.statuses: list[int] = []
        self.latencies: list[float] = []
        self.uploaded: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._search),
            threading.Thread(target=self._upload),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _search(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                for text in self.queries:
                    started = time.perf_counter()
                    response = client.post("/search", json={"query": text, "k": 10})
                    self.latencies.append(time.perf_counter() - started)
                    self.statuses.append(response.status_code)
                    self._stop.wait(0.05)  # about 15 searches a second: a busy service

    def _upload(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            number = 0
            while not self._stop.wait(1.0):
                number += 1
                phrase = f"zebrafish lighthouse protocol {number} quokka"
                body = f"Field note {number}. The {phrase} was observed at dawn.".encode()
                response = client.post(
                    "/documents", files=[("files", (f"note-{number}.txt", body, "text/plain"))]
                )
                assert response.status_code == 202, response.text
                self.uploaded.append((response.json()["jobs"][0]["id"], phrase))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_gated_model_change_while_serving(tmp_path: Path) -> None:
    gate_set = small_beir(tmp_path / "gate-set", queries=100, distractors=200)
    weak = perturbed_model(tmp_path / "weak", noise=0.5)
    same = perturbed_model(tmp_path / "same", noise=0.0)
    docs = tmp_path / "docs"
    docs.mkdir()
    with dataset("scifact", "corpus.jsonl").open(encoding="utf-8") as corpus:
        for number, line in enumerate(corpus):
            if number == 300:
                break
            row = json.loads(line)
            (docs / f"{row['_id']}.txt").write_text(f"{row['title']}\n\n{row['text']}")
    queries = [
        json.loads(line)["text"]
        for line in dataset("scifact", "queries.jsonl").read_text().splitlines()[:20]
    ]
    data = tmp_path / "data"
    assert run_ragsvc("--data-dir", str(data), "ingest", str(docs)).returncode == 0
    server = Server(data, tmp_path / "server.log").start()
    old_model = server.ready()["model"]
    try:
        with Traffic(server.url, queries) as traffic:
            # 1. A weaker model: the gate refuses it, the old model keeps serving.
            refused = run_ragsvc(
                "--data-dir",
                str(data),
                "rebuild",
                "--reembed",
                "--embedding-model",
                str(weak),
                "--gate",
                str(gate_set),
            )
            assert refused.returncode == 1, refused.stderr
            assert "gate refused" in refused.stdout and "worse: hybrid ndcg@10" in refused.stdout
            assert f"keeps serving {old_model}" in refused.stdout
            assert _stored_embeddings(data, str(weak)) == 0
            assert server.ready()["model"] == old_model

            # 2. A model no worse, killed halfway through its re-embed...
            command = [
                sys.executable,
                "-m",
                "ragsvc",
                "--data-dir",
                str(data),
                "rebuild",
                "--reembed",
                "--embedding-model",
                str(same),
                "--gate",
                str(gate_set),
            ]
            first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 300
            while _stored_embeddings(data, str(same)) < 200:
                assert first.poll() is None, "the re-embed ended before it was killed"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait()
            done = _stored_embeddings(data, str(same))
            assert server.ready()["model"] == old_model, "switched before the build was done"

            # ...resumes without embedding what was done, and the server follows it.
            second = run_ragsvc(*command[3:])
            assert second.returncode == 0, second.stderr
            assert "gate passed" in second.stdout
            embedded = int(second.stdout.split("re-embedded ")[1].split()[0])
            assert embedded > 0 and done + embedded <= _distinct_texts(data), (done, embedded)
            deadline = time.monotonic() + 120
            while server.ready()["model"] != str(same):
                assert time.monotonic() < deadline, "the server did not move to the new model"
                time.sleep(0.5)
            time.sleep(3)  # uploads go on after the switch
        with httpx.Client(base_url=server.url, timeout=60) as client:
            jobs = wait_jobs(client, [job for job, _ in traffic.uploaded])
            assert all(j["state"] == "ready" for j in jobs), jobs
            for _, phrase in traffic.uploaded:
                hits = client.post("/search", json={"query": phrase, "k": 3}).json()["results"]
                assert any(phrase in hit["text"] for hit in hits), phrase
            ready = server.ready()
    finally:
        server.stop()
    print(
        f"{len(traffic.statuses)} searches during the model change, p50 "
        f"{_percentile(traffic.latencies, 0.5) * 1000:.1f} ms, p95 "
        f"{_percentile(traffic.latencies, 0.95) * 1000:.1f} ms; {len(traffic.uploaded)} "
        f"uploads; {done} texts embedded before the kill, {embedded} after"
    )
    assert set(traffic.statuses) == {200}, sorted(set(traffic.statuses))
    log = (tmp_path / "server.log").read_text()
    assert "reloading with the store's model" in log, "the worker never met the switch"
    assert ready["model"] == str(same)
    stats = json.loads(run_ragsvc("--data-dir", str(data), "stats", "--json").stdout)
    assert stats["model_id"] == str(same) and stats["chunks"] == stats["vectors_in_memory"]
