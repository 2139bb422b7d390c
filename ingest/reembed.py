"""Re-embedding the whole store with another model (`ragsvc rebuild --reembed`).

Texts that already have an embedding for the new model are not embedded again; the new
embeddings are stored before the index is rebuilt and swapped, so an interrupted run resumes
where it stopped and the old index serves until the swap.
"""

from __future__ import annotations

from collections.abc import Callable

from indexes import Catalog
from indexes.vectors import IndexType
from ingest.embed.base import Embedder


def reembed(
    catalog: Catalog,
    embedder: Embedder,
    *,
    index_type: IndexType | None = None,
    batch_texts: int = 1024,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Embed every chunk text missing for `embedder`'s model, then rebuild; returns the count."""
    missing = catalog.texts_missing_embeddings(embedder.model_id)
    done = 0
    for start in range(0, len(missing), batch_texts):
        batch = missing[start : start + batch_texts]
        vectors = embedder.embed_documents([text for _, text in batch])
        catalog.store_embeddings(
            embedder.model_id, dict(zip((h for h, _ in batch), vectors, strict=True))
        )
        done += len(batch)
        if on_batch is not None:
            on_batch(done, len(missing))
    catalog.rebuild(index_type, model_id=embedder.model_id, dimension=embedder.dimension)
    return done
