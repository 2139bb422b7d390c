"""What a reranker costs per query: hybrid retrieval with and without a cross-encoder of the
size of the common MiniLM-L6 rerankers, on a fresh store of a BEIR corpus.

    python benchmarks/bench_reranker.py CORPUS_DIR [--queries 200] [--candidates 10,20,50]

No cross-encoder comes with this project and nothing is downloaded: the benchmark makes one
from the default embedding model's weights with a new, untrained scoring head. It has the
architecture and cost of a MiniLM-L6 cross-encoder, not its judgement, so this measures time
only (quality needs a trained model: set `reranker` to its folder and run `ragsvc eval`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexes import Catalog, SearchFilter  # noqa: E402
from ingest import jsonl_sources, load_embedder, load_query_embedder  # noqa: E402
from ingest.embed.sentence_transformer import resolve_model  # noqa: E402
from ragsvc.evaluation.ranking_metrics import percentile  # noqa: E402
from ragsvc.factory import make_pipeline  # noqa: E402
from ragsvc.retrieval.reranker import CrossEncoderReranker  # noqa: E402
from ragsvc.retrieval.retriever import retrieve  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", default="10,20,50")
    args = parser.parse_args()
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    print(f"commit {git}; {platform.machine()}, {os.cpu_count()} CPUs\n")
    scratch = Path(tempfile.mkdtemp(prefix="bench-reranker-"))
    try:
        from transformers import AutoTokenizer, BertForSequenceClassification

        source = resolve_model("all-MiniLM-L6-v2")[0]
        folder = scratch / "cross-encoder"
        BertForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        reranker = CrossEncoderReranker(str(folder))

        settings = Settings(
            data_dir=str(scratch / "store"),
            model_cache_dir=os.environ.get("RAGSVC_MODEL_CACHE_DIR", str(scratch / "models")),
        )
        embedder = load_embedder(settings.embedder_config)
        with Catalog.open(
            settings.data_path, model_id=embedder.model_id, dimension=embedder.dimension
        ) as catalog:
            make_pipeline(settings, catalog, embedder).run(
                jsonl_sources(args.corpus_dir / "corpus.jsonl"), collection="beir"
            )
            catalog.refresh()
        with open(args.corpus_dir / "queries.jsonl", encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in handle][: args.queries + 20]
        query_embedder = load_query_embedder(settings.embedder_config)
        rows = []
        with Catalog.open(settings.data_path, readonly=True) as catalog:
            for candidates in [0, *(int(c) for c in args.candidates.split(","))]:
                run = msgspec.structs.replace(settings, reranker_candidates=max(1, candidates))
                chosen = reranker if candidates else None
                latencies = []
                for number, text in enumerate(texts):
                    started = time.perf_counter()
                    retrieve(
                        catalog, query_embedder, run, text, k=10,
                        filters=SearchFilter(collection="beir"), reranker=chosen,
                    )  # fmt: skip
                    if number >= 20:  # warm-up
                        latencies.append(time.perf_counter() - started)
                label = f"reranker, {candidates} candidates" if candidates else "no reranker"
                rows.append((label, percentile(latencies, 50), percentile(latencies, 95)))
        print(f"hybrid retrieval, k = 10, {len(texts) - 20} queries")
        print("| configuration | p50 ms | p95 ms |")
        print("|---|---|---|")
        for label, p50, p95 in rows:
            print(f"| {label} | {p50 * 1000:.1f} | {p95 * 1000:.1f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
