"""Milvus as a vector index (pymilvus): the `VectorIndex` contract over a Milvus collection.

The same contract as the FAISS index: ids are chunk ids, vectors are L2-normalised float32,
scores are inner products, removal is in place, and a filter returns k vectors whenever k are
allowed. The collection holds each vector with its chunk id (the primary key) and, when given,
its document and collection ids, so that filters can be Milvus expressions
(`document in [...]`); a filter by chunk ids becomes `id in [...]`. Milvus is derived data,
like the FAISS file: everything needed to rebuild it lives in SQLite.

`uri` is a Milvus server (`http://host:19530`, with `token` for a cluster) or a milvus-lite
file (`./vectors.db`), served by a gRPC server thread in this process (tests, laptops). Writes are
made with strong consistency, so a search sees every add and removal before it.

Two messages milvus-lite and pymilvus log on every successful use are noise and are dropped
(`_KnownNoise`): the embedded server's gRPC "Method not implemented" error with its traceback
(the client probes `AllocTimestamp`, which milvus-lite does not serve) and the client's warning
that it then uses its own timestamp. Everything else they log is kept.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from indexes.vectors.base import IndexType, VectorFilter, VectorParams

INSERT_BATCH = 5_000
"""Rows per insert: well inside the server's message size for 384-dimensional float32."""
ID_BATCH = 10_000
"""Ids per delete or per `id in [...]` filter expression."""
FLUSH_AFTER = 1_000
"""An add of at least this many vectors is flushed at once (see `flush`)."""
MAX_TOP_K = 16_384
"""The most results Milvus returns for one query."""
_MILVUS_INDEX = {"flat": "FLAT", "ivf": "IVF_FLAT", "ivf_sq8": "IVF_SQ8", "hnsw": "HNSW"}
IVF_LISTS = 1024
"""Lists of a Milvus IVF_FLAT index when `ivf_nlist` leaves it derived."""


class _KnownNoise(logging.Filter):
    """Drops the log records of a successful milvus-lite session that only look alarming."""

    NOISE = ("Method not implemented", "failed to get mvccTs")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


for _name in ("grpc._server", "pymilvus.client.iterator.query_iterator"):
    logging.getLogger(_name).addFilter(_KnownNoise())

_LITE_USERS: Counter[str] = Counter()
"""Open indexes per milvus-lite file: its server thread is stopped when the last one closes."""
_LITE_LOCK = threading.Lock()


class MilvusIndex:
    """A `VectorIndex` on one Milvus collection."""

    def __init__(
        self,
        uri: str,
        collection: str,
        dimension: int,
        *,
        token: str = "",
        index_type: IndexType = "flat",
        create: bool = True,
        params: VectorParams | None = None,
    ) -> None:
        from pymilvus import MilvusClient

        self.uri = uri
        self.collection = collection
        self.dimension = dimension
        self.index_type: IndexType = index_type
        self._params = params or VectorParams()
        self._count: int | None = None
        self._lite = None if "://" in uri else os.path.abspath(uri)
        self._client = MilvusClient(uri, token=token) if token else MilvusClient(uri)
        if self._lite is not None:
            with _LITE_LOCK:
                _LITE_USERS[self._lite] += 1
        self._closed = False
        try:
            if not self._client.has_collection(collection):
                if not create:
                    raise LookupError(f"no Milvus collection {collection!r} at {uri}")
                self._create()
            else:
                self._client.load_collection(collection)
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("document", DataType.INT64)
        schema.add_field("collection", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        params = self._client.prepare_index_params()
        kind = _MILVUS_INDEX[self.index_type]
        extra: dict[str, Any] = {}
        if kind in ("IVF_FLAT", "IVF_SQ8"):
            extra = {"nlist": self._params.ivf_nlist or IVF_LISTS}
        elif kind == "HNSW":
            extra = {"M": self._params.hnsw_m, "efConstruction": self._params.hnsw_ef_construction}
        params.add_index(field_name="vector", index_type=kind, metric_type="IP", params=extra)
        self._client.create_collection(
            self.collection, schema=schema, index_params=params, consistency_level="Strong"
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        if self._lite is None:
            return
        with _LITE_LOCK:
            _LITE_USERS[self._lite] -= 1
            last = _LITE_USERS[self._lite] <= 0
            if last:
                del _LITE_USERS[self._lite]
        if last:
            # milvus-lite serves a file from a gRPC server thread in this process: stop it
            # when no index uses it any more, rather than at interpreter exit.
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self._lite)

    def drop(self) -> None:
        """Remove the collection from Milvus (a rebuild starts from nothing)."""
        self._client.drop_collection(self.collection)
        self._count = 0

    def discard(self) -> None:
        """Drop the collection (the build it held was replaced) and close."""
        try:
            self.drop()
        finally:
            self.close()

    @property
    def spec(self) -> str:
        return f"Milvus {_MILVUS_INDEX[self.index_type]} {self.collection} at {self.uri}"

    @property
    def supports_remove(self) -> bool:
        return True

    @property
    def tombstones(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        if self._count is None:  # counted once after each change, not per search
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def add(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        document_ids: np.ndarray | None = None,
        collection_ids: np.ndarray | None = None,
    ) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self._count = None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        documents = np.zeros(len(ids), np.int64) if document_ids is None else document_ids
        collections = np.zeros(len(ids), np.int64) if collection_ids is None else collection_ids
        for start in range(0, len(ids), INSERT_BATCH):
            end = start + INSERT_BATCH
            self._client.upsert(
                self.collection,
                [
                    {"id": int(i), "document": int(d), "collection": int(c), "vector": v}
                    for i, d, c, v in zip(
                        ids[start:end].tolist(),
                        np.asarray(documents[start:end]).tolist(),
                        np.asarray(collections[start:end]).tolist(),
                        vectors[start:end],
                        strict=True,
                    )
                ],
            )

        if len(ids) >= FLUSH_AFTER:
            self.flush()

    def flush(self) -> None:
        """Seal what was added into indexed segments. Until then Milvus searches new rows by
        brute force in its growing segment: on milvus-lite, 20,000 unflushed vectors took
        570 ms a query, and 15 ms once flushed."""
        self._client.flush(self.collection)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            self._count = None
        for start in range(0, len(ids), ID_BATCH):
            self._client.delete(self.collection, ids=ids[start : start + ID_BATCH].tolist())

    def ids(self) -> np.ndarray:
        found: list[int] = []
        iterator = self._client.query_iterator(
            self.collection, batch_size=ID_BATCH, filter="", output_fields=["id"]
        )
        try:
            while True:
                page = iterator.next()
                if not page:
                    break
                found.extend(int(row["id"]) for row in page)
        finally:
            iterator.close()
        return np.sort(np.asarray(found, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if allowed_ids is None:
            return self._search(queries, k, "")
        allowed = np.asarray(allowed_ids, dtype=np.int64)
        if len(allowed) <= ID_BATCH:
            return self._search(queries, k, _id_filter(allowed))
        # A long id list: search each slice of it and keep the best k of all.
        parts = [self._search(queries, k, f) for f in _id_filters(allowed)]
        return _best(parts, k)

    def search_filtered(
        self, queries: np.ndarray, k: int, where: VectorFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """The filter as an expression over the owner fields, pushed into Milvus's search;
        a filter that cannot be said that way goes as chunk ids."""
        if where.expression:
            return self.search_expression(queries, k, where.expression)
        return self.search_bitmap(queries, k, where.bitmap)

    def search_bitmap(
        self, queries: np.ndarray, k: int, bitmap: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search among the ids whose bit is set (the reader's filter masks)."""
        bits = np.unpackbits(np.asarray(bitmap, dtype=np.uint8), bitorder="little")
        return self.search(queries, k, np.flatnonzero(bits).astype(np.int64))

    def search_expression(
        self, queries: np.ndarray, k: int, expression: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search with a Milvus filter expression over `document` and `collection`."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        return self._search(queries, k, expression)

    def _search(
        self, queries: np.ndarray, k: int, expression: str
    ) -> tuple[np.ndarray, np.ndarray]:
        limit = min(k, MAX_TOP_K)
        results = self._client.search(
            self.collection,
            data=list(queries),
            limit=limit,
            filter=expression,
            search_params={"params": self._search_params(limit)},
        )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits[:limit]):
                ids[row, column] = int(hit["id"])
                scores[row, column] = float(hit["distance"])
        return scores, ids

    def _search_params(self, limit: int) -> dict[str, int]:
        if self.index_type in ("ivf", "ivf_sq8"):
            lists = self._params.ivf_nlist or IVF_LISTS
            return {"nprobe": self._params.ivf_nprobe or min(lists, 32)}
        if self.index_type == "hnsw":
            return {"ef": max(self._params.hnsw_ef_search, limit)}  # Milvus needs ef >= limit
        return {}

    def serialize(self) -> bytes:
        raise NotImplementedError("a Milvus index lives in Milvus: it is reopened, not loaded")


def _id_filter(ids: np.ndarray) -> str:
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


def _id_filters(ids: np.ndarray) -> Iterator[str]:
    for start in range(0, len(ids), ID_BATCH):
        yield _id_filter(ids[start : start + ID_BATCH])


def _best(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
