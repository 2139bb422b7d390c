"""Vector indexes: the `VectorIndex` contract and its FAISS implementation."""

from indexes.vectors.base import (
    INDEX_CHOICES,
    INDEX_TYPES,
    IndexChoice,
    IndexType,
    VectorIndex,
    VectorParams,
    resolve,
)
from indexes.vectors.faiss_index import FaissIndex

__all__ = [
    "INDEX_CHOICES",
    "INDEX_TYPES",
    "FaissIndex",
    "IndexChoice",
    "IndexType",
    "VectorIndex",
    "VectorParams",
    "resolve",
]
