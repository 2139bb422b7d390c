"""The contract every vector index meets: ids are chunk ids, vectors are L2-normalised float32,
and a higher score is a better match (inner product, i.e. cosine similarity)."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

IndexType = Literal["flat", "hnsw", "ivf"]
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "hnsw", "ivf")


class VectorIndex(Protocol):
    index_type: IndexType
    dimension: int

    @property
    def spec(self) -> str:
        """A string that says how the index is built (for the manifest and `stats`)."""
        ...

    @property
    def supports_remove(self) -> bool: ...

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def ids(self) -> np.ndarray:
        """Every id held, as int64."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids, each shaped (n_queries, k); missing results have id -1."""
        ...

    def serialize(self) -> bytes:
        """The index as bytes, in the format `load` reads from a file."""
        ...
