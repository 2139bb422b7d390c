"""Vector indexes: the `VectorIndex` contract and its FAISS implementation."""

from indexes.vectors.base import INDEX_TYPES, IndexType, VectorIndex
from indexes.vectors.faiss_index import FaissIndex

__all__ = ["INDEX_TYPES", "FaissIndex", "IndexType", "VectorIndex"]
