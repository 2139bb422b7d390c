"""`ragsvc eval retrieval`: nDCG, recall, MRR and latency on a BEIR dataset, per mode.

The corpus is ingested into the evaluation's own data folder (again and again costs nothing:
known documents are skipped by hash). Chunk hits are turned into a document ranking by each
document's best chunk (plus `eval_document_share` of its others'). Every figure carries a 95%
bootstrap interval over the queries, and the per-query values are kept in the report, so a
baseline file turns the run into a paired regression check (`regressions`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexes import Catalog, SearchFilter
from indexes.fusion import Mode
from ingest import Embedder, jsonl_sources
from ingest.pipeline import DocumentOutcome
from ragsvc.evaluation.ranking_metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k
from ragsvc.evaluation.statistics import bootstrap_interval, paired_test
from ragsvc.evaluation.tuning import DEEP, TOP, documents
from ragsvc.factory import make_embedder, make_pipeline
from ragsvc.retrieval.reranker import Reranker
from ragsvc.retrieval.retriever import rank_score, retrieve
from ragsvc.settings import Settings

COLLECTION = "beir"
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


def ingest_corpus(
    catalog: Catalog,
    settings: Settings,
    corpus: Path,
    on_document: Callable[[DocumentOutcome], None] | None = None,
) -> tuple[int, int]:
    """Ingest (or find already ingested) the corpus with the document embedder, calling
    `on_document` as each is done; returns (added, unchanged)."""
    pipeline = make_pipeline(settings, catalog, make_embedder(settings), engine="local")
    try:
        report = pipeline.run(jsonl_sources(corpus), collection=COLLECTION, on_document=on_document)
    finally:
        pipeline.close()
    return report.count("added"), report.count("unchanged")


def evaluate(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    modes: list[Mode],
    k: int,
    reranker: Reranker | None = None,
    on_query: Callable[[], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per mode: each metric's mean over the queries, its 95% bootstrap interval, and the
    per-query values (in `queries` order) that a later run is compared with, pair by pair.
    `on_query` is called after each query of each mode (progress).

    A hybrid ranking depends on how deep each retriever's list is, so the top-k metrics come
    from a request for `TOP` chunks and recall@100 from one for `DEEP` chunks, as the service
    would answer them; latency is that of the first."""
    owner = catalog.external_ids()
    names = [name.format(k=k) for name in QUALITY_METRICS]
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        values: dict[str, list[float]] = {name: [] for name in names}
        latencies = []
        for query_id, text in queries.items():
            relevance = qrels[query_id]

            started = time.perf_counter()
            top = _ranking(
                catalog, embedder, settings, text, mode, max(TOP, 3 * k), owner, reranker
            )
            latencies.append((time.perf_counter() - started) * 1000)
            deep = _ranking(
                catalog, embedder, settings, text, mode, max(DEEP, 3 * k), owner, reranker
            )
            values[f"ndcg@{k}"].append(ndcg_at_k(top, relevance, k))
            values[f"recall@{k}"].append(recall_at_k(top, relevance, k))
            values["recall@100"].append(recall_at_k(deep, relevance, 100))
            values[f"mrr@{k}"].append(mrr_at_k(top, relevance, k))
            if on_query is not None:
                on_query()
        intervals = {name: bootstrap_interval(v) for name, v in values.items()}
        report: dict[str, Any] = {name: round(i.value, 4) for name, i in intervals.items()}
        report.update(
            {
                "latency_p50_ms": round(percentile(latencies, 50), 1),
                "latency_p95_ms": round(percentile(latencies, 95), 1),
                "latency_p99_ms": round(percentile(latencies, 99), 1),
                "interval95": {name: i.rounded()[1:] for name, i in intervals.items()},
                "per_query": {name: [round(x, 4) for x in v] for name, v in values.items()},
            }
        )
        results[mode] = report
    return results


def _ranking(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    text: str,
    mode: Mode,
    depth: int,
    owner: dict[int, str],
    reranker: Reranker | None,
) -> list[str]:
    """The documents of a request for `depth` chunks, best first."""
    hits = retrieve(
        catalog,
        embedder,
        settings,
        text,
        k=depth,
        mode=mode,
        filters=SearchFilter(collection=COLLECTION),
        reranker=reranker,
    ).hits
    scored = ((hit.document_id, rank_score(hit)) for hit in hits)
    return documents(scored, owner, settings.eval_document_share)


def regressions(
    report: dict[str, Any], baseline: dict[str, Any], tolerance: float, alpha: float = 0.05
) -> list[str]:
    """Quality metrics worse than the baseline, as readable lines.

    When both reports carry per-query values for the same queries, a metric regresses when a
    paired test over those queries finds it lower (one-sided p < `alpha`) by more than
    `tolerance` on average: a noise-sized difference on a few hundred queries is not a
    regression, and a real drop is, even a small one. Otherwise (an older baseline), when it
    is below the baseline's figure by more than `tolerance`."""
    failures = []
    same_queries = report.get("query_ids") is not None and report.get("query_ids") == baseline.get(
        "query_ids"
    )
    for mode, metrics in baseline.get("modes", {}).items():
        current = report["modes"].get(mode)
        if current is None:
            continue
        for name, expected in metrics.items():
            if not isinstance(expected, int | float) or name.startswith("latency"):
                continue
            if name not in current:
                continue
            before = metrics.get("per_query", {}).get(name)
            after = current.get("per_query", {}).get(name)
            if same_queries and before is not None and after is not None:
                test = paired_test(before, after)
                if test.worse(alpha, tolerance):
                    low, high = test.difference.low, test.difference.high
                    failures.append(
                        f"{mode} {name}: {current[name]:.4f} against baseline {expected:.4f}, "
                        f"a paired difference of {test.difference.value:+.4f} (95% interval "
                        f"{low:+.4f} to {high:+.4f}) over {test.changed} changed queries, "
                        f"p = {test.p_value:.4f}"
                    )
            elif current[name] < expected - tolerance:
                failures.append(
                    f"{mode} {name}: {current[name]:.4f} < baseline {expected:.4f} "
                    f"- tolerance {tolerance}"
                )
    return failures
