"""`ragsvc eval tune`: retrieval parameters chosen on a labelled split (a training split, or
a user's own labelled queries), never on the split that reports.

Each query is embedded once and each retriever's candidate list (`DEEP` chunks) is computed
once per setting that changes it; fusion is then replayed offline with the service's own
functions (`indexes.fusion`), exactly as `IndexReader.retrieve` would run it for a request of
`TOP` chunks (the top-10 metrics) and of `DEEP` chunks (recall@100). Choices are made one
family at a time, each on nDCG@10 of the split, keeping the earlier ones:

1. BM25 `k1` and `b` (lexical retrieval alone);
2. pseudo-relevance feedback, a dense Rocchio step (the query vector moved towards its top
   chunks' mean): measured and reported, not a setting, since on SciFact's training split it
   lowered dense nDCG@10 (`benchmarks/RESULTS.md`);
3. fusion: RRF `k`, or a convex combination (weight and normalisation), with the candidates
   each retriever contributes;
4. how chunks rank their document: its best chunk, or the best plus a share of the others.

A candidate beats the current choice only by more than `MIN_GAIN` nDCG@10, so the simpler or
earlier setting stays on a tie. The result is a set of settings (written as TOML) and a table
of every candidate's figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from indexes import Catalog, SearchFilter
from indexes.fusion import FusionParams, Normalisation
from ingest import Embedder
from ragsvc.evaluation.ranking_metrics import ndcg_at_k, recall_at_k
from ragsvc.settings import Settings

TOP = 30
"""Chunks asked for when scoring the top-10 metrics (enough for ten documents)."""
DEEP = 300
"""Chunks asked for when scoring recall@100."""
MIN_GAIN = 0.001
K1_GRID = (0.6, 0.9, 1.2, 1.5)
B_GRID = (0.3, 0.4, 0.6, 0.75)
ROCCHIO_GRID = (0.0, 0.2, 0.4)
ROCCHIO_DEPTH = 3
RRF_GRID = (10, 20, 30, 45, 60, 90)
WEIGHT_GRID = tuple(round(0.3 + 0.05 * i, 2) for i in range(11))
NORMALISATIONS: tuple[Normalisation, ...] = ("minmax", "max", "zscore")
CANDIDATES_GRID = (50, 100, 200)
SHARE_GRID = (0.0, 0.05, 0.1, 0.2)

Ranked = list[tuple[int, float]]


@dataclass
class Query:
    id: str
    text: str
    relevance: dict[str, int]
    vector: np.ndarray
    dense: Ranked = field(default_factory=list)
    lexical: Ranked = field(default_factory=list)


class Trial(msgspec.Struct, frozen=True):
    family: str
    setting: str
    ndcg: float
    recall100: float
    chosen: bool = False


def documents(
    ranked: Iterable[tuple[int, float]], owner: dict[int, str], share: float
) -> list[str]:
    """Documents ranked from their chunks: the best chunk's score, plus `share` of the sum of
    the others' (0: the best chunk alone, ties kept in chunk order)."""
    best: dict[str, float] = {}
    rest: dict[str, float] = {}
    order: list[str] = []
    for chunk_id, score in ranked:
        doc = owner.get(chunk_id)
        if doc is None:
            continue
        if doc not in best:
            best[doc] = score
            rest[doc] = 0.0
            order.append(doc)
        else:
            rest[doc] += score
    if share == 0:
        return order
    position = {doc: i for i, doc in enumerate(order)}
    return sorted(order, key=lambda d: (-(best[d] + share * rest[d]), position[d]))


def _fused(query: Query, fusion: FusionParams, limit: int) -> Ranked:
    """What `IndexReader.retrieve` returns in hybrid mode for k = `limit`."""
    depth = max(limit, fusion.candidates)
    return fusion.fuse(query.dense[:depth], query.lexical[:depth])[:limit]


class Tuner:
    def __init__(
        self,
        catalog: Catalog,
        embedder: Embedder,
        settings: Settings,
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
        collection: str,
        *,
        progress: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.filters = SearchFilter(collection=collection)
        self.progress = progress
        self.owner = catalog.external_ids(by_chunk=True)
        progress(f"embedding {len(queries)} queries")
        self.queries = [
            Query(query_id, text, qrels[query_id], embedder.embed_query(text))
            for query_id, text in queries.items()
        ]
        self.trials: list[Trial] = []

    # -- scoring -------------------------------------------------------------------------

    def _score(self, rank: Callable[[Query, int], Ranked], share: float) -> tuple[float, float]:
        ndcg, recall = [], []
        for query in self.queries:
            top = documents(rank(query, TOP), self.owner, share)
            deep = documents(rank(query, DEEP), self.owner, share)
            ndcg.append(ndcg_at_k(top, query.relevance, 10))
            recall.append(recall_at_k(deep, query.relevance, 100))
        return float(np.mean(ndcg)), float(np.mean(recall))

    def _try(
        self,
        family: str,
        options: list[tuple[str, Any]],
        score: Callable[[Any], tuple[float, float]],
        *,
        choose: bool = True,
    ) -> Any:
        """Score every option; the first one is the current choice and stays unless another
        beats it by more than `MIN_GAIN`. Returns the chosen option (the first one when the
        family is only measured)."""
        results = []
        for label, option in options:
            ndcg, recall = score(option)
            results.append((label, option, ndcg, recall))
            self.progress(f"{family} {label}: nDCG@10 {ndcg:.4f}, recall@100 {recall:.4f}")
        chosen = 0
        for i, (_, _, ndcg, _) in enumerate(results):
            if choose and ndcg > results[chosen][2] + MIN_GAIN:
                chosen = i
        for i, (label, _, ndcg, recall) in enumerate(results):
            self.trials.append(Trial(family, label, round(ndcg, 4), round(recall, 4), i == chosen))
        return results[chosen][1]

    # -- the families ----------------------------------------------------------------------

    def _lexical_lists(self) -> None:
        for query in self.queries:
            query.lexical = self.catalog.reader.candidates(
                depth=DEEP, text=query.text, filters=self.filters
            )[1]

    def _dense_lists(self, rocchio: float) -> None:
        store = self.catalog.store
        for query in self.queries:
            vector = query.vector
            if rocchio:
                top = self.catalog.reader.candidates(
                    depth=ROCCHIO_DEPTH, vector=vector, filters=self.filters
                )[0]
                ids = [chunk_id for chunk_id, _ in top]
                found = [
                    v for _, v in store.vectors_for_chunks(self.catalog.model_id, ids, len(vector))
                ]
                if found:
                    centroid = np.concatenate(found).mean(axis=0)
                    vector = vector + rocchio * centroid
                    vector = (vector / np.linalg.norm(vector)).astype(np.float32)
            query.dense = self.catalog.reader.candidates(
                depth=DEEP, vector=vector, filters=self.filters
            )[0]

    def tune(self) -> dict[str, Any]:
        lexical_index = self.catalog.reader.state.lexical
        current = (self.settings.lexical_k1, self.settings.lexical_b)
        grid = [current] + [p for p in itertools.product(K1_GRID, B_GRID) if p != current]

        def lexical_score(params: tuple[float, float]) -> tuple[float, float]:
            lexical_index.set_parameters(*params)
            self._lexical_lists()
            return self._score(lambda q, n: q.lexical[:n], 0.0)

        k1, b = self._try("bm25", [(f"k1={p[0]} b={p[1]}", p) for p in grid], lexical_score)
        lexical_index.set_parameters(k1, b)
        self._lexical_lists()

        def dense_score(rocchio: float) -> tuple[float, float]:
            self._dense_lists(rocchio)
            return self._score(lambda q, n: q.dense[:n], 0.0)

        self._try(
            "dense prf (measured)",
            [(f"rocchio={r}", r) for r in ROCCHIO_GRID],
            dense_score,
            choose=False,
        )
        self._dense_lists(0.0)

        defaults = self.settings.fusion_params
        fusions = [defaults]
        for candidates in CANDIDATES_GRID:
            fusions += [FusionParams("rrf", rrf_k=k, candidates=candidates) for k in RRF_GRID]
            fusions += [
                FusionParams("weighted", dense_weight=w, normalisation=n, candidates=candidates)
                for n in NORMALISATIONS
                for w in WEIGHT_GRID
            ]
        unique = list(dict.fromkeys(fusions))
        fusion = self._try(
            "fusion",
            [(_label(f), f) for f in unique],
            lambda f: self._score(lambda q, n: _fused(q, f, n), 0.0),
        )
        share = self._try(
            "documents",
            [(f"share={s}", s) for s in SHARE_GRID],
            lambda s: self._score(lambda q, n: _fused(q, fusion, n), s),
        )
        return {
            "lexical_k1": k1,
            "lexical_b": b,
            "fusion": fusion.method,
            "fusion_rrf_k": fusion.rrf_k,
            "fusion_dense_weight": fusion.dense_weight,
            "fusion_normalisation": fusion.normalisation,
            "fusion_candidates": fusion.candidates,
            "eval_document_share": share,
        }


def _label(fusion: FusionParams) -> str:
    if fusion.method == "rrf":
        return f"rrf k={fusion.rrf_k} candidates={fusion.candidates}"
    return f"weighted w={fusion.dense_weight} {fusion.normalisation} candidates={fusion.candidates}"


def as_toml(chosen: dict[str, Any], source: str) -> str:
    lines = [f"# chosen by `ragsvc eval tune` on {source}"]
    for name, value in chosen.items():
        lines.append(f"{name} = {value!r}" if not isinstance(value, str) else f'{name} = "{value}"')
    return "\n".join(lines) + "\n"
