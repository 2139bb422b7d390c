"""What several benchmarks share: a fresh store built from a BEIR corpus in one process, a
`ragsvc serve` child process, and a thread that searches a server at a steady pace and keeps
every latency and error."""

from __future__ import annotations

import json
import platform
import threading
import time
from pathlib import Path

import httpx

from benchmarks.http_load import percentile
from indexes import Catalog
from ingest import IngestPipeline, jsonl_sources, load_embedder
from ingest.chunking import Chunker
from ragsvc.api.server_process import ServerProcess
from ragsvc.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def beir_queries(corpus_dir: Path) -> list[str]:
    """Every query text of a BEIR folder, in file order."""
    lines = (corpus_dir / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def machine() -> str:
    return (
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )


class Server(ServerProcess):
    def __init__(self, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, log, env, cwd=ROOT)


def build(store: Path, corpus: Path, settings: Settings) -> dict[str, float]:
    """Ingest `corpus` (BEIR `corpus.jsonl`) into a fresh store, collection `beir`."""
    embedder = load_embedder(settings.embedder_config)
    chunker = Chunker(embedder, overlap=settings.chunk_overlap_tokens)
    started = time.perf_counter()
    with Catalog.open(store, model_id=embedder.model_id, dimension=embedder.dimension) as catalog:
        report = IngestPipeline(catalog, embedder, chunker).run(
            jsonl_sources(corpus), collection="beir"
        )
        catalog.refresh()
    seconds = time.perf_counter() - started
    print(
        f"built a fresh store: {report.count('added')} documents, {report.chunks_stored} "
        f"chunks in {seconds:.1f} s ({getattr(embedder, 'precision', '?')})\n"
    )
    return {"documents": report.count("added"), "chunks": report.chunks_stored, "seconds": seconds}


class Searcher:
    """Searches `url` with `queries` in turn, one every `interval` seconds, until stopped."""

    def __init__(self, url: str, queries: list[str], interval: float) -> None:
        self.url = url
        self.queries = queries
        self.interval = interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="searcher")

    def __enter__(self) -> Searcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            number = 0
            while not self._stop.is_set():
                text = f"{self.queries[number % len(self.queries)]} ({number})"
                number += 1
                started = time.perf_counter()
                try:
                    response = client.post("/search", json={"query": text, "k": 10})
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                self.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.text[:200]}")
                self._stop.wait(self.interval)

    def row(self, phase: str, seconds: float) -> list[str]:
        """A table row: phase, seconds, searches, p50, p95, p99, max (ms), errors."""
        values = self.latencies

        def ms(q: float) -> str:
            return f"{percentile(values, q) * 1000:.1f}"

        return [
            phase,
            f"{seconds:.1f}",
            str(len(values)),
            ms(50),
            ms(95),
            ms(99),
            f"{max(values, default=float('nan')) * 1000:.0f}",
            str(len(self.errors)),
        ]


SEARCH_HEADERS = ["phase", "s", "searches", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]
