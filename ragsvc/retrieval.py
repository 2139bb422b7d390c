"""The one retrieval path of the service, the CLI and the evaluations: embed the query, then
dense, lexical or hybrid retrieval with the configured fusion, and timings for both stages."""

from __future__ import annotations

import time

from indexes import Catalog, SearchHit
from indexes.retrieval import Mode, SearchFilter
from ingest import Embedder
from ragsvc.answering.base import Passage
from ragsvc.settings import Settings


def retrieve(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    text: str,
    *,
    k: int,
    mode: Mode | None = None,
    filters: SearchFilter | None = None,
) -> tuple[list[SearchHit], float, float]:
    """(hits, seconds embedding, seconds searching)."""
    mode = mode or settings.retrieval_mode
    started = time.perf_counter()
    # Lexical retrieval ranks without the vector, but it still gives hits their similarity.
    vector = embedder.embed_query(text)
    embedded = time.perf_counter()
    hits = catalog.retrieve(
        k=k,
        vector=vector,
        text=text,
        mode=mode,
        filters=filters,
        fusion=settings.fusion,
        rrf_k=settings.fusion_rrf_k,
        dense_weight=settings.fusion_dense_weight,
        candidates=settings.fusion_candidates,
    )
    return hits, embedded - started, time.perf_counter() - embedded


def passages(hits: list[SearchHit]) -> list[Passage]:
    """Hits numbered from 1 for an answerer; their score is the cosine similarity, on which
    answer confidence is calibrated, whatever ranked them."""
    return [
        Passage(
            number=number,
            chunk_id=hit.chunk_id,
            document_id=hit.document_id,
            source_name=hit.source_name,
            text=hit.text,
            score=hit.similarity if hit.similarity is not None else hit.score,
            page_start=hit.page_start,
            page_end=hit.page_end,
            char_start=hit.char_start,
            char_end=hit.char_end,
        )
        for number, hit in enumerate(hits, start=1)
    ]
