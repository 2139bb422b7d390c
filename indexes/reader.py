"""Reading: retrieval over the in-memory indexes, which follow the store's change log.

An `IndexReader` holds one `IndexState` (vectors, BM25, chunk owners). `refresh` reads what
changed in the store since the state's sequence number and applies it, in slices under a
write lock, so searches wait at most for one slice; `swap` replaces the whole state (a rebuild
made elsewhere) after it was built aside. Searches share a read lock and run in parallel.

Filters never list chunk ids: a collection or document filter is one comparison over the
chunk-owner arrays; media type and metadata filters ask SQLite for the matching *documents*
and compare again. The resulting mask (cached per filter and state version) restricts the
vector search (a FAISS bitmap selector) and the BM25 scores alike, so a filtered search
returns k results whenever k chunks match.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NamedTuple

import msgspec
import numpy as np

from indexes.errors import ModelChanged
from indexes.fusion import FusionParams, Mode, SearchFilter
from indexes.recovery import apply, read_change
from indexes.state import IndexState
from indexes.store import Store
from indexes.vectors import MilvusIndex, VectorFilter

_FILTER_CACHE_SIZE = 64
_DONE = object()


StageTimer = Callable[[str], AbstractContextManager[Any]]
"""Wraps each stage of a retrieval (`dense`, `lexical`, `fuse`): the service's traces."""


def no_stage(name: str) -> AbstractContextManager[Any]:
    return nullcontext()


class SearchHit(msgspec.Struct, frozen=True):
    chunk_id: int
    score: float
    """The ranking score of the mode that ranked the hit: cosine similarity (dense), BM25
    (lexical) or the fused score (hybrid). Compare scores within one response only."""
    document_id: int
    source_name: str
    collection: str
    ordinal: int
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    text: str
    similarity: float | None = None
    """Cosine similarity to the query vector, whatever ranked the hit (None without one)."""
    retrievers: int = 1
    """How many retrievers had the chunk among their candidates (2 in hybrid: both agree)."""
    location: str | None = None
    """Where in the document the chunk lies beyond pages (heading path, slide, sheet, rows)."""
    rerank_score: float | None = None
    """A cross-encoder's score of the chunk for the query, when a reranker (above the index)
    ordered the hits; `score` stays the mode's own."""


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


_EXPRESSION_MEMBERS = 10_000
"""Ids one Milvus expression term may list; a longer filter goes as chunk ids."""


class _Mask(NamedTuple):
    chunks: np.ndarray
    """bool over chunk ids."""
    bitmap: np.ndarray
    """The same, packed little-endian for FAISS."""
    lexical: np.ndarray
    """The same, over the lexical index's positions."""
    expression: str
    """The same over owner fields, for a Milvus search ("" for FAISS, or when too long)."""
    everything: bool
    """Every live chunk matches (one collection holds them all): search without a filter,
    which is faster than searching through one that excludes nothing."""


class IndexReader:
    """Retrieval over one data directory's store, for one process."""

    def __init__(self, store: Store, state: IndexState) -> None:
        self.store = store
        self._state = state
        self._lock = ReadWriteLock()
        self._refresh_lock = threading.Lock()
        self._masks: OrderedDict[tuple[bytes, int, int], _Mask] = OrderedDict()
        self._masks_lock = threading.Lock()

    @property
    def state(self) -> IndexState:
        return self._state

    @contextmanager
    def reading(self) -> Iterator[IndexState]:
        """The current state, unchanged while the block runs (saves use this)."""
        with self._lock.reading():
            yield self._state

    # -- following the store -----------------------------------------------------------------

    def refresh(self) -> bool:
        """Apply what changed in the store since the state was current; True if anything."""
        with self._refresh_lock:
            state = self._state
            pending = read_change(self.store, state)
            if pending.empty:
                state.change_seq = max(state.change_seq, pending.seq)
                return False
            steps = apply(state, pending)
            while True:
                with self._lock.writing():
                    if next(steps, _DONE) is _DONE:
                        return True

    def swap(self, state: IndexState) -> None:
        """Serve from `state` from now on; it is caught up with the store first, aside."""
        with self._refresh_lock:
            pending = read_change(self.store, state)
            for _ in apply(state, pending):
                pass
            with self._lock.writing():
                self._state = state
            with self._masks_lock:
                self._masks.clear()

    # -- retrieval ---------------------------------------------------------------------------

    def retrieve(
        self,
        *,
        k: int,
        vector: np.ndarray | None = None,
        text: str | None = None,
        mode: Mode = "dense",
        filters: SearchFilter | None = None,
        fusion: FusionParams | None = None,
        stage: StageTimer = no_stage,
        model_id: str | None = None,
    ) -> list[SearchHit]:
        """Top-k chunks by dense similarity, BM25, or both fused, among chunks that match
        `filters` (k of them whenever k match). `vector` is needed for dense and hybrid,
        `text` for lexical and hybrid; with a vector, every hit carries its similarity.
        `model_id`, the model that embedded `vector`: `ModelChanged` when the indexes are of
        another (the store switched models since the query was embedded)."""
        filters = filters or SearchFilter()
        fusion = fusion or FusionParams()
        if mode in ("dense", "hybrid") and vector is None:
            raise ValueError(f"{mode} retrieval needs a query vector")
        if mode in ("lexical", "hybrid") and text is None:
            raise ValueError(f"{mode} retrieval needs the query text")
        collection_id = self.store.collection_id(filters.collection) if filters.collection else None
        depth = max(k, fusion.candidates) if mode == "hybrid" else k
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        with self._lock.reading():
            state = self._state
            if model_id is not None and model_id != state.model_id:
                raise ModelChanged(state.model_id, model_id)
            mask = None if filters.is_empty else self._mask(state, filters, collection_id)
            if mask is not None and not mask.chunks.any():
                return []
            if mode in ("dense", "hybrid"):
                assert vector is not None
                with stage("dense"):
                    dense = _dense(state, vector, depth, mask)
            if mode in ("lexical", "hybrid"):
                assert text is not None
                with stage("lexical"):
                    lexical = state.lexical.search(text, depth, _lexical_mask(mask))
        with stage("fuse"):
            if mode == "dense":
                ranked = dense
            elif mode == "lexical":
                ranked = lexical
            else:
                ranked = fusion.fuse(dense, lexical)
            hits = self.hits(ranked[:k])
        if mode == "hybrid":
            both = {i for i, _ in dense} & {i for i, _ in lexical}
            hits = [
                msgspec.structs.replace(h, retrievers=2 if h.chunk_id in both else 1) for h in hits
            ]
        if vector is None or not hits:
            return hits
        similarity = dict(dense)
        missing = [h.chunk_id for h in hits if h.chunk_id not in similarity]
        if missing:
            similarity.update(self.similarities(vector, missing))
        return [msgspec.structs.replace(h, similarity=similarity.get(h.chunk_id)) for h in hits]

    def candidates(
        self,
        *,
        depth: int,
        vector: np.ndarray | None = None,
        text: str | None = None,
        filters: SearchFilter | None = None,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The dense and the lexical (chunk id, score) lists, `depth` deep, that hybrid
        retrieval fuses (empty for the one whose input is None): for tuning fusion offline."""
        filters = filters or SearchFilter()
        collection_id = self.store.collection_id(filters.collection) if filters.collection else None
        with self._lock.reading():
            state = self._state
            mask = None if filters.is_empty else self._mask(state, filters, collection_id)
            if mask is not None and not mask.chunks.any():
                return [], []
            dense = [] if vector is None else _dense(state, vector, depth, mask)
            lexical = [] if text is None else state.lexical.search(text, depth, _lexical_mask(mask))
        return dense, lexical

    def _mask(self, state: IndexState, filters: SearchFilter, collection_id: int | None) -> _Mask:
        key = (msgspec.json.encode(filters), state.version, id(state))
        with self._masks_lock:
            cached = self._masks.get(key)
            if cached is not None:
                self._masks.move_to_end(key)
                return cached
        owners = state.owners
        chunks = owners.documents >= 0
        terms: list[tuple[str, Sequence[int] | np.ndarray]] = []  # for a Milvus expression
        if collection_id is not None:
            chunks &= owners.collections == collection_id
            terms.append(("collection", [collection_id]))
        if filters.collections is not None:
            ids = self.store.collection_ids(filters.collections)
            chunks &= np.isin(owners.collections, np.asarray(ids, dtype=owners.collections.dtype))
            terms.append(("collection", ids))
        if filters.document_ids:
            chunks &= np.isin(owners.documents, np.asarray(filters.document_ids, dtype=np.int64))
            terms.append(("document", filters.document_ids))
        if filters.media_types or filters.metadata:
            where, params = SearchFilter(
                media_types=filters.media_types, metadata=filters.metadata
            ).where()
            documents = self.store.document_ids_where(where, params)
            chunks &= np.isin(owners.documents, documents)
            terms.append(("document", documents))
        expression = ""
        if isinstance(state.dense, MilvusIndex):  # FAISS takes the bitmap: no strings made
            members = [_members(field, values) for field, values in terms]
            expression = " and ".join(f"({m})" for m in members) if all(members) else ""
        lexical_ids = state.lexical.chunk_ids
        inside = lexical_ids < len(chunks)
        lexical = np.zeros(len(lexical_ids), dtype=bool)
        lexical[inside] = chunks[lexical_ids[inside]]
        everything = bool(np.array_equal(chunks, owners.documents >= 0))
        mask = _Mask(
            chunks, np.packbits(chunks, bitorder="little"), lexical, expression, everything
        )
        with self._masks_lock:
            self._masks[key] = mask
            while len(self._masks) > _FILTER_CACHE_SIZE:
                self._masks.popitem(last=False)
        return mask

    def similarities(self, vector: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        """Cosine similarity of `vector` to each chunk's stored embedding."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        found: dict[int, float] = {}
        state = self._state
        for ids, vectors in self.store.vectors_for_chunks(
            state.model_id, chunk_ids, state.dense.dimension
        ):
            for chunk_id, score in zip(ids.tolist(), (vectors @ query).tolist(), strict=True):
                found[int(chunk_id)] = float(score)
        return found

    def hits(self, pairs: Sequence[tuple[int, float]]) -> list[SearchHit]:
        """Resolve (chunk id, score) pairs to hits, in the given order, skipping deleted ones."""
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        rows = self.store.reader().execute(
            "SELECT ch.id, d.id, d.source_name, c.name, ch.ordinal, ch.page_start, ch.page_end, "
            "ch.char_start, ch.char_end, ch.text, ch.location FROM chunks ch "
            "JOIN documents d ON d.id = ch.document_id "
            f"JOIN collections c ON c.id = d.collection_id WHERE ch.id IN ({marks})",
            [p[0] for p in pairs],
        )
        by_id = {int(r[0]): r for r in rows}
        hits = []
        for chunk_id, score in pairs:
            row = by_id.get(chunk_id)
            if row is not None:
                document_id, source, collection, ordinal, page_start, page_end = row[1:7]
                hits.append(
                    SearchHit(
                        chunk_id,
                        score,
                        document_id,
                        source,
                        collection,
                        ordinal,
                        page_start,
                        page_end,
                        row[7],
                        row[8],
                        row[9],
                        location=row[10],
                    )
                )
        return hits


def _members(field: str, values: Sequence[int] | np.ndarray) -> str:
    """`field in [...]`, or "" when the list is too long to send as an expression."""
    values = [int(v) for v in values]
    if len(values) > _EXPRESSION_MEMBERS:
        return ""
    return f"{field} in [{', '.join(map(str, values))}]"


def _lexical_mask(mask: _Mask | None) -> np.ndarray | None:
    return None if mask is None or mask.everything else mask.lexical


def _dense(
    state: IndexState, vector: np.ndarray, k: int, mask: _Mask | None
) -> list[tuple[int, float]]:
    if len(state.dense) == 0:
        return []
    if mask is None or mask.everything:
        scores, ids = state.dense.search(vector, k)
    else:
        scores, ids = state.dense.search_filtered(
            vector, k, VectorFilter(mask.bitmap, mask.expression)
        )
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
