"""The one place the parts are built from settings, for the HTTP service, the worker, the CLI
and the evaluation alike: the catalog, the document and query embedders, the chunker, and the
ingestion pipeline, in this process (`ingest.IngestPipeline`) or on Ray
(`ingest.ray_engine.RayIngestPipeline`). Either way the calling process commits, so it stays
the data directory's single writer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline, load_embedder, load_query_embedder
from ingest.ray_engine import RayIngestPipeline
from ingest.sandbox import make_extractor
from ragsvc.settings import Settings

Engine = Literal["local", "ray"]
logger = logging.getLogger(__name__)


def open_catalog(settings: Settings, embedder: Embedder | None = None, **options: Any) -> Catalog:
    """The data directory's catalog with the index settings; `embedder` names the model the
    store must hold (none: whatever it holds). `options` go to `Catalog.open` (`readonly`,
    `allow_model_change`)."""
    return Catalog.open(
        settings.data_path,
        model_id=embedder.model_id if embedder else None,
        dimension=embedder.dimension if embedder else None,
        index_type=settings.index_type,
        save_interval=settings.index_save_interval,
        lexical_k1=settings.lexical_k1,
        lexical_b=settings.lexical_b,
        vector_params=settings.vector_params,
        **options,
    )


def store_settings(settings: Settings) -> Settings:
    """These settings with the model the data directory's store serves: the one a re-embed
    (`ragsvc rebuild --reembed`) switched it to, when one did, else `embedding_model`."""
    recorded = Catalog.recorded_model(settings.data_path)
    if recorded is None or recorded == settings.embedding_model:
        return settings
    if recorded not in _told:
        _told.add(recorded)
        logger.info(
            "the store was re-embedded with %s (ragsvc rebuild --reembed): using it rather "
            "than embedding_model %s",
            recorded,
            settings.embedding_model,
        )
    return msgspec.structs.replace(settings, embedding_model=recorded)


_told: set[str] = set()


def make_embedder(settings: Settings, *, model: str | None = None) -> Embedder:
    """The document embedder of the store's model, or of `model` (a name or folder) when
    given; loaded once per process."""
    if model is not None:
        chosen = msgspec.structs.replace(settings, embedding_model=model)
        return load_embedder(chosen.embedder_config)
    return load_embedder(store_settings(settings).embedder_config)


def make_query_embedder(settings: Settings) -> Embedder:
    """The query embedder of the store's model: OpenVINO or ONNX Runtime where it can be."""
    return load_query_embedder(store_settings(settings).embedder_config)


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
            store_settings(settings).embedder_config,
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
