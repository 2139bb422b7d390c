"""The embedded index: SQLite as the source of truth and a FAISS index derived from it.

`Catalog` is the entry point: it owns the SQLite `Store`, the vector index and its manifest,
keeps them in agreement on open, and is the single writer path for every mutation.
Nothing here imports from `ingest` or `ragsvc`.
"""

from indexes.catalog import Catalog, CatalogStats, CommitResult, SearchHit
from indexes.errors import (
    CollectionNotFound,
    DocumentNotFound,
    IndexesError,
    ModelMismatch,
    NotFound,
    SchemaTooNew,
    StoreMissing,
    WriterBusy,
)
from indexes.retrieval import SearchFilter
from indexes.store import ChunkRow, DocumentRow, NewChunk, NewDocument

__all__ = [
    "Catalog",
    "CatalogStats",
    "ChunkRow",
    "CollectionNotFound",
    "CommitResult",
    "DocumentNotFound",
    "DocumentRow",
    "IndexesError",
    "ModelMismatch",
    "NewChunk",
    "NewDocument",
    "NotFound",
    "SchemaTooNew",
    "SearchFilter",
    "SearchHit",
    "StoreMissing",
    "WriterBusy",
]
