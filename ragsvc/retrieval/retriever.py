"""The one retrieval path of the service, the CLI and the evaluations: embed the query (unless
only lexical retrieval is wanted), then dense, lexical or hybrid retrieval with the configured
fusion, and timings for both stages."""

from __future__ import annotations

import time
from typing import NamedTuple

import msgspec
import numpy as np

from indexes import Catalog, ModelChanged, SearchHit
from indexes.fusion import Mode, SearchFilter
from indexes.reader import StageTimer, no_stage
from ingest import Embedder
from ingest.chunking import sentence_spans
from ragsvc.answering.base import Passage
from ragsvc.retrieval.reranker import Reranker
from ragsvc.settings import Settings


class QueryVector(NamedTuple):
    """A query embedded before retrieval (the service embeds on its event loop)."""

    vector: np.ndarray
    model_id: str
    """The model that embedded it: a store moved to another model embeds the query again."""
    seconds: float


class Retrieved(NamedTuple):
    hits: list[SearchHit]
    vector: np.ndarray | None
    """The query's embedding, when one was computed."""
    embed_seconds: float
    search_seconds: float


def retrieve(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    text: str,
    *,
    k: int,
    mode: Mode | None = None,
    filters: SearchFilter | None = None,
    need_vector: bool = False,
    stage: StageTimer = no_stage,
    reranker: Reranker | None = None,
    embedded_query: QueryVector | None = None,
) -> Retrieved:
    """Top-k hits for `text`. Lexical retrieval embeds nothing unless `need_vector` (an
    answer needs the vector, and then hits also carry their similarity); `embedded_query`
    is `text` already embedded. With a `reranker`,
    the first `reranker_candidates` hits are ordered again by it (its score is their
    `rerank_score`; `score` stays the mode's) before the k best are kept."""
    mode = mode or settings.retrieval_mode
    started = time.perf_counter()
    depth = max(k, settings.reranker_candidates) if reranker is not None else k
    for attempt in range(2):
        vector = None
        model = embedder.model_id
        if embedded_query is not None and not attempt:
            vector, model = embedded_query.vector, embedded_query.model_id
            started -= embedded_query.seconds
        elif needs_vector(mode, need_vector):
            with stage("embed"):
                vector = embedder.embed_query(text)
        embedded = time.perf_counter()
        try:
            hits = catalog.retrieve(
                k=depth,
                vector=vector,
                text=text,
                mode=mode,
                filters=filters,
                fusion=settings.fusion_params,
                stage=stage,
                model_id=None if vector is None else model,
            )
        except ModelChanged:
            # The service moved to a re-embedded store's model between the two steps: the
            # query is embedded again, by the new model.
            if attempt:
                raise
            continue
        break
    if reranker is not None and hits:
        with stage("rerank"):
            head = hits[: settings.reranker_candidates]
            scores = reranker.rerank(text, [hit.text for hit in head])
            order = np.argsort(-scores, kind="stable")
            reranked = [
                msgspec.structs.replace(head[i], rerank_score=float(scores[i])) for i in order
            ]
            hits = reranked + hits[len(head) :]
    return Retrieved(hits[:k], vector, embedded - started, time.perf_counter() - embedded)


def needs_vector(mode: Mode, need_vector: bool) -> bool:
    """Whether retrieval in `mode` embeds the query (lexical does only when asked to)."""
    return mode != "lexical" or need_vector


def rank_score(hit: SearchHit) -> float:
    """What ordered the hit: the reranker's score when one did, else the mode's."""
    return hit.rerank_score if hit.rerank_score is not None else hit.score


def passages(catalog: Catalog, hits: list[SearchHit]) -> list[Passage]:
    """Hits numbered from 1 for an answerer, with the cosine similarity on which answer
    confidence is calibrated (whatever ranked them) beside the rank scores. Each carries its
    sentences' stored vectors when its text is a whole stored chunk (not widened by
    neighbours)."""
    stored = catalog.chunk_sentences([h.chunk_id for h in hits])
    result = []
    for number, hit in enumerate(hits, start=1):
        sentences = stored.get(hit.chunk_id)
        if sentences is not None and sentences[0].tolist() != [
            list(span) for span in sentence_spans(hit.text)
        ]:
            sentences = None  # a passage widened by its neighbours: other sentences
        result.append(
            Passage(
                number=number,
                chunk_id=hit.chunk_id,
                document_id=hit.document_id,
                source_name=hit.source_name,
                text=hit.text,
                similarity=hit.similarity if hit.similarity is not None else hit.score,
                score=hit.score,
                rerank_score=hit.rerank_score,
                page_start=hit.page_start,
                page_end=hit.page_end,
                char_start=hit.char_start,
                char_end=hit.char_end,
                retrievers=hit.retrievers,
                location=hit.location,
                sentence_spans=None if sentences is None else sentences[0],
                sentence_vectors=None if sentences is None else sentences[1],
            )
        )
    return result


MMR_POOL = 3  # candidates per wanted passage when diversifying


def context_depth(settings: Settings, k: int) -> int:
    """How many hits to retrieve for a `/query` context of k passages."""
    return k * MMR_POOL if settings.mmr_lambda < 1 else k


def context_hits(
    catalog: Catalog, settings: Settings, hits: list[SearchHit], k: int
) -> list[SearchHit]:
    """The hits a `/query` context uses: diversified (MMR) and widened by neighbours."""
    if settings.mmr_lambda < 1:
        hits = mmr(catalog, hits, k, settings.mmr_lambda)
    hits = hits[:k]
    if settings.context_neighbours:
        hits = with_neighbours(catalog, hits, settings.context_neighbours)
    return hits


def mmr(
    catalog: Catalog, hits: list[SearchHit], k: int, relevance_weight: float
) -> list[SearchHit]:
    """Greedy maximal marginal relevance: relevance · w - (1 - w) · max similarity to chosen."""
    vectors = catalog.chunk_vectors([h.chunk_id for h in hits])
    chosen: list[SearchHit] = []
    remaining = list(hits)
    while remaining and len(chosen) < k:

        def value(hit: SearchHit) -> float:
            relevance = hit.similarity if hit.similarity is not None else rank_score(hit)
            redundancy = max(
                (float(vectors[hit.chunk_id] @ vectors[c.chunk_id]) for c in chosen), default=0.0
            )
            return relevance_weight * relevance - (1 - relevance_weight) * redundancy

        best = max(remaining, key=value)
        chosen.append(best)
        remaining.remove(best)
    return chosen


def with_neighbours(catalog: Catalog, hits: list[SearchHit], radius: int) -> list[SearchHit]:
    """Each hit's text widened to the chunks `radius` before and after it in its document.
    Overlapping chunk texts are joined by their character offsets, so nothing repeats; a hit
    already inside an earlier widened passage is dropped."""
    widened: list[SearchHit] = []
    covered: set[int] = set()
    for hit in hits:
        if hit.chunk_id in covered:
            continue
        rows = catalog.neighbour_chunks(hit.document_id, hit.ordinal, radius)
        text, end = "", None
        for row in rows:
            if end is None:
                text = row.text
            elif row.char_start < end:
                text += row.text[end - row.char_start :]
            else:
                text += "\n\n" + row.text
            end = row.char_end if end is None else max(end, row.char_end)
        covered.update(row.id for row in rows)
        pages = [r.page_start for r in rows if r.page_start is not None] + [
            r.page_end for r in rows if r.page_end is not None
        ]
        widened.append(
            msgspec.structs.replace(
                hit,
                text=text,
                char_start=rows[0].char_start,
                char_end=end or hit.char_end,
                page_start=min(pages) if pages else None,
                page_end=max(pages) if pages else None,
            )
        )
    return widened
