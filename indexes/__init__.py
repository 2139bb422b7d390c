"""The embedded index: SQLite as the source of truth and indexes derived from it.

    store.py     the SQLite schema, migrations and reads; the chunk change log
    writer.py    every mutation of documents, chunks and embeddings (one transaction each)
    reader.py    retrieval over the in-memory indexes, which follow the change log
    recovery.py  building those indexes from the store and catching them up
    snapshot.py  saving and loading them as files, named by a manifest
    lexical.py   the BM25 index;  vectors/  the FAISS index;  fusion.py  modes, filters, fusion
    catalog.py   one data directory: store, writer and reader opened together

Nothing here imports from `ingest` or `ragsvc`.
"""

from indexes.catalog import Catalog, CatalogStats
from indexes.errors import (
    CollectionNotFound,
    DocumentNotFound,
    IndexesError,
    ModelChanged,
    ModelMismatch,
    NotFound,
    SchemaTooNew,
    StoreMissing,
)
from indexes.fusion import SearchFilter
from indexes.reader import SearchHit
from indexes.rows import ChunkEmbedding, ChunkRow, DocumentRow, NewChunk, NewDocument
from indexes.writer import CommitResult

__all__ = [
    "Catalog",
    "CatalogStats",
    "ChunkEmbedding",
    "ChunkRow",
    "CollectionNotFound",
    "CommitResult",
    "DocumentNotFound",
    "DocumentRow",
    "IndexesError",
    "ModelChanged",
    "ModelMismatch",
    "NewChunk",
    "NewDocument",
    "NotFound",
    "SchemaTooNew",
    "SearchFilter",
    "SearchHit",
    "StoreMissing",
]
