"""Which vector index a store's settings call for: a new one for a build, or the saved one.

FAISS indexes live in this process and are saved into the snapshot folder. A Milvus index
lives in one Milvus collection per build (`ragsvc_<build id>`), so a rebuild fills a new
collection aside, the swap moves readers to it, and the replaced one is dropped; a snapshot
then only names its collection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexes.vectors.base import IndexType, VectorParams
from indexes.vectors.faiss_index import FaissIndex
from indexes.vectors.milvus_index import MilvusIndex

DenseIndex = FaissIndex | MilvusIndex


def milvus_collection(build_id: str) -> str:
    """The Milvus collection that holds one build's vectors."""
    return f"ragsvc_{build_id}"


def create(
    kind: IndexType,
    dimension: int,
    training: np.ndarray | None,
    params: VectorParams,
    build_id: str,
    vector_count: int | None = None,
) -> DenseIndex:
    """An empty index of `kind` for a new build (`FaissIndex.create` says what `training`
    and `vector_count` are)."""
    if params.backend == "milvus":
        return MilvusIndex(
            params.milvus_uri,
            milvus_collection(build_id),
            dimension,
            token=params.milvus_token,
            index_type=kind,
            params=params,
        )
    return FaissIndex.create(kind, dimension, training, params, vector_count)


def reopen(
    folder: Path,
    backend: str,
    kind: IndexType,
    location: str,
    tombstones: np.ndarray,
    params: VectorParams,
    dimension: int,
) -> DenseIndex:
    """The index a snapshot names: read from its folder (FAISS), or the Milvus collection
    `location`. Raises ValueError when it cannot be read or is not where it should be."""
    if backend == "milvus":
        if params.backend != "milvus":
            raise ValueError("the snapshot's vectors are in Milvus and vector_backend is faiss")
        try:
            return MilvusIndex(
                params.milvus_uri,
                location,
                dimension,
                token=params.milvus_token,
                index_type=kind,
                create=False,
                params=params,
            )
        except LookupError as error:
            raise ValueError(str(error)) from None
    if params.backend != "faiss":
        raise ValueError(f"the snapshot's vectors are in FAISS, not in {params.backend}")
    try:
        return FaissIndex.load(folder / "vectors.faiss", kind, tombstones)
    except RuntimeError as error:  # FAISS reports an unreadable file this way
        raise ValueError(f"unreadable vector index in {folder}: {error}") from None
