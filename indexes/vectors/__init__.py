"""Vector indexes: the `VectorIndex` contract, its FAISS and Milvus implementations, and the
choice between them."""

from indexes.vectors.backends import DenseIndex, create, milvus_collection, reopen
from indexes.vectors.base import (
    INDEX_CHOICES,
    INDEX_TYPES,
    IndexChoice,
    IndexType,
    VectorBackend,
    VectorFilter,
    VectorIndex,
    VectorParams,
    resolve,
)
from indexes.vectors.faiss_index import FaissIndex
from indexes.vectors.milvus_index import MilvusIndex

__all__ = [
    "INDEX_CHOICES",
    "INDEX_TYPES",
    "DenseIndex",
    "FaissIndex",
    "IndexChoice",
    "IndexType",
    "MilvusIndex",
    "VectorBackend",
    "VectorFilter",
    "VectorIndex",
    "VectorParams",
    "create",
    "milvus_collection",
    "reopen",
    "resolve",
]
