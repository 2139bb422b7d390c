"""Ingestion on Ray against the local engine: the same corpus into two fresh stores, then the
documents, chunks, embeddings and retrieval quality compared, and the throughput of each.

    python benchmarks/bench_ray.py CORPUS_DIR [--address ADDR] [--actors 1] [--actor-cpus 2]

CORPUS_DIR is a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`). The local
engine runs first, in this process; then the Ray engine, on the cluster at `--address` or on a
local Ray started for the run (its start-up is timed apart). Both use the default settings
otherwise (the document embedder in bf16 where the CPU has it). Prints one table per part.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402
from indexes import Catalog  # noqa: E402
from ingest import jsonl_sources, load_embedder, load_query_embedder  # noqa: E402
from ingest.ray_engine import connect  # noqa: E402
from ragsvc.evaluation.ranking import COLLECTION, evaluate, load_beir  # noqa: E402
from ragsvc.factory import make_pipeline  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402


def ingest(settings: Settings, corpus: Path, engine: str) -> dict[str, Any]:
    embedder = load_embedder(settings.embedder_config)
    with Catalog.open(
        settings.data_path, model_id=embedder.model_id, dimension=embedder.dimension
    ) as catalog:
        pipeline = make_pipeline(settings, catalog, embedder, engine=engine)  # type: ignore[arg-type]
        started = time.perf_counter()
        first: list[float] = []

        def on_document(_: object) -> None:
            if not first:
                first.append(time.perf_counter() - started)

        report = pipeline.run(jsonl_sources(corpus), collection=COLLECTION, on_document=on_document)
        seconds = time.perf_counter() - started
        pipeline.close()
        catalog.refresh()
    return {
        "documents": report.count("added"),
        "failed": report.count("failed"),
        "chunks": report.chunks_stored,
        "seconds": seconds,
        "first_document_s": first[0] if first else float("nan"),
    }


def stored(data_dir: Path) -> dict[tuple[str, int], tuple[str, int, int, np.ndarray, int]]:
    """(external id, ordinal) → (text, start, end, vector, sentence vectors)."""
    import sqlite3

    with sqlite3.connect(data_dir / "ragsvc.sqlite3") as conn:
        rows = conn.execute(
            "SELECT d.external_id, c.ordinal, c.text, c.char_start, c.char_end, e.vector, "
            "length(e.sentence_vectors) FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN embeddings e ON e.text_hash = c.text_hash"
        ).fetchall()
    return {
        (str(r[0]), int(r[1])): (r[2], r[3], r[4], np.frombuffer(r[5], np.float32), r[6] or 0)
        for r in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--address", default="", help="a running Ray cluster (default: local)")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--actor-cpus", type=float, default=2.0)
    args = parser.parse_args()
    corpus = args.corpus_dir / "corpus.jsonl"
    queries, qrels = load_beir(args.corpus_dir, args.split)
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    print(
        f"commit {git}; {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; Ray {args.address or 'local'}, {args.actors} actor(s) "
        f"of {args.actor_cpus} CPUs\n"
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        base = Settings(
            model_cache_dir=os.environ.get("RAGSVC_MODEL_CACHE_DIR", str(scratch / "models")),
            ray_address=args.address,
            ray_actors=args.actors,
            ray_actor_cpus=args.actor_cpus,
        )
        runs: dict[str, dict[str, Any]] = {}
        settings = {}
        for engine in ("local", "ray"):
            settings[engine] = msgspec.structs.replace(
                base, data_dir=str(scratch / engine), ingest_engine=engine
            )
            if engine == "ray":
                started = time.perf_counter()
                connect(settings[engine].ray_options)
                runs["ray start"] = {"seconds": time.perf_counter() - started}
            runs[engine] = ingest(settings[engine], corpus, engine)
        rows = [
            [
                engine,
                str(runs[engine]["documents"]),
                str(runs[engine]["chunks"]),
                f"{runs[engine]['seconds']:.1f}",
                f"{runs[engine]['chunks'] / runs[engine]['seconds']:.1f}",
                f"{runs[engine]['first_document_s']:.1f}",
            ]
            for engine in ("local", "ray")
        ]
        startup = runs["ray start"]["seconds"]
        print(f"ingestion of {corpus} (Ray start-up, not counted: {startup:.1f} s)")
        table(["engine", "documents", "chunks", "seconds", "chunks/s", "first stored s"], rows)
        ratio = (runs["ray"]["chunks"] / runs["ray"]["seconds"]) / (
            runs["local"]["chunks"] / runs["local"]["seconds"]
        )
        print(f"Ray throughput / local: {ratio:.2f}\n")

        local, distributed = stored(scratch / "local"), stored(scratch / "ray")
        same_keys = local.keys() == distributed.keys()
        same_text = same_keys and all(local[k][:3] == distributed[k][:3] for k in local)
        cosines = np.array(
            [float(local[k][3] @ distributed[k][3]) for k in local if k in distributed]
        )
        sentences = (
            sum(1 for v in distributed.values() if v[4]),
            sum(1 for v in local.values() if v[4]),
        )
        print("stored chunks compared")
        table(
            ["same chunks", "same text and offsets", "min cosine", "mean cosine",
             "chunks with sentence vectors (ray / local)"],
            [[str(same_keys), str(same_text), f"{cosines.min():.6f}", f"{cosines.mean():.6f}",
              f"{sentences[0]} / {sentences[1]}"]],
        )  # fmt: skip

        rows = []
        for engine in ("local", "ray"):
            query_embedder = load_query_embedder(settings[engine].embedder_config)
            with Catalog.open(settings[engine].data_path, readonly=True) as catalog:
                report = evaluate(
                    catalog, query_embedder, settings[engine], queries, qrels,
                    ["dense", "lexical", "hybrid"], 10,
                )  # fmt: skip
            for mode, metrics in report.items():
                rows.append(
                    [engine, mode, f"{metrics['ndcg@10']:.4f}", f"{metrics['recall@100']:.4f}",
                     f"{metrics['mrr@10']:.4f}"]
                )  # fmt: skip
        print(f"retrieval on {args.split} ({len(queries)} queries)")
        table(["engine", "mode", "nDCG@10", "recall@100", "MRR@10"], rows)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
