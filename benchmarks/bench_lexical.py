"""The lexical engine measured against tantivy: the service's BM25 (`indexes.lexical`) and
tantivy (`pip install tantivy`) over the same chunk texts, for SciFact's nDCG@10 and for
latency, memory and indexing rate at size.

    python benchmarks/bench_lexical.py SCIFACT_DIR [--scale-store DIR [--skip-scifact]]
        [--queries 300]

- SciFact: a fresh store built from the corpus (the defaults, as `bench_serving.py` builds
  it); its chunks (context and text, as the lexical index reads them) indexed by each engine;
  the test queries; documents ranked by their best chunk among the top 300. tantivy runs
  twice: on the service's own analysis (its terms joined by spaces, tantivy's `whitespace`
  tokenizer), so only the scoring differs, and on the raw text with its `en_stem` tokenizer.
  The service's BM25 runs at its default b (0.3, chosen on SciFact's train split) and at
  b = 0.75, which is what tantivy's Python binding scores with (k1 1.2 for both; the binding
  does not let either be set).
- Scale (`--scale-store`, a data directory `bench_scale.py --work` left): the service's index
  loaded from that store's snapshot, and tantivy built from the store's chunk texts with
  `en_stem` in a child process of its own; indexing rate, the index's size on disk, the
  process's resident memory, and one-query latency (k = 100, the SciFact test queries).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_load import percentile  # noqa: E402
from benchmarks.report import table  # noqa: E402
from benchmarks.stores import beir_queries, build, machine  # noqa: E402
from indexes.lexical import Analyzer, LexicalIndex  # noqa: E402
from indexes.rows import CONTEXT_SEPARATOR  # noqa: E402
from ragsvc.evaluation.ranking import load_beir  # noqa: E402
from ragsvc.evaluation.ranking_metrics import ndcg_at_k  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

TEXTS = (
    f"SELECT ch.id, d.external_id, COALESCE(ch.context || '{CONTEXT_SEPARATOR}', '') || ch.text "
    "FROM chunks ch JOIN documents d ON d.id = ch.document_id ORDER BY ch.id"
)


def status_mb(field: str) -> float:
    """`VmRSS` or `VmHWM` (peak) of this process, from /proc (getrusage's peak survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tantivy_index(folder: Path | None, tokenizer: str) -> tuple[Any, Any]:
    import tantivy

    schema = tantivy.SchemaBuilder()
    schema.add_integer_field("id", stored=True, indexed=True, fast=True)
    schema.add_text_field("text", stored=False, tokenizer_name=tokenizer)
    built = schema.build()
    index = tantivy.Index(built, path=str(folder)) if folder else tantivy.Index(built)
    return tantivy, index


class Tantivy:
    """tantivy over (id, text) rows; `analysed` texts are the service's terms, space-joined."""

    def __init__(self, rows: list[tuple[int, str]], analysed: bool) -> None:
        self.analyzer = Analyzer() if analysed else None
        self.module, self.index = tantivy_index(None, "whitespace" if analysed else "en_stem")
        writer = self.index.writer(heap_size=500_000_000, num_threads=1)
        for chunk_id, text in rows:
            if self.analyzer is not None:
                text = " ".join(self.analyzer.terms(text))
            writer.add_document(self.module.Document(id=chunk_id, text=text))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, text: str, k: int) -> list[int]:
        terms = self.analyzer.terms(text) if self.analyzer else _words(text)
        if not terms:
            return []
        schema = self.index.schema
        query = self.module.Query.boolean_query(
            [
                (self.module.Occur.Should, self.module.Query.term_query(schema, "text", t))
                for t in dict.fromkeys(terms)
            ]
        )  # fmt: skip
        hits = self.searcher.search(query, k).hits
        return [self.searcher.doc(address)["id"][0] for _, address in hits]


def _words(text: str) -> list[str]:
    """Query terms for the `en_stem` field: tantivy's own analysis of the query text."""
    tokens: list[str] = []
    for word in "".join(c.lower() if c.isalnum() else " " for c in text).split():
        tokens.append(_stem(word))
    return tokens


def _stem(word: str) -> str:
    import Stemmer

    return str(Stemmer.Stemmer("english").stemWord(word))


def scifact(corpus: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store"
        build(store, corpus / "corpus.jsonl", Settings(data_dir=str(store)))
        with sqlite3.connect(store / "ragsvc.sqlite3") as conn:
            rows = conn.execute(TEXTS).fetchall()
    documents = {int(r[0]): str(r[1]) for r in rows}
    pairs = [(int(r[0]), str(r[2])) for r in rows]
    engines: dict[str, Any] = {}
    for name, b in (("service BM25, b 0.3 (default)", 0.3), ("service BM25, b 0.75", 0.75)):
        index = LexicalIndex(Analyzer(), k1=1.2, b=b)
        index.add([i for i, _ in pairs], [t for _, t in pairs])
        engines[name] = lambda text, k, index=index: [c for c, _ in index.search(text, k)]
    for name, analysed in (("tantivy, the service's terms", True), ("tantivy, en_stem", False)):
        engine = Tantivy(pairs, analysed)
        engines[name] = engine.search
    rows_out = []
    for name, search in engines.items():
        scores, times = [], []
        for query_id, text in queries.items():
            started = time.perf_counter()
            hits = search(text, 300)
            times.append(time.perf_counter() - started)
            ranking = list(dict.fromkeys(documents[c] for c in hits))
            scores.append(ndcg_at_k(ranking, qrels[query_id], 10))
        ndcg = sum(scores) / len(scores)
        rows_out.append([name, f"{ndcg:.4f}", f"{percentile(times, 50) * 1000:.2f}"])
    print(f"SciFact test, {len(queries)} queries, {len(pairs):,} chunks")
    table(["engine", "nDCG@10", "p50 ms (k = 300)"], rows_out)
    print()


def scale(store: Path, queries: list[str]) -> None:
    snapshot = sorted((store / "index").glob("snapshot-*"))[-1] / "lexical"
    before = status_mb("VmRSS")
    started = time.perf_counter()
    ours = LexicalIndex.load(snapshot, Analyzer())
    load_s = time.perf_counter() - started
    times = []
    for text in queries:
        began = time.perf_counter()
        ours.search(text, 100)
        times.append(time.perf_counter() - began)
    disk = sum(f.stat().st_size for f in snapshot.iterdir()) / 1e6
    rows = [
        ["service BM25 (snapshot, mapped)", f"{ours.postings:,} postings", f"{load_s:.2f} s load",
         f"{disk:,.0f}", f"{status_mb('VmRSS') - before:,.0f}",
         f"{percentile(times, 50) * 1000:.2f}", f"{percentile(times, 95) * 1000:.2f}"],
    ]  # fmt: skip
    child = subprocess.run(
        [sys.executable, __file__, "--tantivy-child", str(store), "--queries-file", "-"],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(child.stdout.splitlines()[-1])
    rows.append(
        ["tantivy, en_stem (built here)", f"{figures['chunks']:,} chunks",
         f"{figures['index_s']:.0f} s index ({figures['chunks'] / figures['index_s']:,.0f}/s)",
         f"{figures['disk_mb']:,.0f}", f"{figures['peak_mb']:,.0f}",
         f"{figures['p50_ms']:.2f}", f"{figures['p95_ms']:.2f}"]
    )  # fmt: skip
    print(f"at size: {store}")
    table(["engine", "held", "built / loaded", "disk MB", "memory MB", "p50 ms", "p95 ms"], rows)
    print(
        "memory: the service's index, resident growth of this process over the load and the "
        "searches; tantivy, its process's peak (the build, from a fresh interpreter)"
    )


def tantivy_child(store: Path, queries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        module, index = tantivy_index(Path(folder), "en_stem")
        writer = index.writer(heap_size=1_000_000_000, num_threads=2)
        started = time.perf_counter()
        count = 0
        with sqlite3.connect(f"file:{store / 'ragsvc.sqlite3'}?mode=ro", uri=True) as conn:
            for chunk_id, _, text in conn.execute(TEXTS):
                writer.add_document(module.Document(id=int(chunk_id), text=str(text)))
                count += 1
        writer.commit()
        writer.wait_merging_threads()
        index_s = time.perf_counter() - started
        index.reload()
        searcher = index.searcher()
        times = []
        for text in queries:
            terms = list(dict.fromkeys(_words(text)))
            query = module.Query.boolean_query(
                [(module.Occur.Should, module.Query.term_query(index.schema, "text", t))
                 for t in terms]
            )  # fmt: skip
            began = time.perf_counter()
            searcher.search(query, 100)
            times.append(time.perf_counter() - began)
        disk = sum(f.stat().st_size for f in Path(folder).iterdir()) / 1e6
    print(json.dumps({
        "chunks": count, "index_s": index_s, "disk_mb": disk, "peak_mb": status_mb("VmHWM"),
        "p50_ms": percentile(times, 50) * 1000, "p95_ms": percentile(times, 95) * 1000,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scifact", type=Path, nargs="?")
    parser.add_argument("--scale-store", type=Path)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-scifact", action="store_true", help="only the scale part")
    parser.add_argument("--tantivy-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tantivy_child:
        tantivy_child(args.tantivy_child, json.loads(sys.stdin.read()))
        return
    if args.scifact is None:
        parser.error("the SciFact folder is needed")
    print(machine())
    queries, qrels = load_beir(args.scifact, "test")
    if not args.skip_scifact:
        scifact(args.scifact, queries, qrels)
    if args.scale_store:
        scale(args.scale_store, beir_queries(args.scifact)[: args.queries])


if __name__ == "__main__":
    main()
