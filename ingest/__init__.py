"""Ingestion: extract → chunk → embed, writing complete documents into an `indexes.Catalog`.

The names below load on first use, so a process that only extracts (the extraction sandbox)
does not pay for numpy, FAISS and the model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.chunking import Chunker
    from ingest.embed import (
        DEFAULT_MODEL,
        Embedder,
        EmbedderConfig,
        load_embedder,
        load_query_embedder,
    )
    from ingest.errors import (
        DocumentError,
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

_HOMES = {
    "ingest.chunking": ["Chunker"],
    "ingest.embed": [
        "DEFAULT_MODEL",
        "Embedder",
        "EmbedderConfig",
        "load_embedder",
        "load_query_embedder",
    ],
    "ingest.errors": [
        "EmbedderUnavailable",
        "EmptyDocument",
        "EncryptedDocument",
        "ExtractionFailed",
        "DocumentError",
        "IngestError",
        "InputNotFound",
        "InvalidRecord",
        "UnsupportedType",
    ],
    "ingest.pipeline": ["DocumentOutcome", "IngestPipeline", "IngestReport"],
    "ingest.reembed": ["reembed"],
    "ingest.sources": ["FileSource", "RecordSource", "Source", "file_sources", "jsonl_sources"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MODEL",
    "Chunker",
    "DocumentError",
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
