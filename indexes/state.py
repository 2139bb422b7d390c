"""What a process holds in memory of the indexes derived from the store.

`IndexState` is one consistent picture: the vector index, the lexical index and the owner of
every chunk (document and collection), all reflecting the store as of one change-log sequence
number. `apply` moves it forward by a change read from the log. A state is mutated only by
the reader that owns it, under its write lock.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from indexes.lexical import LexicalIndex
from indexes.rows import ChunkData
from indexes.vectors import DenseIndex


def new_build_id() -> str:
    """Names one build of the indexes from the store; saves of it keep the name."""
    return secrets.token_hex(8)


class ChunkOwners:
    """Document and collection of every chunk held, in arrays indexed by chunk id (-1: none).

    Chunk ids only grow and are dense, so a filter on collections or documents becomes one
    vectorised comparison instead of a query that lists chunk ids."""

    def __init__(self) -> None:
        self.documents = np.full(0, -1, dtype=np.int64)
        self.collections = np.full(0, -1, dtype=np.int64)

    @property
    def id_space(self) -> int:
        """One more than the largest chunk id these arrays can hold."""
        return len(self.documents)

    def set(self, ids: np.ndarray, documents: np.ndarray, collections: np.ndarray) -> None:
        if not len(ids):
            return
        needed = int(ids.max()) + 1
        if needed > len(self.documents):
            size = max(needed, int(len(self.documents) * 1.5) + 1024)
            for name in ("documents", "collections"):
                old = getattr(self, name)
                grown = np.full(size, -1, dtype=np.int64)
                grown[: len(old)] = old
                setattr(self, name, grown)
        self.documents[ids] = documents
        self.collections[ids] = collections

    def clear(self, ids: np.ndarray) -> None:
        ids = ids[ids < len(self.documents)]
        self.documents[ids] = -1
        self.collections[ids] = -1

    def held(self) -> np.ndarray:
        return np.flatnonzero(self.documents >= 0).astype(np.int64)


class IndexState:
    """The derived indexes at one change-log sequence number."""

    def __init__(
        self,
        dense: DenseIndex,
        lexical: LexicalIndex,
        owners: ChunkOwners,
        *,
        change_seq: int,
        build_id: str,
        model_id: str,
    ) -> None:
        self.dense = dense
        self.lexical = lexical
        self.owners = owners
        self.change_seq = change_seq
        self.build_id = build_id
        self.model_id = model_id
        self.version = 0
        """Bumped by every change applied, so caches keyed on it are never stale."""

    def add(self, data: ChunkData, terms: Sequence[list[str]] | None = None) -> None:
        """Add chunks this state does not hold yet (ids above every id it holds); `terms`
        are their texts already analysed, when the caller did that outside its lock."""
        if not len(data.ids):
            return
        self.dense.add(data.ids, data.vectors, data.document_ids, data.collection_ids)
        self.lexical.add(data.ids, data.texts, terms=terms)
        self.owners.set(data.ids, data.document_ids, data.collection_ids)
        self.version += 1

    def remove(self, ids: np.ndarray) -> None:
        ids = ids[(ids < self.owners.id_space)]
        ids = ids[self.owners.documents[ids] >= 0] if len(ids) else ids
        if not len(ids):
            return
        self.dense.remove(ids)
        self.lexical.remove(ids)
        self.owners.clear(ids)
        self.version += 1

    def __len__(self) -> int:
        return len(self.dense)
