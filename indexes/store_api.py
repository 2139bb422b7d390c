"""The seam between the catalog and the engine that holds documents: `DocumentStore`, what the
catalog, the ingestion pipeline and the service read from a store, whatever engine it is.

`store.Store` (SQLite) is the implementation today. Above `indexes/`, nothing reaches the store
itself: the `Catalog` answers these reads (`catalog.document(7)`), so a second engine plugs in
here without the service changing. Writes go through `writer.StoreWriter`, one transaction each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from indexes.rows import ChunkEmbedding, ChunkRow, DocumentRow, NewChunk


class DocumentStore(Protocol):
    """Reads of documents, chunks and embeddings, by what they mean rather than by table."""

    def generation(self) -> int:
        """A number that moves with every write of documents or chunks (for caches)."""
        ...

    def collections(self) -> list[str]: ...

    def change_position(self) -> int:
        """The newest change-log sequence number."""
        ...

    def counts(self) -> list[tuple[str, int, int]]:
        """(collection, documents, chunks) of every collection."""
        ...

    def document(self, document_id: int) -> DocumentRow: ...

    def all_documents(self, collections: Sequence[str] | None = None) -> list[DocumentRow]: ...

    def documents_named_under(self, collection: str, prefix: str) -> dict[str, tuple[int, str]]: ...

    def find_by_sha256(self, collection: str, sha256: str) -> int | None: ...

    def document_chunks(self, document_id: int) -> list[ChunkRow]: ...

    def stored_chunks(self, document_id: int) -> list[NewChunk]:
        """The chunks as committed, with the context and hash keying their embeddings."""
        ...

    def neighbour_chunks(self, document_id: int, ordinal: int, radius: int) -> list[ChunkRow]: ...

    def chunk_documents(self) -> dict[int, int]: ...

    def external_ids(self, *, by_chunk: bool = False) -> dict[int, str]: ...

    def cached_hashes(self, model_id: str, text_hashes: Iterable[bytes]) -> set[bytes]: ...

    def texts_missing_embeddings(self, model_id: str) -> list[tuple[bytes, str]]: ...

    def chunks_missing_embeddings(
        self, model_id: str, after_id: int, limit: int
    ) -> tuple[int, list[tuple[bytes, str | None, str]]]:
        """The next chunks after `after_id` with no embedding for `model_id`: (last id read,
        [(text hash, context, text)])."""
        ...

    def vectors_for_chunks(
        self, model_id: str, chunk_ids: Sequence[int] | None, dimension: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def sentences_for_chunks(
        self, model_id: str, chunk_ids: Sequence[int], dimension: int
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]: ...

    def stored_embeddings(
        self, model_id: str, text_hashes: Sequence[bytes], dimension: int
    ) -> dict[bytes, ChunkEmbedding]: ...


class StoreReads:
    """The catalog's side of the seam: each `DocumentStore` read, answered by its store (so the
    service says `catalog.document(7)`, never `catalog.store....`)."""

    model_id: str
    dimension: int

    def documents_store(self) -> DocumentStore:
        """The store these reads go to."""
        raise NotImplementedError

    def generation(self) -> int:
        return self.documents_store().generation()

    def change_position(self) -> int:
        return self.documents_store().change_position()

    def counts(self) -> list[tuple[str, int, int]]:
        return self.documents_store().counts()

    def document(self, document_id: int) -> DocumentRow:
        return self.documents_store().document(document_id)

    def all_documents(self, collections: Sequence[str] | None = None) -> list[DocumentRow]:
        return self.documents_store().all_documents(collections)

    def documents_named_under(self, collection: str, prefix: str) -> dict[str, tuple[int, str]]:
        return self.documents_store().documents_named_under(collection, prefix)

    def find_by_sha256(self, collection: str, sha256: str) -> int | None:
        return self.documents_store().find_by_sha256(collection, sha256)

    def document_chunks(self, document_id: int) -> list[ChunkRow]:
        return self.documents_store().document_chunks(document_id)

    def stored_chunks(self, document_id: int) -> list[NewChunk]:
        return self.documents_store().stored_chunks(document_id)

    def neighbour_chunks(self, document_id: int, ordinal: int, radius: int) -> list[ChunkRow]:
        return self.documents_store().neighbour_chunks(document_id, ordinal, radius)

    def chunk_documents(self) -> dict[int, int]:
        return self.documents_store().chunk_documents()

    def external_ids(self, *, by_chunk: bool = False) -> dict[int, str]:
        return self.documents_store().external_ids(by_chunk=by_chunk)

    def cached_hashes(self, model_id: str, text_hashes: Iterable[bytes]) -> set[bytes]:
        return self.documents_store().cached_hashes(model_id, text_hashes)

    def texts_missing_embeddings(self, model_id: str) -> list[tuple[bytes, str]]:
        return self.documents_store().texts_missing_embeddings(model_id)

    def chunks_missing_embeddings(
        self, model_id: str, after_id: int, limit: int
    ) -> tuple[int, list[tuple[bytes, str | None, str]]]:
        return self.documents_store().chunks_missing_embeddings(model_id, after_id, limit)

    def chunk_vectors(self, chunk_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """chunk id → its stored vector, under the catalog's model."""
        vectors: dict[int, np.ndarray] = {}
        for ids, batch in self.documents_store().vectors_for_chunks(
            self.model_id, chunk_ids, self.dimension
        ):
            vectors.update(zip(ids.tolist(), batch, strict=True))
        return vectors

    def stored_embeddings(self, text_hashes: Sequence[bytes]) -> dict[bytes, ChunkEmbedding]:
        """text hash → its embedding under the catalog's model, as committed."""
        return self.documents_store().stored_embeddings(self.model_id, text_hashes, self.dimension)

    def chunk_sentences(self, chunk_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(spans, vectors) of the chunks whose embedding stored sentence vectors."""
        return self.documents_store().sentences_for_chunks(self.model_id, chunk_ids, self.dimension)
