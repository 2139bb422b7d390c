"""Re-embedding the whole store with another model (`ragsvc rebuild --reembed`), beside the
model it serves:

    1. embed      every chunk text with no embedding for the new model, walking the chunks by
                  id, so texts committed while it runs (the server keeps ingesting with the
                  old model) are met too; each batch is stored as it is done, so an
                  interrupted run resumes where it stopped and embeds nothing twice
    2. build      the new indexes from the new embeddings, aside
    3. switch     the new snapshot saved, then the store's model changed in one transaction
                  that first checks no chunk lacks a new embedding (if one does, back to 1)

Until step 3 the old model's index serves every query; after it, servers follow the store to
the new model and writers of the old model reload (`indexes.ModelChanged`).
"""

from __future__ import annotations

from collections.abc import Callable

from indexes import Catalog, NewChunk
from indexes.state import IndexState
from indexes.vectors import IndexChoice
from ingest.embed.base import Embedder
from ingest.pipeline import embed_texts

SWITCH_ATTEMPTS = 20
"""Rounds of embed, build and switch before giving up (each round embeds only what writers
committed during the last one)."""


def embed_missing(
    catalog: Catalog,
    embedder: Embedder,
    *,
    batch_texts: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Embed and store every chunk text with no embedding for `embedder`'s model, in batches
    stored one by one; `on_batch` gets each batch's count. Returns how many were embedded."""
    done = 0
    after = 0
    while True:
        after, rows = catalog.chunks_missing_embeddings(embedder.model_id, after, batch_texts)
        if not rows:
            return done
        distinct = {h: (context, text) for h, context, text in rows}
        chunks = [
            NewChunk(
                ordinal=0,
                text=text,
                char_start=0,
                char_end=len(text),
                token_count=0,
                text_hash=text_hash,
                context=context,
            )
            for text_hash, (context, text) in distinct.items()
        ]
        embedded = embed_texts(embedder, chunks)
        catalog.store_embeddings(
            embedder.model_id, {c.text_hash: e for c, e in zip(chunks, embedded, strict=True)}
        )
        done += len(chunks)
        if on_batch is not None:
            on_batch(len(chunks))


def count_missing(catalog: Catalog, model_id: str) -> int:
    """Chunk texts with no embedding for `model_id` (what a re-embed still has to do)."""
    total = 0
    after = 0
    while True:
        after, rows = catalog.chunks_missing_embeddings(model_id, after, 10_000)
        if not rows:
            return total
        total += len({h for h, _, _ in rows})


def reembed(
    catalog: Catalog,
    embedder: Embedder,
    model_name: str,
    *,
    index_type: IndexChoice | None = None,
    batch_texts: int = 256,
    on_batch: Callable[[int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> int:
    """Embed what is missing, build aside and switch the store to `embedder`'s model (loaded
    by `model_name`); returns how many texts were embedded (`on_batch` gets each batch's).
    Raises `RuntimeError` when writers keep the switch from happening `SWITCH_ATTEMPTS`
    times."""
    step = on_step or (lambda _: None)
    embedded = 0
    kind = index_type or catalog.index_kind()
    state: IndexState | None = None
    for _ in range(SWITCH_ATTEMPTS):
        step("embedding")
        embedded += embed_missing(catalog, embedder, batch_texts=batch_texts, on_batch=on_batch)
        if state is None:
            step("building the new index aside")
            try:
                state = catalog.build_aside(embedder.model_id, embedder.dimension, kind)
            except LookupError:
                continue  # chunks committed since the walk: embed them too
        step("switching")
        if catalog.switch_model(state, embedder.dimension, model_name):
            return embedded
    if state is not None:
        state.dense.discard()
    raise RuntimeError(
        f"the store kept receiving chunks without {embedder.model_id} embeddings through "
        f"{SWITCH_ATTEMPTS} rounds; run the re-embed again when ingestion is quieter"
    )
