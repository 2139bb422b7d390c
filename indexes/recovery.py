"""Recovery: bring in-memory indexes to the store's state, never trusting a file blindly.

    open_state   the saved snapshot when it is usable (same model, dimension, analysis and
                 vector backend), caught up; otherwise a fresh build from the store. Vectors
                 in Milvus are first reconciled with the snapshot's chunks by id
    build        every chunk's stored embedding and text, streamed in one read transaction
    read_change  what changed since a state's sequence number: from the change log, or by
                 comparing chunk ids with the store when the log was pruned past it
    apply        a read change, applied to a state in slices (the caller holds its lock)

Nothing is ever re-embedded to recover: the store holds every chunk's embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from indexes import snapshot
from indexes.lexical import ANALYZER_VERSION, Analyzer, LexicalIndex
from indexes.rows import ChunkData
from indexes.state import ChunkOwners, IndexState, new_build_id
from indexes.store import Store
from indexes.vectors import IndexChoice, MilvusIndex, VectorParams, create, resolve
from indexes.vectors.base import IVF_KINDS
from indexes.vectors.faiss_index import training_rows

logger = logging.getLogger(__name__)
APPLY_SLICE = 512
"""Chunks added per hold of the reader's write lock, so searches interleave with a big catch-up."""


class LexicalSettings(NamedTuple):
    analyzer: Analyzer
    k1: float
    b: float


class PendingChange(NamedTuple):
    seq: int
    removed: np.ndarray
    added: list[ChunkData]
    terms: list[list[list[str]]]
    """The analysed text of every added chunk, batch by batch."""

    @property
    def empty(self) -> bool:
        return not len(self.removed) and not self.added


def build(
    store: Store,
    model_id: str,
    dimension: int,
    index_type: IndexChoice,
    lexical: LexicalSettings,
    params: VectorParams | None = None,
    batch: int = 10_000,
) -> IndexState:
    """A new build of the indexes from every chunk in the store (`auto`: the kind its size
    calls for). The chunks stream through in batches of `batch`, in one read transaction; an
    IVF index first reads them once for its training sample, so no more than one batch and
    that sample are held beside the index (at a million chunks, holding them all took 11 GB)."""
    params = params or VectorParams()
    with store.snapshot() as conn:
        seq = store.change_seq(conn)
        total = store.chunk_total(conn)
        kind = resolve(index_type, total, params)
        training = None
        if kind in IVF_KINDS and params.backend == "faiss" and total:
            rows = training_rows(total, params)
            training = np.empty((len(rows), dimension), dtype=np.float32)
            start = taken = 0
            for data in store.chunk_data(model_id, dimension, None, conn, batch):
                wanted = rows[taken : np.searchsorted(rows, start + len(data.ids))] - start
                training[taken : taken + len(wanted)] = data.vectors[wanted]
                taken += len(wanted)
                start += len(data.ids)
            if taken != len(rows):  # cannot happen inside one transaction
                raise RuntimeError(f"the store changed during a build ({start} of {total} chunks)")
        build_id = new_build_id()
        state = IndexState(
            create(kind, dimension, training, params, build_id, vector_count=total),
            LexicalIndex(lexical.analyzer, k1=lexical.k1, b=lexical.b),
            ChunkOwners(),
            change_seq=seq,
            build_id=build_id,
            model_id=model_id,
        )
        del training
        try:
            for data in store.chunk_data(model_id, dimension, None, conn, batch):
                state.add(data)
        except BaseException:
            state.dense.discard()
            raise
    return state


def open_state(
    store: Store,
    directory: Path,
    model_id: str,
    dimension: int,
    index_type: IndexChoice,
    lexical: LexicalSettings,
    params: VectorParams | None = None,
) -> tuple[IndexState, bool]:
    """(state, whether it differs from the saved snapshot)."""
    params = params or VectorParams()
    manifest = snapshot.read_manifest(directory)
    if (
        manifest is not None
        and manifest.model_id == model_id
        and manifest.dimension == dimension
        and manifest.analyzer_version == ANALYZER_VERSION
        and manifest.vector_backend == params.backend
    ):
        try:
            state = snapshot.load(
                directory, manifest, lexical.analyzer, k1=lexical.k1, b=lexical.b, params=params
            )
        except (OSError, ValueError, LookupError) as error:
            logger.warning(
                "index snapshot %s unusable (%s); rebuilding it", manifest.snapshot, error
            )
        else:
            try:
                if isinstance(state.dense, MilvusIndex):
                    reconcile(store, state, state.dense)
                pending = read_change(store, state)
                for _ in apply(state, pending):
                    pass
            except BaseException:
                state.dense.close()
                raise
            return state, not pending.empty
    elif manifest is not None and manifest.vector_backend != params.backend:
        logger.info(
            "the snapshot's vectors are in %s and vector_backend is %s: building the index "
            "from stored embeddings",
            manifest.vector_backend,
            params.backend,
        )
    return build(store, model_id, dimension, index_type, lexical, params), True


def reconcile(store: Store, state: IndexState, dense: MilvusIndex) -> None:
    """Make a reopened Milvus collection hold exactly the snapshot's chunks.

    The collection is written as changes are applied and the snapshot only when saved, so
    after a crash it may hold chunks added or miss chunks removed since: the first are
    removed (any still in the store come back with the change log), the second added from
    stored embeddings."""
    held = state.owners.held()
    in_milvus = dense.ids()
    extra = np.setdiff1d(in_milvus, held, assume_unique=True)
    missing = np.setdiff1d(held, in_milvus, assume_unique=True)
    if len(extra):
        dense.remove(extra)
    if len(missing):
        with store.snapshot() as conn:
            for data in store.chunk_data(state.model_id, dense.dimension, missing.tolist(), conn):
                dense.add(data.ids, data.vectors, data.document_ids, data.collection_ids)
    if len(extra) or len(missing):
        logger.info(
            "Milvus collection %s reconciled with the snapshot: %d removed, %d added",
            dense.collection,
            len(extra),
            len(missing),
        )


def read_change(store: Store, state: IndexState) -> PendingChange:
    """What changed in the store since `state` was current, with the added chunks' data."""
    with store.snapshot() as conn:
        change = store.changes_since(state.change_seq, conn)
        if change is None:
            seq = store.change_seq(conn)
            in_store = np.fromiter(
                (r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64
            )
            held = state.owners.held()
            removed = np.setdiff1d(held, in_store, assume_unique=True)
            added = np.setdiff1d(in_store, held, assume_unique=True)
        else:
            seq, added, removed = change
            added = np.setdiff1d(added, removed)
        data = (
            list(store.chunk_data(state.model_id, state.dense.dimension, added.tolist(), conn))
            if len(added)
            else []
        )
    analyzer = state.lexical.analyzer
    terms = [[analyzer.terms(text) for text in batch.texts] for batch in data]
    return PendingChange(seq, removed, data, terms)


def apply(state: IndexState, pending: PendingChange) -> Iterator[None]:
    """Apply `pending` to `state`, yielding between slices: a caller holding a lock may drop
    and retake it there. The state's sequence number moves only at the end."""
    state.remove(pending.removed)
    for data, terms in zip(pending.added, pending.terms, strict=True):
        for start in range(0, len(data.ids), APPLY_SLICE):
            end = start + APPLY_SLICE
            piece = ChunkData(
                data.ids[start:end],
                data.document_ids[start:end],
                data.collection_ids[start:end],
                data.texts[start:end],
                data.vectors[start:end],
            )
            state.add(piece, terms[start:end])
            yield
    state.change_seq = max(state.change_seq, pending.seq)
