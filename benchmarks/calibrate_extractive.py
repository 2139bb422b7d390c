"""Carry the extractive answerer's confidence calibration over to stored sentence vectors.

    python benchmarks/calibrate_extractive.py BEIR_DIR [--split train] [--queries 300]

The confidence midpoint (where `CALIBRATION` gives 0.5) was set for sentences embedded one by one.
Sentence vectors pooled from a chunk's own forward pass score questions on another scale. This
measures how far, with no relevance labels at all: a fresh store of the corpus, then for each
query of the split its top-5 passages, and the answerer's evidence computed both ways. The
mean difference is the shift that gives stored vectors the same abstention behaviour the
midpoint was chosen for. Run on a collection other than the one answers are evaluated on.

It also says, for `answer_sentence_vectors = "rerank"`, how often the sentence that encoding
every sentence would choose is among the stored vectors' top n: the share at which a
shortlist of n finds the same answer as `encode`, again without labels.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexes import Catalog  # noqa: E402
from ingest import (  # noqa: E402
    Chunker,
    IngestPipeline,
    jsonl_sources,
    load_embedder,
    load_query_embedder,
)
from ragsvc.answering.extractive import CALIBRATION, ExtractiveBackend  # noqa: E402
from ragsvc.evaluation.ranking import load_beir  # noqa: E402
from ragsvc.retrieval.retriever import passages, retrieve  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

# The mean of passage and sentence evidence at which confidence is 0.5.
MIDPOINT = -CALIBRATION.bias / (CALIBRATION.passage + CALIBRATION.sentence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    queries = list(load_beir(args.beir, args.split)[0].values())[: args.queries]
    with tempfile.TemporaryDirectory(prefix="calibrate-") as scratch:
        settings = Settings(
            data_dir=scratch, model_cache_dir=os.environ.get("RAGSVC_MODEL_CACHE_DIR", "")
        )
        embedder = load_embedder(settings.embedder_config)
        query_embedder = load_query_embedder(settings.embedder_config)
        with Catalog.open(
            Path(scratch), model_id=embedder.model_id, dimension=embedder.dimension
        ) as catalog:
            IngestPipeline(catalog, embedder, Chunker(embedder, overlap=32)).run(
                jsonl_sources(args.beir / "corpus.jsonl"), collection="beir"
            )
            stored = ExtractiveBackend(
                query_embedder, min_confidence=0.0, sentence_vectors="stored"
            )
            encoded = ExtractiveBackend(
                query_embedder, min_confidence=0.0, sentence_vectors="encode"
            )
            shifts = []
            evidence: list[tuple[float, float]] = []  # (encoded, stored) per query
            ranks = []  # where the best encoded sentence stands among the stored scores
            for text in queries:
                retrieved = retrieve(catalog, query_embedder, settings, text, k=5, need_vector=True)
                context = passages(catalog, retrieved.hits)
                encoded_scores = encoded._rank(text, context).scores
                stored_ranked = stored._rank(text, context)
                stored_sentences, stored_scores = stored_ranked.candidates, stored_ranked.scores
                best = max(p.score for p in context)
                evidence.append(
                    (
                        0.5 * best + 0.5 * float(encoded_scores.max()),
                        0.5 * best + 0.5 * float(stored_scores.max()),
                    )
                )
                shifts.append(evidence[-1][0] - evidence[-1][1])
                if len(stored_sentences) == len(encoded_scores):
                    order = np.argsort(-stored_scores).tolist()
                    ranks.append(order.index(int(np.argmax(encoded_scores))))
    shift = float(np.mean(shifts))
    print(
        f"{len(shifts)} {args.split} queries of {args.beir.name}: evidence with encoded "
        f"sentences minus evidence with stored ones: mean {shift:.4f}, median "
        f"{float(np.median(shifts)):.4f}, std {float(np.std(shifts)):.4f}"
    )
    print(f"midpoint for stored sentence vectors: 0.40 - {shift:.4f} = {0.40 - shift:.3f}")
    # The shift at which stored vectors fall below the midpoint exactly as often as encoded
    # sentences do: matched where it matters (at the threshold), not on average.
    encoded_evidence = np.array([e for e, _ in evidence])
    stored_evidence = np.array([s for _, s in evidence])
    below = float(np.mean(encoded_evidence < MIDPOINT))
    matched = MIDPOINT - float(np.quantile(stored_evidence, below)) if below > 0 else shift
    print(
        f"encoded sentences put {below:.3f} of the queries below the midpoint; the shift that "
        f"gives stored vectors the same share: {matched:.4f}"
    )
    print(
        f"rerank: share of {len(ranks)} queries whose best encoded sentence is among the "
        "stored vectors' top n (rerank with n finds the answer `encode` finds)"
    )
    for n in (1, 2, 3, 4, 5, 6, 8, 10):
        share = float(np.mean([rank < n for rank in ranks]))
        print(f"  n = {n:2d}: {share:.3f}")


if __name__ == "__main__":
    main()
