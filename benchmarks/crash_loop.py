"""Kill loop: start the server, upload, SIGKILL the server or its worker at a random moment,
restart; after every round, nothing acknowledged may be lost or stored twice.

    python benchmarks/crash_loop.py [--rounds 50] [--batch 20] [--seed 0]

One data folder for all rounds. In each round a client uploads `--batch` distinct one-page
documents, one request each, remembering which were acknowledged (202); after a random delay
(0.2 to 4 s) either the server (and so its worker) or only the worker is killed with SIGKILL,
then the server is started again (or, after a worker kill, goes on with a restarted worker).
At the end the server runs until every job has ended, and the store is checked:

- every acknowledged upload is stored exactly once (by its file name), none twice;
- chunks in SQLite = vectors in the served index = BM25 entries = the index's chunk owners;
- `PRAGMA integrity_check` is ok on the store and the job queue.

`check_store` and `crash_rounds` are also what the test suite runs, with a few rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragsvc.api.server_process import ServerProcess  # noqa: E402


@dataclass
class Report:
    rounds: int = 0
    server_kills: int = 0
    worker_kills: int = 0
    acknowledged: set[str] = field(default_factory=set)
    attempted: int = 0
    seconds: float = 0.0


def _document(name: str) -> bytes:
    return (
        f"Field log {name}. The survey boat {name} left the harbour at dawn, measured the "
        f"depth at the reef marker and came back before noon with samples numbered {name}."
    ).encode()


def _upload(url: str, names: list[str], acknowledged: set[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for name in names:
            if stop.is_set():
                return
            try:
                response = client.post(
                    "/documents", files=[("files", (f"{name}.txt", _document(name)))]
                )
            except httpx.HTTPError:
                return  # the server is gone: this one was not acknowledged
            if response.status_code == 202:
                acknowledged.add(f"{name}.txt")


def crash_rounds(
    data_dir: Path, log: Path, rounds: int, batch: int, seed: int, env: dict[str, str] | None = None
) -> Report:
    """Run the kill loop; returns what was acknowledged (check it with `check_store`)."""
    rng = random.Random(seed)
    report = Report()
    started = time.perf_counter()
    server = ServerProcess(data_dir, log, env, cwd=ROOT).start()
    try:
        for number in range(rounds):
            names = [f"r{number:03d}-{i:03d}" for i in range(batch)]
            report.attempted += len(names)
            stop = threading.Event()
            client = threading.Thread(
                target=_upload, args=(server.url, names, report.acknowledged, stop)
            )
            client.start()
            time.sleep(rng.uniform(0.2, 4.0))
            if rng.random() < 0.5:
                server.kill()  # the worker dies with it (it watches its parent)
                report.server_kills += 1
                stop.set()
                client.join()
                server = ServerProcess(data_dir, log, env, cwd=ROOT).start()
            else:
                worker = server.ready()["worker"]["pid"]
                if worker:
                    os.kill(worker, signal.SIGKILL)
                    report.worker_kills += 1
                client.join()
            report.rounds += 1
    finally:
        server.stop()
    report.seconds = time.perf_counter() - started
    return report


def check_store(
    data_dir: Path, log: Path, report: Report, env: dict[str, str] | None = None
) -> dict[str, int]:
    """Let every job end, then check the guarantees; raises AssertionError when one fails."""
    server = ServerProcess(data_dir, log, env, cwd=ROOT).start()
    try:
        deadline = time.monotonic() + 900
        while True:
            jobs = server.ready()["jobs"]
            if not set(jobs) - {"ready", "failed"}:
                break
            assert time.monotonic() < deadline, f"jobs did not finish: {jobs}"
            time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.post("/documents?wait=true", files=[("files", ("probe.txt", b"A probe."))])
            ready = client.get("/ready").json()
    finally:
        server.stop()
    store = sqlite3.connect(data_dir / "ragsvc.sqlite3")
    try:
        names = [r[0] for r in store.execute("SELECT source_name FROM documents")]
        chunks = store.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        integrity = store.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        store.close()
    queue = sqlite3.connect(data_dir / "jobs.sqlite3")
    try:
        queue_integrity = queue.execute("PRAGMA integrity_check").fetchone()[0]
        failed = queue.execute("SELECT COUNT(*) FROM jobs WHERE state = 'failed'").fetchone()[0]
    finally:
        queue.close()
    twice = {n for n in names if names.count(n) > 1}
    lost = report.acknowledged - set(names)
    assert not twice, f"stored twice: {sorted(twice)[:10]}"
    assert not lost, f"acknowledged but not stored: {sorted(lost)[:10]}"
    assert integrity == "ok" and queue_integrity == "ok", (integrity, queue_integrity)
    assert ready["chunks"] == chunks == ready["vectors"], (ready, chunks)
    assert ready["lexical_entries"] == chunks, (ready, chunks)
    return {
        "documents": len(names),
        "chunks": chunks,
        "acknowledged": len(report.acknowledged),
        "failed_jobs": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-loop-") as scratch:
        data, log = Path(scratch) / "data", Path(scratch) / "server.log"
        report = crash_rounds(data, log, args.rounds, args.batch, args.seed)
        counts = check_store(data, log, report)
    print(
        f"{report.rounds} rounds in {report.seconds:.0f} s: {report.server_kills} server kills, "
        f"{report.worker_kills} worker kills; {report.attempted} uploads attempted, "
        f"{counts['acknowledged']} acknowledged"
    )
    print(
        f"stored: {counts['documents']} documents (the probe included), {counts['chunks']} "
        f"chunks = index vectors = BM25 entries; {counts['failed_jobs']} failed jobs; every "
        "acknowledged upload stored exactly once; integrity_check ok on the store and the queue"
    )


if __name__ == "__main__":
    main()
