"""The whole service at size: a data directory filled with N chunks through the store's real
write path, then served and measured over HTTP.

    python benchmarks/bench_scale.py SCIFACT_DIR XQUAD_JSON --chunks 100000 [--json FILE]
        [--work DIR [--reuse]] [--keep-snapshot]

The fill runs no model. The SciFact corpus and its test queries are embedded once, in a child
process (as `bench_index.py` does); each generated document then takes one SciFact abstract
as its topic: its chunks are sentences of that abstract and of XQuAD paragraphs, recombined to
the length of a real chunk, and each chunk's vector is its abstract's embedding mixed with
another's and perturbed (the vectors `bench_index.py` makes), so the real SciFact queries have
meaningful neighbours in both the dense and the lexical index. Documents go through
`Catalog.commit` (rows, chunks, embeddings, change log) a batch at a time, spread over 100
collections plus one small one (`small`, 50 documents) for a filtered search, each with a
`group` metadata value from 0 to 99 (a metadata filter on one value matches 1%).

Measured: fill time and disk size; the cold open of `ragsvc serve` until `/ready`, with the
snapshot and with it removed; the server's RSS; `/search` p50/p95/p99 per mode over HTTP
(SciFact test queries, one at a time); the filtered searches; a deep page of `GET /documents`;
deleting a document; how long an uploaded document takes to be searchable after its job
commits. One table; `--json FILE` writes the figures as one object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_index import EMBED, NOISE  # noqa: E402
from benchmarks.http_load import percentile  # noqa: E402
from benchmarks.report import table  # noqa: E402
from benchmarks.stores import Server, machine  # noqa: E402
from indexes import Catalog, ChunkEmbedding, NewChunk, NewDocument  # noqa: E402
from indexes.rows import embedded_text  # noqa: E402
from ingest.chunking import sentence_spans  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

COLLECTIONS = 100
SMALL = 50
"""Documents in the small collection of the filtered search."""
CHUNK_SENTENCES = (4, 9)
DOCUMENT_CHUNKS = (2, 24)
BATCH_DOCUMENTS = 500
PROBE_PHRASE = "marmoset lantern ferry quorum"
OPEN_TIMEOUT = 1800.0


def embed_corpus(scifact: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """SciFact's abstracts and test queries, embedded in a child process (cached in `folder`)."""
    if not (folder / "base.npy").exists():
        subprocess.run(
            [sys.executable, "-c", EMBED, str(scifact / "corpus.jsonl"),
             str(scifact / "queries.jsonl"), str(scifact / "qrels" / "test.tsv"), str(folder),
             "0"],
            check=True,
        )  # fmt: skip
    return np.load(folder / "base.npy"), np.load(folder / "queries.npy")


def sentences_of(text: str) -> list[str]:
    return [text[a:b].strip() for a, b in sentence_spans(text) if b - a > 20]


def topics(scifact: Path, xquad: Path) -> tuple[list[list[str]], list[str]]:
    """Each SciFact abstract's sentences (a topic each), and XQuAD's sentences (filler)."""
    abstracts = []
    for line in (scifact / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        abstracts.append(sentences_of(f"{row['title']}. {row['text']}") or [row["title"]])
    filler = []
    for article in json.loads(xquad.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            filler.extend(sentences_of(paragraph["context"]))
    return abstracts, filler


def documents(
    count_chunks: int, abstracts: list[list[str]], filler: list[str], base: np.ndarray
) -> Iterator[tuple[NewDocument, dict[bytes, ChunkEmbedding]]]:
    """Documents until `count_chunks` chunks, each with its chunks' vectors; the same for the
    same arguments."""
    rng = np.random.default_rng(7)
    pick = random.Random(7)
    made = 0
    number = 0
    while made < count_chunks:
        topic = int(rng.integers(len(abstracts)))
        other = int(rng.integers(len(abstracts)))
        size = min(count_chunks - made, pick.randint(*DOCUMENT_CHUNKS))
        title = abstracts[topic][0][:120]
        chunks = []
        vectors: dict[bytes, ChunkEmbedding] = {}
        offset = 0
        for ordinal in range(size):
            length = pick.randint(*CHUNK_SENTENCES)
            own = [pick.choice(abstracts[topic]) for _ in range(length - length // 3)]
            text = " ".join(own + [pick.choice(filler) for _ in range(length // 3)])
            text = f"{text} (part {number}.{ordinal})"
            context = title
            text_hash = hashlib.sha256(embedded_text(context, text).encode()).digest()
            weight = float(rng.uniform(0.6, 1.0))
            vector = weight * base[topic] + (1 - weight) * base[other]
            noise = rng.standard_normal(base.shape[1], dtype=np.float32)
            vector = vector + NOISE / np.sqrt(base.shape[1]) * noise
            vectors[text_hash] = ChunkEmbedding(
                (vector / np.linalg.norm(vector)).astype(np.float32)
            )
            chunks.append(
                NewChunk(
                    ordinal=ordinal,
                    text=text,
                    char_start=offset,
                    char_end=offset + len(text),
                    token_count=len(text) // 5,
                    text_hash=text_hash,
                    page_start=ordinal // 3 + 1,
                    page_end=ordinal // 3 + 1,
                    context=context,
                )
            )
            offset += len(text) + 1
        collection = "small" if number < SMALL else f"c{number % COLLECTIONS:03d}"
        yield (
            NewDocument(
                collection=collection,
                source_name=f"doc-{number:08d}.txt",
                media_type="text/plain",
                sha256=hashlib.sha256(f"document {number}".encode()).hexdigest(),
                byte_size=offset,
                char_count=offset,
                chunks=chunks,
                metadata={"group": number % 100},
            ),
            vectors,
        )
        made += size
        number += 1


def fill(store: Path, chunks: int, abstracts: list[list[str]], filler: list[str], base: np.ndarray,
         model_id: str) -> dict[str, float]:  # fmt: skip
    started = time.perf_counter()
    stored = documents_stored = 0
    settings = Settings()
    with Catalog.open(
        store,
        model_id=model_id,
        dimension=base.shape[1],
        index_type=settings.index_type,  # as the server will open it
        vector_params=settings.vector_params,
    ) as catalog:
        batch: list[NewDocument] = []
        vectors: dict[bytes, ChunkEmbedding] = {}
        for document, embedded in documents(chunks, abstracts, filler, base):
            batch.append(document)
            vectors.update(embedded)
            if len(batch) == BATCH_DOCUMENTS:
                catalog.commit(batch, vectors)
                stored += sum(len(d.chunks) for d in batch)
                documents_stored += len(batch)
                batch, vectors = [], {}
                print(f"\r{stored:,} chunks stored", end="", file=sys.stderr, flush=True)
        if batch:
            catalog.commit(batch, vectors)
            stored += sum(len(d.chunks) for d in batch)
            documents_stored += len(batch)
        filled = time.perf_counter() - started
        catalog.reader  # noqa: B018 (the first open builds the index and saves its snapshot)
    print(file=sys.stderr)
    return {
        "chunks": stored,
        "documents": documents_stored,
        "fill_s": filled,
        "index_build_s": time.perf_counter() - started - filled,
    }


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def rss_mb(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_open(store: Path, log: Path, models: Path) -> tuple[Server, float]:
    """A server on `store`, and the seconds until it answered (`ragsvc serve` answers once
    its store is open and its index loaded). The query model's export is made beforehand in
    `models`, and the query cache holds one query: every search embeds its query, in every
    mode."""
    env = {"RAGSVC_MODEL_CACHE_DIR": str(models), "RAGSVC_QUERY_CACHE_SIZE": "1"}
    started = time.perf_counter()
    server = Server(store, log, env)
    server.ready_timeout = OPEN_TIMEOUT
    server.start()
    return server, time.perf_counter() - started


def search_times(client: httpx.Client, bodies: list[dict[str, Any]]) -> list[float]:
    client.post("/search", json=bodies[0])  # warm
    times = []
    for body in bodies:
        started = time.perf_counter()
        response = client.post("/search", json=body)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scifact", type=Path)
    parser.add_argument("xquad", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--work", type=Path, help="keep the store and embeddings here")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the store a run left in --work, unfilled"
    )
    parser.add_argument(
        "--keep-snapshot",
        action="store_true",
        help="skip the last step (an open with the index snapshot removed, minutes at 1M)",
    )
    args = parser.parse_args()
    print(machine())
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / f"store-{args.chunks}"
    try:
        base, query_vectors = embed_corpus(args.scifact, work)
        del query_vectors
        abstracts, filler = topics(args.scifact, args.xquad)
        queries = [
            json.loads(line)["text"]
            for line in (args.scifact / "queries.jsonl").read_text().splitlines()
        ][: args.queries]
        from ingest import load_embedder

        model_id = load_embedder().model_id
        if args.reuse and (store / "index").is_dir():
            with Catalog.open(store, readonly=True) as catalog:
                chunks, listed = catalog.stats().chunks, len(catalog.all_documents())
            figures: dict[str, Any] = {"chunks": chunks, "documents": listed, "reused": True}
        else:
            shutil.rmtree(store, ignore_errors=True)
            figures = fill(store, args.chunks, abstracts, filler, base, model_id)
        print(json.dumps(figures), file=sys.stderr, flush=True)
        figures["disk_mb"] = disk_mb(store)
        from ingest import EmbedderConfig, load_query_embedder

        load_query_embedder(EmbedderConfig(onnx_cache=str(work / "models")))  # export once
        server, figures["open_s"] = timed_open(store, work / "server.log", work / "models")
        try:
            figures["rss_mb"] = rss_mb(server.process.pid if server.process else None)
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for mode in ("dense", "lexical", "hybrid"):
                    times = search_times(
                        client, [{"query": q, "k": 10, "mode": mode} for q in queries]
                    )
                    for q in (50, 95, 99):
                        figures[f"{mode}_p{q}_ms"] = percentile(times, q) * 1000
                small = search_times(
                    client, [{"query": q, "k": 10, "collection": "small"} for q in queries]
                )
                grouped = search_times(
                    client,
                    [{"query": q, "k": 10, "filters": {"metadata": {"group": 7}}} for q in queries],
                )
                figures["filtered_p50_ms"] = percentile(small, 50) * 1000
                figures["filtered_p95_ms"] = percentile(small, 95) * 1000
                figures["metadata_p50_ms"] = percentile(grouped, 50) * 1000
                figures["metadata_p95_ms"] = percentile(grouped, 95) * 1000
                total = figures["documents"]
                started = time.perf_counter()
                page = client.get("/documents", params={"limit": 100, "offset": total - 150})
                figures["documents_deep_page_ms"] = (time.perf_counter() - started) * 1000
                assert page.status_code == 200 and page.json()["documents"], page.text
                victim = page.json()["documents"][0]["id"]
                started = time.perf_counter()
                assert client.delete(f"/documents/{victim}").status_code == 204
                figures["delete_ms"] = (time.perf_counter() - started) * 1000
                figures["searchable_after_s"] = searchable_after(client)
                figures["rss_after_mb"] = rss_mb(server.process.pid if server.process else None)
        finally:
            server.stop()
            print(json.dumps(figures), file=sys.stderr, flush=True)
        if not args.keep_snapshot:
            shutil.rmtree(store / "index")
            server, figures["open_without_snapshot_s"] = timed_open(
                store, work / "server2.log", work / "models"
            )
            server.stop()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = [[name, f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"]
            for name, value in figures.items()]  # fmt: skip
    print(f"\n{figures['chunks']:,} chunks in {figures['documents']:,} documents\n")
    table(["figure", "value"], rows)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def searchable_after(client: httpx.Client) -> float:
    """Seconds from an uploaded document's commit (its job's `finished_at`) until a lexical
    search finds it."""
    name = f"probe-{time.time_ns()}.txt"  # a store measured again holds earlier probes
    body = f"A field report: the {PROBE_PHRASE} was sighted, {name}.".encode()
    response = client.post("/documents", files=[("files", (name, body, "text/plain"))])
    job_id = response.json()["jobs"][0]["id"]
    while True:
        hits = client.post(
            "/search", json={"query": f"{PROBE_PHRASE} {name}", "k": 3, "mode": "lexical"}
        ).json()["results"]
        if hits and hits[0]["source_name"] == name:
            found = time.time()
            break
        time.sleep(0.02)
    job = client.get(f"/jobs/{job_id}").json()
    finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
    return found - finished


if __name__ == "__main__":
    main()
