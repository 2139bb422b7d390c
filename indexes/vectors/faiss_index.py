"""FAISS vector index: flat and HNSW under `IndexIDMap2`, IVF on its own ids.

Flat is exact. IVF (`IndexIVFFlat`, or `IndexIVFScalarQuantizer` with one byte per dimension
for `ivf_sq8`, with a hash-table direct map) holds chunk ids itself, so
it removes vectors in place and takes filters inside the search (an id selector over the
lists it probes, widening the probe until k allowed vectors are found). HNSW cannot remove
vectors, so a removed id becomes a *tombstone*: it is no longer counted or returned, and
searches look wider by the number of tombstones; the vectors go at the next rebuild, and a
filter is applied to a widening search. IVF derives `nlist` and `nprobe` from the number of
vectors it is trained on unless `VectorParams` sets them. Snapshots from before native IVF
(IVF under `IndexIDMap2`) still load and behave as they did (tombstones).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexes.vectors.base import IVF_KINDS, IndexType, VectorFilter, VectorParams

SMALL_SEARCH = 20
"""Searches of fewer queries than this run on the calling thread alone: OpenMP threads
spinning for a few vectors' worth of work only take the cores from the query encoder."""
EXACT_AMONG = 4096
"""A filter on HNSW that allows at most this many vectors is scored exactly over them (a
graph search would visit mostly vectors it must drop); a wider one searches the graph wider,
and scores the allowed ones exactly if that still finds fewer than k."""
TRAINING_PER_LIST = 64
"""Training vectors per IVF list (k-means needs about 39; more only costs time)."""


def ivf_lists(vector_count: int) -> int:
    """`nlist` for IVF: about 4·sqrt(n), with at least 39 training vectors per list."""
    return max(1, min(int(4 * math.sqrt(vector_count)), vector_count // 39))


def ivf_probes(nlist: int) -> int:
    """Lists a search probes: 32 (all of them when there are fewer). Measured on SciFact-like
    vectors (`benchmarks/bench_index.py`): recall@10 0.953 at 100,000 vectors (nlist 1,264),
    0.994 at 1,000,000 (nlist 4,000) with a one-query p50 of 1.6 ms; probing a fixed share
    of the lists instead (1/32) cost 5 ms there for recall it did not need."""
    return max(1, min(nlist, 32))


def training_rows(vector_count: int, params: VectorParams) -> np.ndarray:
    """The rows (ascending) of `vector_count` vectors that train an IVF index: a fixed random
    sample of `TRAINING_PER_LIST` per list, or every row when there are not that many. A
    build that streams its vectors keeps only these."""
    nlist = params.ivf_nlist or ivf_lists(vector_count)
    if vector_count <= nlist * TRAINING_PER_LIST:
        return np.arange(vector_count)
    rows = np.random.default_rng(0).choice(vector_count, nlist * TRAINING_PER_LIST, replace=False)
    return np.sort(rows)


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
        self._owner = index  # the proxy that owns the C++ index (and its quantizer)
        self._index: Any = faiss.downcast_index(index)
        self._ivf: Any = self._index if isinstance(self._index, faiss.IndexIVF) else None
        """The index itself when it is a native IVF (its own ids, in-place removal)."""
        self.index_type: IndexType = index_type
        self.dimension = dimension
        self.tombstones = (
            np.zeros(0, dtype=np.int64) if tombstones is None else np.unique(tombstones)
        )

    @classmethod
    def create(
        cls,
        index_type: IndexType,
        dimension: int,
        training: np.ndarray | None = None,
        params: VectorParams | None = None,
        vector_count: int | None = None,
    ) -> FaissIndex:
        """An empty index; IVF is trained on `training` (flat is used when there are too few
        vectors to train it). `vector_count` is how many vectors the index is built for, when
        `training` is already the sample `training_rows` chose from them."""
        params = params or VectorParams()
        if index_type in IVF_KINDS and (training is None or len(training) == 0):
            index_type = "flat"
        if index_type in IVF_KINDS:
            assert training is not None
            nlist = params.ivf_nlist or ivf_lists(vector_count or len(training))
            quantizer = faiss.IndexFlatIP(dimension)
            ivf: Any = (
                faiss.IndexIVFScalarQuantizer(
                    quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit,
                    faiss.METRIC_INNER_PRODUCT,
                )
                if index_type == "ivf_sq8"
                else faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
            )  # fmt: skip
            sample = training
            if vector_count is None and len(training) > nlist * TRAINING_PER_LIST:
                sample = training[training_rows(len(training), params)]
            ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
            ivf.nprobe = params.ivf_nprobe or ivf_probes(nlist)
            return cls(ivf, index_type, dimension)
        spec = "IDMap2,Flat" if index_type == "flat" else f"IDMap2,HNSW{params.hnsw_m}"
        index: Any = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
        if index_type == "hnsw":
            inner: Any = faiss.downcast_index(index.index)
            inner.hnsw.efConstruction = params.hnsw_ef_construction
            inner.hnsw.efSearch = params.hnsw_ef_search
        return cls(index, index_type, dimension)

    @classmethod
    def load(
        cls, path: Path, index_type: IndexType, tombstones: np.ndarray | None = None
    ) -> FaissIndex:
        index = faiss.read_index(str(path))
        return cls(index, index_type, index.d, tombstones)

    @property
    def spec(self) -> str:
        if self._ivf is not None:
            codes = "SQ8" if isinstance(self._ivf, faiss.IndexIVFScalarQuantizer) else "Flat"
            return f"IVF{self._ivf.nlist},{codes} nprobe={self._ivf.nprobe}"
        inner: Any = faiss.downcast_index(self._index.index)
        if self.index_type == "ivf":
            return f"IDMap2,IVF{inner.nlist},Flat nprobe={inner.nprobe}"
        if self.index_type == "hnsw":
            return f"IDMap2,HNSW{inner.hnsw.nb_neighbors(1)} efSearch={inner.hnsw.efSearch}"
        return "IDMap2,Flat"

    @property
    def nprobe(self) -> int | None:
        """Lists an IVF search probes (None for other kinds)."""
        return None if self._ivf is None else int(self._ivf.nprobe)

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change how the index searches (IVF lists probed, HNSW candidate list)."""
        if nprobe is not None and self._ivf is not None:
            self._ivf.nprobe = max(1, min(nprobe, self._ivf.nlist))
        if ef_search is not None and self.index_type == "hnsw":
            inner: Any = faiss.downcast_index(self._index.index)
            inner.hnsw.efSearch = ef_search

    @property
    def supports_remove(self) -> bool:
        """Whether `remove` frees vectors (flat, IVF) rather than leaving tombstones."""
        return self.index_type == "flat" or self._ivf is not None

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self.tombstones)

    def add(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        document_ids: np.ndarray | None = None,
        collection_ids: np.ndarray | None = None,
    ) -> None:
        """Add vectors (owners are not needed: filters arrive as bitmaps)."""
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if self._ivf is not None:
            self._ivf.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
            return
        if self.supports_remove:
            self._index.remove_ids(ids)
            return
        held = np.intersect1d(self._all_ids(), ids)
        self.tombstones = np.union1d(self.tombstones, held)

    def _all_ids(self) -> np.ndarray:
        if self._ivf is not None:
            lists: Any = self._ivf.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(self._ivf.nlist)
                if lists.list_size(i)
            ]
            return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
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
        if self._ivf is not None:
            assert allowed_ids is not None
            allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            return self._search_ivf(queries, k, faiss.IDSelectorBatch(allowed), len(allowed))
        if self.index_type == "flat":
            # Exact: the flat scan skips ids outside the selector.
            assert allowed_ids is not None
            params: Any = faiss.SearchParameters(sel=_selector(allowed_ids))  # type: ignore[call-arg]
            scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        return self._search_post_filtered(queries, k, allowed_ids)

    def search_filtered(
        self, queries: np.ndarray, k: int, where: VectorFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.search_bitmap(queries, k, where.bitmap)

    def close(self) -> None:
        """Nothing to let go of: the index is memory this object owns."""

    def discard(self) -> None:
        """Nothing outside this process to delete."""

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
        if self._ivf is not None:
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            return self._search_ivf(queries, k, selector, int(np.unpackbits(bitmap).sum()))
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

    def _search_ivf(
        self, queries: np.ndarray, k: int, selector: Any, allowed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The filter inside the IVF search; a query that finds fewer than k allowed vectors
        in the lists it probed probes four times as many, up to every list."""
        ivf = self._ivf
        wanted = min(k, allowed, int(ivf.ntotal))
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, query in enumerate(queries):
            probes = ivf.nprobe
            while True:
                params: Any = faiss.SearchParametersIVF(sel=selector, nprobe=probes)  # type: ignore[call-arg]
                scores, ids = ivf.search(query[None, :], k, params=params)
                if int((ids[0] >= 0).sum()) >= wanted or probes >= ivf.nlist:
                    break
                probes = min(ivf.nlist, probes * 4)
            out_scores[row], out_ids[row] = scores[0], ids[0]
        return out_scores, out_ids

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
            if allowed is not None and len(allowed) <= EXACT_AMONG:
                found_scores, found_ids = self._exact_among(query, k, allowed)
                out_ids[row, : len(found_ids)] = found_ids
                out_scores[row, : len(found_scores)] = found_scores
                continue
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
                if len(found_ids) >= wanted:
                    break
                if width >= total or (allowed is not None and width >= EXACT_AMONG):
                    # A graph search misses part of a small allowed set: score it exactly.
                    found_scores, found_ids = self._exact_among(query, k, allowed)
                    break
                width = min(total, width * 4)
            out_ids[row, : len(found_ids)] = found_ids
            out_scores[row, : len(found_scores)] = found_scores
        return out_scores, out_ids

    def _exact_among(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact top k among `allowed` (or every live id), by reconstructed vectors."""
        candidates = self.ids() if allowed is None else allowed
        if len(self.tombstones):
            candidates = candidates[~np.isin(candidates, self.tombstones)]
        candidates = np.intersect1d(candidates, self._all_ids())
        if not len(candidates):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        vectors = np.asarray(self._index.reconstruct_batch(candidates), dtype=np.float32)
        scores = vectors @ query
        order = np.argsort(-scores)[:k]
        return scores[order].astype(np.float32), candidates[order]

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
