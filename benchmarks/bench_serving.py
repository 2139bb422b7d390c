"""Serving speed: retrieval in process, then a real server at rest, under load, and while a
whole corpus is uploaded.

    python benchmarks/bench_serving.py CORPUS_DIR [--stages build,retrieval,server,load,ingest]
        [--clients 32] [--duration 30] [--upload-batch 100] [--search-interval 0.1]

    (stages: build, retrieval, server, load, profile, ingest; profile needs py-spy)

CORPUS_DIR is a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`; the train
split, when there is one, supplies warm-up and `/query` questions). Every run builds a fresh
store in a temporary folder with the defaults (the document embedder, bf16 where the CPU has
it), and prints one table per stage:

- retrieval: in process, one query at a time, k = 10, the split's queries after warm-up, the
  modes taking turns query by query, through the query embedder (`query_runtime`: OpenVINO
  where it loads) with no cache; beside it the no-framework baseline (sentence-transformers
  encode + `faiss.IndexFlatIP`) and SQLite FTS5 `bm25()` over the same chunks; and nDCG@10
  per mode (documents ranked by their best chunk).
- server: `ragsvc serve` in a child process, one client: `/search` on the split's queries,
  `/query` (extractive) on training questions, so no answer comes from a cache.
- load: one client, then `--clients` clients, for `--duration` seconds each on `/search`;
  every request text is distinct (a counter is appended), so the query cache never answers;
  with the server's CPU time per request (all its threads, from /proc) and the queries per
  forward pass of the query model (from /metrics). Then the query model's own CPU per query
  at batch 1 and at the batch size the clients reached, measured in this process with the
  server's embedder and nothing else running, and the server's CPU per request over it.
  Then the server's and the worker's resident memory.
- profile: the same two loads under py-spy (`cpu_profile.py`): CPU ms per request by stage
  (query model, BM25, FAISS, rows, serialisation, HTTP, ...).
- ingest: the whole corpus uploaded through `POST /documents` in requests of
  `--upload-batch` files to a fresh server, while one client searches every
  `--search-interval` seconds; after 1,000 files are queued, a one-page document is uploaded
  and searched for until found. Then the same upload to another fresh server with no
  searches, for the throughput ratio. Each upload starts once `/ready` says the server's
  worker takes jobs; the worker's cold start (loading its model) is printed on its own.

The load generator is `http_load.py` (asyncio, keep-alive), so the client costs the shared
cores little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_profile import Recording, per_request  # noqa: E402
from benchmarks.http_load import Connection, percentile, run_load  # noqa: E402
from benchmarks.report import table  # noqa: E402
from benchmarks.stores import Server, build  # noqa: E402
from indexes import Catalog, SearchFilter  # noqa: E402
from indexes.lexical import ENGLISH_STOPWORDS  # noqa: E402
from ingest import load_query_embedder  # noqa: E402
from ragsvc.evaluation.ranking import load_beir  # noqa: E402
from ragsvc.evaluation.ranking_metrics import ndcg_at_k  # noqa: E402
from ragsvc.retrieval.retriever import retrieve  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

STAGES = ("build", "retrieval", "server", "load", "profile", "ingest")
MODES = ("dense", "lexical", "hybrid")
PROBE = (
    "Field report. The quokka colony on the northern headland counted forty-one adults this "
    "spring; the rangers tagged each with a violet band."
)
PROBE_QUERY = "quokka colony violet band"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | None) -> tuple[float, float]:
    """(resident, peak resident) in MB of a process, from /proc."""
    if pid is None:
        return float("nan"), float("nan")
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(value.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


# -- stages ----------------------------------------------------------------------------------


def in_process(
    store: Path,
    settings: Settings,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    warmup: list[str],
) -> dict[str, Any]:
    import faiss

    query_embedder = load_query_embedder(settings.embedder_config)
    results: dict[str, Any] = {}
    with Catalog.open(store, readonly=True) as catalog:
        external = {
            int(r[0]): str(r[1])
            for r in catalog.store.reader().execute("SELECT id, external_id FROM documents")
        }
        texts = list(queries.values())
        for mode in MODES:
            for text in warmup:
                retrieve(catalog, query_embedder, settings, text, k=10, mode=mode)
        filters = SearchFilter(collection="beir")
        # The modes take turns query by query (in a rotating order), so that a slow spell of
        # the machine falls on all of them alike.
        timings: dict[str, list[float]] = {mode: [] for mode in MODES}
        for number, text in enumerate(texts):
            for turn in range(len(MODES)):
                mode = MODES[(number + turn) % len(MODES)]
                started = time.perf_counter()
                retrieve(catalog, query_embedder, settings, text, k=10, mode=mode, filters=filters)
                timings[mode].append(time.perf_counter() - started)
        rows = []
        for mode in MODES:
            latencies = timings[mode]
            ndcg = []
            for query_id, text in queries.items():
                hits = retrieve(catalog, query_embedder, settings, text, k=300, mode=mode).hits
                ranking: list[str] = []
                for hit in hits:
                    doc = external[hit.document_id]
                    if doc not in ranking:
                        ranking.append(doc)
                ndcg.append(ndcg_at_k(ranking, qrels[query_id], 10))
            results[mode] = {
                "p50_ms": percentile(latencies, 50) * 1000,
                "p95_ms": percentile(latencies, 95) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "ndcg@10": float(np.mean(ndcg)),
            }
            rows.append(
                [
                    f"ragsvc {mode}",
                    ms(percentile(latencies, 50)),
                    ms(percentile(latencies, 95)),
                    ms(percentile(latencies, 99)),
                    f"{np.mean(ndcg):.4f}",
                ]
            )
        # Baselines over the very same chunk vectors and texts.
        ids, vectors, chunk_texts = [], [], []
        for data in catalog.store.chunk_data(
            catalog.model_id, catalog.dimension, None, catalog.store.reader()
        ):
            ids.append(data.ids)
            vectors.append(data.vectors)
            chunk_texts.extend(data.texts)
    from sentence_transformers import SentenceTransformer

    from ingest.embed.sentence_transformer import resolve_model

    model = SentenceTransformer(resolve_model(settings.embedding_model)[0], device="cpu")
    flat = faiss.IndexFlatIP(vectors[0].shape[1])
    flat.add(np.concatenate(vectors))
    for text in warmup:
        flat.search(model.encode([text], normalize_embeddings=True), 10)
    latencies = []
    for text in texts:
        started = time.perf_counter()
        flat.search(model.encode([text], normalize_embeddings=True), 10)
        latencies.append(time.perf_counter() - started)
    results["baseline_st_faiss"] = {"p50_ms": percentile(latencies, 50) * 1000}
    rows.append(
        [
            "sentence-transformers + IndexFlatIP",
            ms(percentile(latencies, 50)),
            ms(percentile(latencies, 95)),
            ms(percentile(latencies, 99)),
            "",
        ]
    )
    fts = sqlite3.connect(":memory:")
    fts.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
    fts.executemany("INSERT INTO t(text) VALUES (?)", ((t,) for t in chunk_texts))
    import re

    def fts_query(text: str) -> str:
        words = [w for w in re.findall(r"\w+", text.lower()) if w not in ENGLISH_STOPWORDS]
        return " OR ".join(f'"{w}"' for w in dict.fromkeys(words)) or '""'

    latencies = []
    for text in texts:
        started = time.perf_counter()
        fts.execute(
            "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 10", (fts_query(text),)
        ).fetchall()
        latencies.append(time.perf_counter() - started)
    results["baseline_fts5"] = {"p50_ms": percentile(latencies, 50) * 1000}
    rows.append(
        [
            "SQLite FTS5 bm25() alone",
            ms(percentile(latencies, 50)),
            ms(percentile(latencies, 95)),
            ms(percentile(latencies, 99)),
            "",
        ]
    )
    print(f"in-process retrieval, one query at a time, k = 10, {len(texts)} queries")
    table(["system", "p50 ms", "p95 ms", "p99 ms", "nDCG@10"], rows)
    ratio = results["hybrid"]["p50_ms"] / results["baseline_st_faiss"]["p50_ms"]
    print(f"hybrid p50 / no-framework dense p50: {ratio:.2f}\n")
    return results


async def one_client(url: str, path: str, bodies: list[dict[str, Any]]) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    connection = Connection(host, int(port))
    latencies = []
    try:
        for body in bodies:
            started = time.perf_counter()
            status, payload = await connection.post_json(path, body)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{path}: {status} {payload[:300]!r}")
    finally:
        await connection.close()
    return latencies


def server_stage(server: Server, queries: list[str], questions: list[str]) -> dict[str, Any]:
    warmup = [{"query": q, "k": 10} for q in questions[:30]]
    asyncio.run(one_client(server.url, "/search", warmup))
    search = asyncio.run(
        one_client(server.url, "/search", [{"query": q, "k": 10} for q in queries])
    )
    answer_questions = questions[30:330]
    answers = asyncio.run(
        one_client(server.url, "/query", [{"question": q, "k": 5} for q in answer_questions])
    )
    print(
        f"real server, one client: /search on {len(queries)} queries (k = 10), /query "
        f"(extractive, k = 5) on {len(answer_questions)} other questions"
    )
    rows = [
        [
            name,
            str(len(values)),
            ms(percentile(values, 50)),
            ms(percentile(values, 95)),
            ms(percentile(values, 99)),
        ]
        for name, values in (("/search", search), ("/query", answers))
    ]
    table(["route", "requests", "p50 ms", "p95 ms", "p99 ms"], rows)
    return {
        "search_p50_ms": percentile(search, 50) * 1000,
        "search_p99_ms": percentile(search, 99) * 1000,
        "query_p50_ms": percentile(answers, 50) * 1000,
        "query_p95_ms": percentile(answers, 95) * 1000,
    }


def model_counters(url: str) -> tuple[float, float]:
    """The server's query-model forward passes and the queries they embedded, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = dict(
        line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    return (
        float(values.get("ragsvc_query_forward_passes_total", 0)),
        float(values.get("ragsvc_query_batched_total", 0)),
    )


def model_cpu(
    settings: Settings, queries: list[str], batches: list[int], seconds: float = 4.0
) -> dict[int, tuple[float, float]]:
    """The query model's own CPU seconds per query and wall seconds per pass at each batch
    size: the server's query embedder (same export, runtime and threads) in this process,
    tokenisation and pooling included, nothing else running."""
    embedder = load_query_embedder(settings.embedder_config)
    result = {}
    for size in batches:
        embedder.embed_documents(queries[:size])
        count = passes = 0
        cpu_before, started = process_cpu(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            first = (passes * size) % (len(queries) - size)
            embedder.embed_documents(queries[first : first + size])
            count, passes = count + size, passes + 1
        wall = time.perf_counter() - started
        result[size] = ((process_cpu() - cpu_before) / count, wall / passes)
    return result


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def load_stage(
    server: Server, settings: Settings, queries: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    host, port = server.url.removeprefix("http://").split(":")

    def body(number: int) -> dict[str, Any]:
        return {"query": f"{queries[number % len(queries)]} ({number})", "k": 10}

    server_pid = server.ready()["server_pid"]
    cpu: dict[int, float] = {}  # the server's CPU seconds per request, by clients
    batch: dict[int, float] = {}  # queries per forward pass of the query model, by clients

    def timed(count: int, offset: int) -> Any:
        passes = model_counters(server.url)
        before = cpu_seconds(server_pid)
        result = asyncio.run(
            run_load(
                host,
                int(port),
                "/search",
                lambda n: body(n + offset),
                clients=count,
                seconds=seconds,
            )
        )
        cpu[count] = (cpu_seconds(server_pid) - before) / max(1, len(result.latencies))
        after = model_counters(server.url)
        # A server without the counters (older code) is taken to embed one query per pass.
        batch[count] = (
            (after[1] - passes[1]) / (after[0] - passes[0]) if after[0] > passes[0] else 1.0
        )
        return result

    single = timed(1, 0)
    many = timed(clients, 10_000_000)
    ready = server.ready()
    server_rss = rss_mb(ready.get("server_pid"))
    worker_rss = rss_mb((ready.get("worker") or {}).get("pid"))
    print(f"/search under load, {seconds:.0f} s each, every query text distinct")
    rows = [
        [
            f"{n} client{'s' if n > 1 else ''}",
            str(len(r.latencies)),
            f"{r.throughput:.1f}",
            ms(percentile(r.latencies, 50)),
            ms(percentile(r.latencies, 99)),
            str(len(r.errors)),
            ms(cpu[n]),
            f"{cpu[n] * r.throughput:.2f}",
            f"{batch[n]:.1f}",
        ]
        for n, r in ((1, single), (clients, many))
    ]
    table(
        ["load", "requests", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "cores",
         "queries/pass"],
        rows,
    )  # fmt: skip
    ratio = many.throughput / single.throughput if single.throughput else float("nan")
    print(f"throughput {clients} clients / 1 client: {ratio:.2f}")
    model = model_cpu(settings, queries, sorted({1, round(batch[clients])}))
    print("the query model's own CPU per query in this process, at the batch sizes reached:")
    table(
        ["batch", "CPU ms/query", "wall ms/pass"],
        [[str(b), f"{c * 1000:.2f}", f"{w * 1000:.2f}"] for b, (c, w) in model.items()],
    )
    own = model[round(batch[clients])][0]
    print(
        f"server CPU per /search at {clients} clients / the model's own at batch "
        f"{round(batch[clients])}: {cpu[clients] / own:.2f}"
    )
    print(
        f"resident memory at {ready['chunks']} chunks: server {server_rss[0]:.0f} MB "
        f"(peak {server_rss[1]:.0f}), worker {worker_rss[0]:.0f} MB (peak {worker_rss[1]:.0f})\n"
    )
    if many.errors:
        print("first errors:", many.errors[:3])
    return {
        "one_client_rps": single.throughput,
        "many_clients_rps": many.throughput,
        "ratio": ratio,
        "many_p50_ms": percentile(many.latencies, 50) * 1000,
        "many_p99_ms": percentile(many.latencies, 99) * 1000,
        "errors": len(many.errors),
        "server_cpu_ms_per_request": {str(n): value * 1000 for n, value in cpu.items()},
        "queries_per_pass": {str(n): value for n, value in batch.items()},
        "model_cpu_ms_per_query": {str(b): c * 1000 for b, (c, _) in model.items()},
        "server_over_model": cpu[clients] / own,
        "server_rss_mb": server_rss[0],
        "server_peak_mb": server_rss[1],
        "worker_rss_mb": worker_rss[0],
        "worker_peak_mb": worker_rss[1],
    }


def profile_stage(
    server: Server, queries: list[str], clients: int, seconds: float, scratch: Path
) -> dict[str, Any]:
    """The load stage's two loads again under py-spy: CPU ms per request by stage."""
    host, port = server.url.removeprefix("http://").split(":")
    pid = server.ready()["server_pid"]
    figures: dict[str, dict[str, float]] = {}
    for count, offset in ((1, 20_000_000), (clients, 30_000_000)):
        recording = Recording(pid, scratch / f"profile-{count}.txt")
        with recording:
            result = asyncio.run(
                run_load(
                    host,
                    int(port),
                    "/search",
                    lambda n, o=offset: {"query": f"{queries[(n + o) % len(queries)]} ({n + o})",
                                         "k": 10},
                    clients=count,
                    seconds=seconds,
                )
            )  # fmt: skip
        figures[str(count)] = per_request(recording.seconds_by_stage(), len(result.latencies))
    stages = sorted(set(figures["1"]) | set(figures[str(clients)]),
                    key=lambda s: -figures[str(clients)].get(s, 0.0))  # fmt: skip
    print(f"where the server's CPU goes per /search (py-spy, {seconds:.0f} s per load)")
    rows = [
        [stage, *(f"{figures[str(n)].get(stage, 0.0):.2f}" for n in (1, clients))]
        for stage in stages
    ]
    rows.append(["total", *(f"{sum(figures[str(n)].values()):.2f}" for n in (1, clients))])
    table(["stage", "CPU ms/req, 1 client", f"{clients} clients"], rows)
    print()
    return figures


def upload_all(
    server: Server,
    records: list[tuple[str, bytes]],
    batch: int,
    *,
    search_interval: float | None,
    queries: list[str],
) -> dict[str, Any]:
    """Upload every record; optionally search meanwhile and time a probe document. Starts
    once the server's worker takes jobs (its cold start is timed on its own)."""
    waited = time.perf_counter()
    while not server.ready()["worker"]["ready"]:
        time.sleep(0.05)
    worker_start = time.perf_counter() - waited
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    acknowledged = 0
    probe: dict[str, float] = {}

    def searcher() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            number = 0
            while not stop.is_set():
                text = f"{queries[number % len(queries)]} ({number})"
                number += 1
                started = time.perf_counter()
                response = client.post("/search", json={"query": text, "k": 10})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                stop.wait(search_interval)

    def prober() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while acknowledged < 1000 and not stop.is_set():
                time.sleep(0.05)
            sent = time.perf_counter()
            response = client.post(
                "/documents",
                files=[("files", ("probe.txt", PROBE.encode(), "text/plain"))],
                data={"collection": "beir"},
            )
            assert response.status_code == 202, response.text
            probe["queued_before"] = float(acknowledged)
            job_id = response.json()["jobs"][0]["id"]
            while not stop.is_set():
                hits = client.post(
                    "/search", json={"query": PROBE_QUERY, "k": 3, "mode": "lexical"}
                ).json()["results"]
                if hits and hits[0]["source_name"] == "probe.txt":
                    probe["searchable_after_s"] = time.perf_counter() - sent
                    job = client.get(f"/jobs/{job_id}").json()
                    created = _timestamp(job["created_at"])
                    probe["taken_after_s"] = _timestamp(job["started_at"]) - created
                    probe["stored_after_s"] = _timestamp(job["finished_at"]) - created
                    return
                time.sleep(0.1)

    threads = []
    if search_interval is not None:
        threads = [threading.Thread(target=searcher), threading.Thread(target=prober)]
        for thread in threads:
            thread.start()
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=600) as client:
        for start in range(0, len(records), batch):
            files = [
                ("files", (name, data, "text/plain"))
                for name, data in records[start : start + batch]
            ]
            response = client.post("/documents", files=files, data={"collection": "beir"})
            assert response.status_code == 202, response.text
            acknowledged += len(files)
        uploaded = time.perf_counter() - started
        total = len(records) + (1 if search_interval is not None else 0)
        while True:
            jobs = client.get("/ready").json()["jobs"]
            if jobs.get("ready", 0) + jobs.get("failed", 0) >= total:
                break
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return {
        "documents": len(records),
        "upload_seconds": uploaded,
        "seconds": seconds,
        "docs_per_s": len(records) / seconds,
        "search_latencies": latencies,
        "search_errors": errors,
        "probe": probe,
        "jobs": jobs,
        "worker_start_seconds": worker_start,
    }


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ingest_stage(
    scratch: Path, corpus: Path, queries: list[str], batch: int, interval: float
) -> dict[str, Any]:
    records = []
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            text = f"{record.get('title', '')}\n\n{record['text']}".strip()
            records.append((f"{record['_id']}.txt", text.encode()))
    results = {}
    for name, search_interval in (("with searches", interval), ("no searches", None)):
        data_dir = scratch / f"upload-{name.replace(' ', '-')}"
        server = Server(data_dir, scratch / f"{data_dir.name}.log").start()
        try:
            results[name] = upload_all(
                server, records, batch, search_interval=search_interval, queries=queries
            )
        finally:
            server.stop()
    loaded, quiet = results["with searches"], results["no searches"]
    latencies = loaded["search_latencies"]
    print(
        f"uploading all {len(records)} documents through POST /documents "
        f"({batch} files per request)"
    )
    rows = [
        [name, f"{r['upload_seconds']:.1f}", f"{r['seconds']:.1f}", f"{r['docs_per_s']:.1f}"]
        for name, r in results.items()
    ]
    table(["run", "upload s", "all ready s", "docs/s"], rows)
    ratio = loaded["docs_per_s"] / quiet["docs_per_s"]
    print(
        f"one client's /search meanwhile (every {interval} s): {len(latencies)} searches, "
        f"p50 {ms(percentile(latencies, 50))} ms, p95 {ms(percentile(latencies, 95))} ms, "
        f"p99 {ms(percentile(latencies, 99))} ms, max {ms(max(latencies))} ms, "
        f"{len(loaded['search_errors'])} errors"
    )
    probe = loaded["probe"]
    nan = float("nan")
    print(
        f"one-page document uploaded after {probe.get('queued_before', 0):.0f} files were "
        f"queued: searchable {probe.get('searchable_after_s', nan):.1f} s after its upload "
        f"(its job taken after {probe.get('taken_after_s', nan):.1f} s, stored after "
        f"{probe.get('stored_after_s', nan):.1f} s)"
    )
    starts = ", ".join(f"{r['worker_start_seconds']:.1f}" for r in results.values())
    print(f"the uploads began once the worker took jobs; its cold start: {starts} s")
    print(f"ingestion throughput with searches / without: {ratio:.2f}\n")
    return {
        "with_searches_docs_per_s": loaded["docs_per_s"],
        "without_docs_per_s": quiet["docs_per_s"],
        "ratio": ratio,
        "search_p50_ms": percentile(latencies, 50) * 1000,
        "search_p95_ms": percentile(latencies, 95) * 1000,
        "search_p99_ms": percentile(latencies, 99) * 1000,
        "search_errors": len(loaded["search_errors"]),
        "probe": probe,
        "worker_start_seconds": [r["worker_start_seconds"] for r in results.values()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--upload-batch", type=int, default=100)
    parser.add_argument("--search-interval", type=float, default=0.1)
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    corpus = args.corpus_dir / "corpus.jsonl"
    queries, qrels = load_beir(args.corpus_dir, args.split)
    train = args.corpus_dir / "qrels" / "train.tsv"
    others = list(load_beir(args.corpus_dir, "train")[0].values()) if train.exists() else []
    if len(others) < 330:
        with open(args.corpus_dir / "queries.jsonl", encoding="utf-8") as handle:
            others = [
                json.loads(line)["text"]
                for line in handle
                if json.loads(line)["_id"] not in queries
            ][:330] or list(queries.values())
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    print(
        f"commit {git}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}; {len(queries)} {args.split} queries\n"
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    settings = Settings(
        data_dir=str(scratch / "store"),
        model_cache_dir=os.environ.get("RAGSVC_MODEL_CACHE_DIR", str(scratch / "models")),
    )
    os.environ.setdefault("RAGSVC_MODEL_CACHE_DIR", settings.model_cache_dir)
    figures: dict[str, Any] = {"commit": git}
    try:
        store = scratch / "store"
        if stages & {"build", "retrieval", "server", "load", "profile"}:
            figures["build"] = build(store, corpus, settings)
        if "retrieval" in stages:
            figures["retrieval"] = in_process(store, settings, queries, qrels, others[:50])
        if stages & {"server", "load", "profile"}:
            server = Server(store, scratch / "server.log").start()
            try:
                if "server" in stages:
                    figures["server"] = server_stage(server, list(queries.values()), others)
                if "load" in stages:
                    figures["load"] = load_stage(
                        server,
                        settings,
                        others + list(queries.values()),
                        args.clients,
                        args.duration,
                    )
                if "profile" in stages:
                    figures["profile"] = profile_stage(
                        server, others + list(queries.values()), args.clients, args.duration,
                        scratch,
                    )  # fmt: skip
            finally:
                server.stop()
        if "ingest" in stages:
            figures["ingest"] = ingest_stage(
                scratch, corpus, list(queries.values()), args.upload_batch, args.search_interval
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
