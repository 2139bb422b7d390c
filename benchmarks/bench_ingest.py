"""Ingestion throughput: the whole pipeline against the raw embedder on the same chunks.

    python benchmarks/bench_ingest.py PATH [--limit N] [--pool-chunks N] [--batch-size N]
        [--precision auto|fp32|bf16]

PATH is a BEIR `corpus.jsonl` or a folder of documents. The pipeline ingests it into a fresh
temporary data directory (extract, chunk, embed with sentence vectors, store) with the given
precision (`auto`: bf16 where the CPU computes it natively); then the raw embedder embeds
exactly the texts the pipeline embedded, in the same order and pool size, once in fp32 and
once in bf16. All run in the same process with the models loaded and warmed up, so the ratios
say what the pipeline adds on top of the model's arithmetic, and what bf16 gains over fp32.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from indexes import Catalog
from ingest import (
    Chunker,
    EmbedderConfig,
    IngestPipeline,
    file_sources,
    jsonl_sources,
    load_embedder,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="BEIR corpus.jsonl or a folder of documents")
    parser.add_argument("--limit", type=int, help="only the first N documents")
    parser.add_argument("--pool-chunks", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = parser.parse_args()

    def embedder_in(precision: str) -> Any:
        embedder = load_embedder(
            EmbedderConfig(batch_size=args.batch_size, precision=precision)  # type: ignore[arg-type]
        )
        embedder.embed_documents(["warm-up sentence"] * 64)
        return embedder

    embedder = embedder_in(args.precision)
    chunker = Chunker(embedder, overlap=32)

    if args.path.suffix == ".jsonl":
        sources = list(itertools.islice(jsonl_sources(args.path), args.limit))
    else:
        sources = file_sources([args.path], recursive=True)[: args.limit]

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        catalog = Catalog.open(
            Path(scratch), model_id=embedder.model_id, dimension=embedder.dimension
        )
        pipeline = IngestPipeline(catalog, embedder, chunker, pool_chunks=args.pool_chunks)
        started = time.perf_counter()
        report = pipeline.run(sources, collection="bench")
        pipeline_seconds = time.perf_counter() - started
        rows = catalog.store.reader().execute(
            "SELECT text FROM chunks WHERE id IN (SELECT MIN(id) FROM chunks GROUP BY text_hash) "
            "ORDER BY id"
        )
        texts = [str(r[0]) for r in rows]
        catalog.close()

    raw: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        raw_embedder = embedder_in(precision)
        started = time.perf_counter()
        for start in range(0, len(texts), args.pool_chunks):
            raw_embedder.embed_documents(texts[start : start + args.pool_chunks])
        raw[precision] = time.perf_counter() - started

    chunks = report.chunks_stored
    documents = report.count("added")
    print(
        f"input: {args.path} ({len(sources)} sources, {documents} documents ingested, "
        f"{len(report.failures)} failed)"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, python {platform.python_version()}"
    )
    print(
        f"pool {args.pool_chunks} chunks, batch {args.batch_size}, pipeline precision "
        f"{getattr(embedder, 'precision', '?')}; {chunks} chunks stored, "
        f"{report.texts_embedded} distinct texts embedded\n"
    )
    print(f"| {'stage':<30} | {'chunks':>7} | {'seconds':>8} | {'chunks/s':>8} | {'docs/s':>7} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")
    for precision, seconds in raw.items():
        label = f"raw embedder {precision} (same texts)"
        print(
            f"| {label:<30} | {len(texts):>7} | {seconds:>8.1f} | "
            f"{len(texts) / seconds:>8.1f} | {'':>7} |"
        )
    print(
        f"| {'pipeline, end to end':<30} | {chunks:>7} | {pipeline_seconds:>8.1f} | "
        f"{chunks / pipeline_seconds:>8.1f} | {documents / pipeline_seconds:>7.1f} |"
    )
    # Compare the same work: the distinct texts each side embedded.
    pipeline_rate = report.texts_embedded / pipeline_seconds
    for precision, seconds in raw.items():
        ratio = pipeline_rate / (len(texts) / seconds)
        print(f"pipeline / raw {precision} embedder throughput (distinct texts/s): {ratio:.3f}")


if __name__ == "__main__":
    main()
