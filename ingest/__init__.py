"""Ingestion: extract → chunk → embed, writing complete documents into an `indexes.Catalog`."""

from ingest.chunking import Chunker
from ingest.embed import (
    DEFAULT_MODEL,
    Embedder,
    EmbedderConfig,
    load_embedder,
    load_query_embedder,
)
from ingest.errors import (
    EmbedderUnavailable,
    EmptyDocument,
    EncryptedDocument,
    ExtractionFailed,
    IngestError,
    InputNotFound,
    InvalidRecord,
    UnsupportedType,
)
from ingest.pipeline import DocumentOutcome, IngestPipeline, IngestReport
from ingest.reembed import reembed
from ingest.sources import FileSource, RecordSource, Source, file_sources, jsonl_sources

__all__ = [
    "DEFAULT_MODEL",
    "Chunker",
    "DocumentOutcome",
    "Embedder",
    "EmbedderConfig",
    "EmbedderUnavailable",
    "EmptyDocument",
    "EncryptedDocument",
    "ExtractionFailed",
    "FileSource",
    "IngestError",
    "IngestPipeline",
    "IngestReport",
    "InputNotFound",
    "InvalidRecord",
    "RecordSource",
    "Source",
    "UnsupportedType",
    "file_sources",
    "jsonl_sources",
    "load_embedder",
    "load_query_embedder",
    "reembed",
]
