"""The ingestion pipeline a command or the worker runs, built from settings: in this process
(`ingest.IngestPipeline`) or on Ray (`ingest.ray_engine.RayIngestPipeline`). Either way the
calling process commits, so it stays the data directory's single writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline
from ingest.ray_engine import RayIngestPipeline
from ingest.sandbox import make_extractor
from ragsvc.settings import Settings

Engine = Literal["local", "ray"]


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    return Chunker(
        embedder,
        max_tokens=settings.chunk_max_tokens or None,
        overlap=settings.chunk_overlap_tokens,
    )


def make_pipeline(
    settings: Settings,
    catalog: Catalog,
    embedder: Embedder,
    *,
    engine: Engine | None = None,
    pool_chunks: int | None = None,
    lookahead: int = 256,
    on_batch: Callable[[int, float], None] | None = None,
) -> IngestPipeline | RayIngestPipeline:
    """The pipeline `engine` (default: the `ingest_engine` setting) names. `pool_chunks` and
    `lookahead` shape the local one (default `ingest_pool_chunks`)."""
    if (engine or settings.ingest_engine) == "ray":
        return RayIngestPipeline(
            catalog,
            settings.embedder_config,
            options=settings.ray_options,
            chunk_max_tokens=settings.chunk_max_tokens or None,
            chunk_overlap=settings.chunk_overlap_tokens,
            limits=settings.extraction_limits,
            sandbox=settings.extract_sandbox,
            on_batch=on_batch,
        )
    return IngestPipeline(
        catalog,
        embedder,
        make_chunker(settings, embedder),
        pool_chunks=pool_chunks or settings.ingest_pool_chunks,
        lookahead=lookahead,
        extractor=make_extractor(settings.extraction_limits, sandbox=settings.extract_sandbox),
        on_batch=on_batch,
    )
