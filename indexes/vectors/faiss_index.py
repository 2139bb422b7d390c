"""FAISS vector index: `IndexIDMap2` over a flat, HNSW or IVF inner-product index.

Flat is exact and the default. HNSW and IVF are approximate and cannot remove vectors in
place through the id map, so a removed id becomes a *tombstone*: it is no longer counted or
returned, and searches look wider by the number of tombstones. The vectors go at the next
rebuild from the store. IVF derives `nlist` and `nprobe` from the number of vectors it is
trained on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexes.vectors.base import IndexType

SMALL_SEARCH = 20
"""Searches of fewer queries than this run on the calling thread alone: OpenMP threads
spinning for a few vectors' worth of work only take the cores from the query encoder."""
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

    def __init__(
        self,
        index: Any,
        index_type: IndexType,
        dimension: int,
        tombstones: np.ndarray | None = None,
    ) -> None:
        # Any: FAISS's SWIG stubs know neither the IDMap2 wrapper nor its downcast inner index.
        self._index: Any = index
        self.index_type: IndexType = index_type
        self.dimension = dimension
        self.tombstones = (
            np.zeros(0, dtype=np.int64) if tombstones is None else np.unique(tombstones)
        )

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
    def load(
        cls, path: Path, index_type: IndexType, tombstones: np.ndarray | None = None
    ) -> FaissIndex:
        index = faiss.read_index(str(path))
        return cls(index, index_type, index.d, tombstones)

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
        """Whether `remove` frees vectors (flat) rather than leaving tombstones."""
        return self.index_type == "flat"

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self.tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if self.supports_remove:
            self._index.remove_ids(ids)
            return
        held = np.intersect1d(self._all_ids(), ids)
        self.tombstones = np.union1d(self.tombstones, held)

    def _all_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def ids(self) -> np.ndarray:
        held = self._all_ids()
        if len(self.tombstones):
            held = held[~np.isin(held, self.tombstones)]
        return held

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids, each shaped (n_queries, k); missing results have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        with _threads_for(len(queries)):
            return self._search(queries, k, allowed_ids)

    def _search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed_ids is None and not len(self.tombstones):
            scores, ids = self._index.search(queries, k)
            return scores, ids
        if self.index_type == "flat":
            # Exact: the flat scan skips ids outside the selector.
            assert allowed_ids is not None
            params: Any = faiss.SearchParameters(sel=_selector(allowed_ids))  # type: ignore[call-arg]
            scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        return self._search_post_filtered(queries, k, allowed_ids)

    def search_bitmap(
        self, queries: np.ndarray, k: int, bitmap: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search among the ids whose bit is set in `bitmap` (uint8, little-endian bit order:
        id i is bit i % 8 of byte i // 8): exact on flat indexes, wider-and-filtered on the
        others."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        with _threads_for(len(queries)):
            return self._search_bitmap(queries, k, np.ascontiguousarray(bitmap, dtype=np.uint8))

    def _search_bitmap(
        self, queries: np.ndarray, k: int, bitmap: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        bits = len(bitmap) * 8
        if self.index_type == "flat":
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params: Any = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
            scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        held = self.ids()
        inside = held < bits
        members = held[inside]
        members = members[(bitmap[members >> 3] >> (members & 7)) & 1 == 1]
        return self._search_post_filtered(queries, k, members)

    def _search_post_filtered(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        # IVF rejects a selector through IDMap2 and HNSW loses recall with one, so search
        # wider and keep allowed ids, widening until k are found or the index is exhausted.
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        total = int(self._index.ntotal)
        live = len(self)
        for row, query in enumerate(queries):
            wanted = min(k, live if allowed is None else len(allowed))
            width = min(total, max(4 * k, 64) + len(self.tombstones))
            while True:
                scores, ids = self._index.search(query[None, :], width)
                keep = ids[0] >= 0
                if allowed is not None:
                    keep &= np.isin(ids[0], allowed)
                if len(self.tombstones):
                    keep &= ~np.isin(ids[0], self.tombstones)
                found_ids, found_scores = ids[0][keep][:k], scores[0][keep][:k]
                if len(found_ids) >= wanted or width >= total:
                    break
                width = min(total, width * 4)
            out_ids[row, : len(found_ids)] = found_ids
            out_scores[row, : len(found_scores)] = found_scores
        return out_scores, out_ids

    def serialize(self) -> bytes:
        return bytes(faiss.serialize_index(self._index))

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(int(chunk_id)), dtype=np.float32)


@contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One OpenMP thread (this thread's setting) for a search of a few queries."""
    if queries >= SMALL_SEARCH:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _selector(allowed_ids: np.ndarray) -> Any:
    return faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
