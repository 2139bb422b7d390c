"""FAISS vector index: `IndexIDMap2` over a flat, HNSW or IVF inner-product index.

Flat is exact and the default. HNSW and IVF are approximate and cannot remove vectors in
place (`supports_remove` is False), so the catalog rebuilds them from stored embeddings
after a deletion. IVF derives `nlist` and `nprobe` from the number of vectors it is trained on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexes.vectors.base import IndexType

HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 80


def ivf_lists(vector_count: int) -> int:
    """`nlist` for IVF: about 4·sqrt(n), with at least 39 training vectors per list."""
    return max(1, min(int(4 * math.sqrt(vector_count)), vector_count // 39))


def ivf_probes(nlist: int) -> int:
    return max(1, min(nlist, max(8, nlist // 8)))


class FaissIndex:
    """A `VectorIndex` backed by FAISS."""

    def __init__(self, index: Any, index_type: IndexType, dimension: int) -> None:
        # Any: FAISS's SWIG stubs know neither the IDMap2 wrapper nor its downcast inner index.
        self._index: Any = index
        self.index_type: IndexType = index_type
        self.dimension = dimension

    @classmethod
    def create(
        cls, index_type: IndexType, dimension: int, training: np.ndarray | None = None
    ) -> FaissIndex:
        """An empty index; IVF is trained on `training` (flat is used when there is none)."""
        if index_type == "ivf" and (training is None or len(training) == 0):
            index_type = "flat"
        if index_type == "flat":
            spec = "IDMap2,Flat"
        elif index_type == "hnsw":
            spec = f"IDMap2,HNSW{HNSW_M}"
        else:
            assert training is not None
            spec = f"IDMap2,IVF{ivf_lists(len(training))},Flat"
        index: Any = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
        inner: Any = faiss.downcast_index(index.index)
        if index_type == "hnsw":
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        elif index_type == "ivf":
            assert training is not None
            index.train(np.ascontiguousarray(training, dtype=np.float32))
            inner.nprobe = ivf_probes(inner.nlist)
        return cls(index, index_type, dimension)

    @classmethod
    def load(cls, path: Path, index_type: IndexType) -> FaissIndex:
        index = faiss.read_index(str(path))
        return cls(index, index_type, index.d)

    @property
    def spec(self) -> str:
        inner: Any = faiss.downcast_index(self._index.index)
        if self.index_type == "ivf":
            return f"IDMap2,IVF{inner.nlist},Flat nprobe={inner.nprobe}"
        if self.index_type == "hnsw":
            return f"IDMap2,HNSW{HNSW_M} efSearch={inner.hnsw.efSearch}"
        return "IDMap2,Flat"

    @property
    def supports_remove(self) -> bool:
        return self.index_type == "flat"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: np.ndarray) -> None:
        if not self.supports_remove:
            raise NotImplementedError(f"a {self.index_type} index cannot remove vectors in place")
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if allowed_ids is None:
            scores, ids = self._index.search(queries, k)
            return scores, ids
        allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
        if self.index_type == "flat":
            # Exact: the flat scan skips ids outside the selector.
            params: Any = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
            scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        return self._search_post_filtered(queries, k, allowed)

    def _search_post_filtered(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # IVF rejects a selector through IDMap2 and HNSW loses recall with one, so search
        # wider and keep allowed ids, widening until k are found or the index is exhausted.
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        total = len(self)
        for row, query in enumerate(queries):
            wanted = min(k, len(allowed))
            width = min(total, max(4 * k, 64))
            while True:
                scores, ids = self._index.search(query[None, :], width)
                keep = np.isin(ids[0], allowed)
                found_ids, found_scores = ids[0][keep][:k], scores[0][keep][:k]
                if len(found_ids) >= wanted or width >= total:
                    break
                width = min(total, width * 4)
            out_ids[row, : len(found_ids)] = found_ids
            out_scores[row, : len(found_scores)] = found_scores
        return out_scores, out_ids

    def serialize(self) -> bytes:
        return bytes(faiss.serialize_index(self._index))
