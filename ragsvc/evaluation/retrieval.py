"""`ragsvc eval retrieval`: nDCG, recall, MRR and latency on a BEIR dataset, per mode.

The corpus is ingested into the evaluation's own data folder (again and again costs nothing:
known documents are skipped by hash). Chunk hits are turned into a document ranking by each
document's best chunk. A baseline file turns the run into a regression check.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from indexes import Catalog, SearchFilter
from indexes.fusion import Mode
from ingest import Chunker, Embedder, IngestPipeline, jsonl_sources, load_embedder
from ragsvc.evaluation.metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k
from ragsvc.retrieval import retrieve
from ragsvc.settings import Settings

COLLECTION = "beir"
CHUNK_DEPTH = 300  # chunks retrieved per query: enough for a top-100 document ranking
QUALITY_METRICS = ("ndcg@{k}", "recall@{k}", "recall@100", "mrr@{k}")


def load_beir(directory: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query id → text, query id → {document id → grade}) for the split's judged queries."""
    qrels: dict[str, dict[str, int]] = {}
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if number == 0 and not parts[-1].strip().lstrip("-").isdigit():
            continue  # header
        query_id, doc_id, grade = parts[0], parts[1], int(parts[2])
        qrels.setdefault(query_id, {})[doc_id] = grade
    queries = {}
    with open(directory / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if str(record["_id"]) in qrels:
                queries[str(record["_id"])] = record["text"]
    return queries, qrels


def ingest_corpus(catalog: Catalog, settings: Settings, corpus: Path) -> tuple[int, int]:
    """Ingest (or find already ingested) the corpus with the document embedder; returns
    (added, unchanged)."""
    embedder = load_embedder(settings.embedder_config)
    chunker = Chunker(
        embedder,
        max_tokens=settings.chunk_max_tokens or None,
        overlap=settings.chunk_overlap_tokens,
    )
    pipeline = IngestPipeline(catalog, embedder, chunker, pool_chunks=settings.ingest_pool_chunks)
    report = pipeline.run(jsonl_sources(corpus), collection=COLLECTION)
    return report.count("added"), report.count("unchanged")


def evaluate(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    modes: list[Mode],
    k: int,
) -> dict[str, dict[str, float]]:
    external = {
        int(row[0]): str(row[1])
        for row in catalog.store.reader().execute("SELECT id, external_id FROM documents")
    }
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        totals = {name.format(k=k): 0.0 for name in QUALITY_METRICS}
        latencies = []
        for query_id, text in queries.items():
            started = time.perf_counter()
            hits = retrieve(
                catalog,
                embedder,
                settings,
                text,
                k=CHUNK_DEPTH,
                mode=mode,
                filters=SearchFilter(collection=COLLECTION),
            ).hits
            latencies.append((time.perf_counter() - started) * 1000)
            ranking: list[str] = []
            for hit in hits:
                doc = external[hit.document_id]
                if doc not in ranking:
                    ranking.append(doc)
            relevance = qrels[query_id]
            totals[f"ndcg@{k}"] += ndcg_at_k(ranking, relevance, k)
            totals[f"recall@{k}"] += recall_at_k(ranking, relevance, k)
            totals["recall@100"] += recall_at_k(ranking, relevance, 100)
            totals[f"mrr@{k}"] += mrr_at_k(ranking, relevance, k)
        report = {name: round(value / len(queries), 4) for name, value in totals.items()}
        report.update(
            {
                "latency_p50_ms": round(percentile(latencies, 50), 1),
                "latency_p95_ms": round(percentile(latencies, 95), 1),
                "latency_p99_ms": round(percentile(latencies, 99), 1),
            }
        )
        results[mode] = report
    return results


def regressions(report: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    """Quality metrics below the baseline by more than `tolerance`, as readable lines."""
    failures = []
    for mode, metrics in baseline.get("modes", {}).items():
        current = report["modes"].get(mode)
        if current is None:
            continue
        for name, expected in metrics.items():
            if name.startswith("latency") or name not in current:
                continue
            if current[name] < expected - tolerance:
                failures.append(
                    f"{mode} {name}: {current[name]:.4f} < baseline {expected:.4f} "
                    f"- tolerance {tolerance}"
                )
    return failures
