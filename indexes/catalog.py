"""The catalog: the SQLite store and the FAISS index kept in agreement, behind one writer.

A data directory holds `ragsvc.sqlite3` (the source of truth), `index/` (the FAISS file and its
manifest, derived from the store) and `writer.lock`. Opening a catalog for writing takes the
directory's lock, so two processes never write at once; inside a process every mutation goes
through `commit`, `delete_document` or `rebuild`, which serialise on the store's write lock.

Mutations commit to SQLite first and then update the in-memory index; the index file is saved
every `save_interval` seconds and on close. On open, an index that does not reflect the store's
generation is caught up from stored embeddings (vectors added or removed by chunk id), and one
that cannot be trusted at all (missing, unreadable, another model) is rebuilt from them. The
answer is never silently wrong, and nothing is ever re-embedded to recover.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from indexes.errors import (
    CollectionNotFound,
    DocumentNotFound,
    ModelMismatch,
    StoreMissing,
    WriterBusy,
)
from indexes.manifest import (
    FORMAT_VERSION,
    Manifest,
    fsync_directory,
    read_manifest,
    write_manifest,
)
from indexes.retrieval import (
    Fusion,
    Mode,
    SearchFilter,
    fts_query,
    fuse_rrf,
    fuse_weighted,
)
from indexes.store import NewDocument, Store, utc_now
from indexes.vectors import FaissIndex, IndexType

DATABASE_NAME = "ragsvc.sqlite3"
INDEX_DIRECTORY = "index"
LOCK_NAME = "writer.lock"

CommitAction = Literal["added", "replaced", "unchanged"]


class CommitResult(msgspec.Struct, frozen=True):
    document_id: int
    source_name: str
    action: CommitAction
    chunk_count: int


class SearchHit(msgspec.Struct, frozen=True):
    chunk_id: int
    score: float
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


class CollectionStats(msgspec.Struct, frozen=True):
    name: str
    documents: int
    chunks: int


class CatalogStats(msgspec.Struct, frozen=True):
    data_dir: str
    model_id: str | None
    dimension: int | None
    index_type: str
    index_spec: str
    documents: int
    chunks: int
    vectors_in_index_file: int
    vectors_in_memory: int
    store_generation: int
    index_file_generation: int | None
    disk_bytes: int
    collections: list[CollectionStats]


class Catalog:
    """Store + vector index for one data directory. Use `Catalog.open`."""

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        model_id: str,
        dimension: int,
        index_type: IndexType,
        *,
        readonly: bool,
        save_interval: float,
        lock_handle: int | None,
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.model_id = model_id
        self.dimension = dimension
        self.readonly = readonly
        self.save_interval = save_interval
        self._lock_handle = lock_handle
        self._index_lock = threading.RLock()
        self._save_lock = threading.Lock()
        # The single writer path: a mutation's transaction and its index update happen under
        # this lock, so the index never reflects a later generation before an earlier one.
        self._writer_lock = threading.RLock()
        self._index_generation = 0
        """The store generation the in-memory index reflects (never newer than its content)."""
        self._index = FaissIndex.create("flat", dimension)
        self._requested_type: IndexType = index_type
        self._dirty = False
        self._last_save = time.monotonic()
        self._manifest: Manifest | None = None
        self.file_vector_count = 0

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        model_id: str | None = None,
        dimension: int | None = None,
        index_type: IndexType = "flat",
        readonly: bool = False,
        save_interval: float = 30.0,
        allow_model_change: bool = False,
    ) -> Catalog:
        """Open (creating when writable and a model is given) the catalog in `data_dir`.

        Without `model_id`, the store must exist and its own model is used (for commands that
        embed nothing). Raises `ModelMismatch` when the store was embedded with another model,
        unless `allow_model_change` (used by `rebuild --reembed`), `WriterBusy` when another
        process writes to the directory, and `StoreMissing` when there is no store to open.
        """
        data_dir = Path(data_dir)
        if (readonly or model_id is None) and not (data_dir / DATABASE_NAME).exists():
            raise StoreMissing(f"no store in {data_dir}; run `ragsvc ingest` first")
        lock_handle = None
        if not readonly:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / INDEX_DIRECTORY).mkdir(exist_ok=True)
            lock_handle = _acquire_writer_lock(data_dir / LOCK_NAME)
        try:
            store = Store(data_dir / DATABASE_NAME, readonly=readonly)
            stored_model = store.meta("model_id")
            stored_dimension = int(store.meta("dimension") or 0) or None
            if model_id is None:
                if stored_model is None or stored_dimension is None:
                    raise StoreMissing(f"the store in {data_dir} holds no embeddings yet")
                model_id, dimension = stored_model, stored_dimension
            if dimension is None:
                raise ValueError("a dimension is needed with a model id")
            if stored_model is not None and stored_model != model_id and not allow_model_change:
                raise ModelMismatch(stored_model, model_id)
            if stored_model is None and not readonly:
                with store.write() as conn:
                    Store.set_meta(conn, "model_id", model_id)
                    Store.set_meta(conn, "dimension", str(dimension))
            elif stored_model is not None and stored_dimension is not None:
                # Re-embedding: the stored model's vectors serve until the rebuild swaps.
                model_id, dimension = stored_model, stored_dimension
            catalog = cls(
                data_dir,
                store,
                model_id,
                dimension,
                index_type,
                readonly=readonly,
                save_interval=save_interval,
                lock_handle=lock_handle,
            )
            catalog._load_index()
        except BaseException:
            if lock_handle is not None:
                os.close(lock_handle)
            raise
        return catalog

    def close(self) -> None:
        if not self.readonly:
            self.flush()
        self.store.close()
        if self._lock_handle is not None:
            os.close(self._lock_handle)
            self._lock_handle = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index_directory(self) -> Path:
        return self.data_dir / INDEX_DIRECTORY

    @property
    def index_type(self) -> IndexType:
        return self._index.index_type

    def _load_index(self) -> None:
        manifest = read_manifest(self.index_directory)
        index = None
        if (
            manifest is not None
            and manifest.model_id == self.model_id
            and manifest.dimension == self.dimension
        ):
            try:
                index = FaissIndex.load(
                    self.index_directory / manifest.index_file, manifest.index_type
                )
            except (RuntimeError, OSError):
                index = None  # unreadable or missing file: rebuilt from the store below
        if index is None or manifest is None:
            self._index_generation = self.store.generation()
            self._index = self._build_from_store(self._requested_type)
            self._manifest = None
            self._dirty = True
        else:
            self._index = index
            self._manifest = manifest
            self._index_generation = manifest.store_generation
            self.file_vector_count = len(index)
            if manifest.store_generation != self.store.generation() or manifest.vector_count != len(
                index
            ):
                self._catch_up()
        if not self.readonly and self._dirty:
            self.save()

    def _catch_up(self) -> None:
        """Make the index hold exactly the store's chunks, from stored embeddings."""
        generation = self.store.generation()  # read first: the stamp may only be older
        in_index = self._index.ids()
        in_store = self.store.chunk_ids()
        stale = np.setdiff1d(in_index, in_store, assume_unique=True)
        missing = np.setdiff1d(in_store, in_index, assume_unique=True)
        if len(stale) and not self._index.supports_remove:
            self._index = self._build_from_store(self._index.index_type)
        else:
            self._index.remove(stale)
            for ids, vectors in self.store.vectors_for_chunks(
                self.model_id, missing.tolist(), self.dimension
            ):
                self._index.add(ids, vectors)
        self._index_generation = generation
        self._dirty = True

    def _build_from_store(
        self, index_type: IndexType, model_id: str | None = None, dimension: int | None = None
    ) -> FaissIndex:
        model_id = model_id or self.model_id
        dimension = dimension or self.dimension
        batches = list(self.store.vectors_for_chunks(model_id, None, dimension))
        training = np.concatenate([v for _, v in batches]) if batches else None
        index = FaissIndex.create(index_type, dimension, training)
        for ids, vectors in batches:
            index.add(ids, vectors)
        return index

    # -- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the index to a new file, then the manifest naming it (the commit point).

        The index is copied under the index lock and written outside it, so searches
        never wait for the disk. The manifest records the generation the index reflects.
        """
        if self.readonly:
            raise RuntimeError("catalog opened read-only")
        with self._save_lock:
            with self._index_lock:
                data = self._index.serialize()
                generation = self._index_generation
                index_type, spec, count = self._index.index_type, self._index.spec, len(self._index)
                self._dirty = False
            name = f"vectors-{generation}-{secrets.token_hex(4)}.faiss"
            path = self.index_directory / name
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            fsync_directory(self.index_directory)
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                model_id=self.model_id,
                dimension=self.dimension,
                index_type=index_type,
                index_spec=spec,
                index_file=name,
                vector_count=count,
                store_generation=generation,
                written_at=utc_now(),
            )
            write_manifest(self.index_directory, manifest)
            self._manifest = manifest
            self.file_vector_count = count
            self._last_save = time.monotonic()
            for old in self.index_directory.glob("vectors-*.faiss"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    def flush(self) -> None:
        if self._dirty:
            self.save()

    def _maybe_save(self) -> None:
        if self._dirty and time.monotonic() - self._last_save >= self.save_interval:
            self.save()

    # -- writes ------------------------------------------------------------------------------

    def commit(
        self, documents: Sequence[NewDocument], vectors: dict[bytes, np.ndarray]
    ) -> list[CommitResult]:
        """Store documents, each complete or not at all, in one transaction.

        `vectors` holds the embeddings computed for this batch; any chunk text not in it
        must already have a stored embedding. A document whose bytes already exist in its
        collection is left as it is ("unchanged"); one whose source name exists with other
        bytes replaces the old version ("replaced").
        """
        with self._writer_lock:
            return self._commit(documents, vectors)

    def _commit(
        self, documents: Sequence[NewDocument], vectors: dict[bytes, np.ndarray]
    ) -> list[CommitResult]:
        results: list[CommitResult] = []
        removed: list[int] = []
        added: list[int] = []
        with self.store.write() as conn:
            generation = self.store.generation(conn)
            Store.insert_embeddings(conn, self.model_id, vectors)
            for document in documents:
                collection_id = Store.ensure_collection(conn, document.collection)
                existing = conn.execute(
                    "SELECT id FROM documents WHERE collection_id = ? AND sha256 = ?",
                    (collection_id, document.sha256),
                ).fetchone()
                if existing is not None:
                    results.append(
                        CommitResult(int(existing[0]), document.source_name, "unchanged", 0)
                    )
                    continue
                action: CommitAction = "added"
                previous = conn.execute(
                    "SELECT id FROM documents WHERE collection_id = ? AND source_name = ?",
                    (collection_id, document.source_name),
                ).fetchone()
                if previous is not None:
                    action = "replaced"
                    removed.extend(
                        int(r[0])
                        for r in conn.execute(
                            "SELECT id FROM chunks WHERE document_id = ?", (previous[0],)
                        )
                    )
                    conn.execute("DELETE FROM documents WHERE id = ?", (previous[0],))
                now = utc_now()
                cursor = conn.execute(
                    "INSERT INTO documents(collection_id, external_id, source_name, media_type, "
                    "sha256, byte_size, status, page_count, char_count, chunk_count, metadata, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?)",
                    (
                        collection_id,
                        document.external_id,
                        document.source_name,
                        document.media_type,
                        document.sha256,
                        document.byte_size,
                        document.page_count,
                        document.char_count,
                        len(document.chunks),
                        msgspec.json.encode(document.metadata).decode(),
                        now,
                        now,
                    ),
                )
                document_id = int(cursor.lastrowid or 0)
                conn.executemany(
                    "INSERT INTO chunks(document_id, ordinal, text, page_start, page_end, "
                    "char_start, char_end, token_count, text_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            document_id,
                            c.ordinal,
                            c.text,
                            c.page_start,
                            c.page_end,
                            c.char_start,
                            c.char_end,
                            c.token_count,
                            c.text_hash,
                        )
                        for c in document.chunks
                    ),
                )
                added.extend(
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal",
                        (document_id,),
                    )
                )
                results.append(
                    CommitResult(document_id, document.source_name, action, len(document.chunks))
                )
            # Read back inside the transaction: every vector to add must exist in the store.
            new_vectors = list(
                self.store.vectors_for_chunks(self.model_id, added, self.dimension, conn=conn)
            )
        self._apply(np.asarray(removed, dtype=np.int64), new_vectors, generation)
        return results

    def _apply(
        self, removed: np.ndarray, added: list[tuple[np.ndarray, np.ndarray]], generation: int
    ) -> None:
        with self._index_lock:
            if len(removed):
                if self._index.supports_remove:
                    self._index.remove(removed)
                else:
                    self._index = self._build_from_store(self._index.index_type)
                    added = []
            for ids, vectors in added:
                self._index.add(ids, vectors)
            self._index_generation = max(self._index_generation, generation)
            self._dirty = True
        self._maybe_save()

    def store_embeddings(self, model_id: str, vectors: dict[bytes, np.ndarray]) -> None:
        with self._writer_lock, self.store.write() as conn:
            Store.insert_embeddings(conn, model_id, vectors)

    def delete_document(self, document_id: int, collection: str | None = None) -> None:
        """Delete a document, its chunks and their vectors. Raises `NotFound` subclasses."""
        with self._writer_lock:
            self._delete_document(document_id, collection)

    def _delete_document(self, document_id: int, collection: str | None) -> None:
        with self.store.write() as conn:
            if collection is not None:
                collection_id = self.store.collection_id(collection, conn)
                row = conn.execute(
                    "SELECT id FROM documents WHERE id = ? AND collection_id = ?",
                    (document_id, collection_id),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT id FROM documents WHERE id = ?", (document_id,)
                ).fetchone()
            if row is None:
                raise DocumentNotFound(document_id, collection)
            removed = [
                int(r[0])
                for r in conn.execute("SELECT id FROM chunks WHERE document_id = ?", (document_id,))
            ]
            conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            generation = self.store.generation(conn)
        self._apply(np.asarray(removed, dtype=np.int64), [], generation)

    def rebuild(
        self,
        index_type: IndexType | None = None,
        *,
        model_id: str | None = None,
        dimension: int | None = None,
    ) -> None:
        """Build a new index from the store and swap it in; the old one serves until then.

        With `model_id`, the store's model becomes that model (its embeddings must already be
        stored, see `store_embeddings`).
        """
        with self._writer_lock:
            self._rebuild(index_type, model_id, dimension)

    def _rebuild(
        self, index_type: IndexType | None, model_id: str | None, dimension: int | None
    ) -> None:
        index_type = index_type or self._index.index_type
        new_model = model_id or self.model_id
        new_dimension = dimension or self.dimension
        generation = self.store.generation()  # read before building: the stamp may only be older
        index = self._build_from_store(index_type, new_model, new_dimension)
        if new_model != self.model_id or new_dimension != self.dimension:
            with self.store.write() as conn:
                Store.set_meta(conn, "model_id", new_model)
                Store.set_meta(conn, "dimension", str(new_dimension))
        with self._index_lock:
            self._index = index
            self._index_generation = generation
            self.model_id = new_model
            self.dimension = new_dimension
            self._requested_type = index_type
            self._dirty = True
        self.save()

    # -- reads -------------------------------------------------------------------------------

    def search(
        self, query_vector: np.ndarray, k: int = 10, collection: str | None = None
    ) -> list[SearchHit]:
        """Top-k chunks by cosine similarity, optionally within one collection."""
        return self.retrieve(k=k, vector=query_vector, filters=SearchFilter(collection=collection))

    def retrieve(
        self,
        *,
        k: int,
        vector: np.ndarray | None = None,
        text: str | None = None,
        mode: Mode = "dense",
        filters: SearchFilter | None = None,
        fusion: Fusion = "rrf",
        rrf_k: int = 60,
        dense_weight: float = 0.5,
        candidates: int = 100,
    ) -> list[SearchHit]:
        """Top-k chunks by dense similarity, BM25, or both fused, among chunks that match
        `filters` (k of them whenever k match). `vector` is needed for dense and hybrid,
        `text` for lexical and hybrid."""
        filters = filters or SearchFilter()
        if filters.collection is not None:
            self.require_collection(filters.collection)
        allowed = None if filters.is_empty else self._filtered_ids(filters)
        if allowed is not None and len(allowed) == 0:
            return []
        depth = max(k, candidates) if mode == "hybrid" else k
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if mode in ("dense", "hybrid"):
            if vector is None:
                raise ValueError(f"{mode} retrieval needs a query vector")
            dense = self._dense(vector, depth, allowed)
        if mode in ("lexical", "hybrid"):
            if text is None:
                raise ValueError(f"{mode} retrieval needs the query text")
            lexical = self._lexical(text, depth, filters)
        if mode == "dense":
            ranked = dense
        elif mode == "lexical":
            ranked = lexical
        elif fusion == "rrf":
            ranked = fuse_rrf([dense, lexical], rrf_k)
        else:
            ranked = fuse_weighted(dense, lexical, dense_weight)
        hits = self.hits(ranked[:k])
        if mode == "hybrid":
            both = {i for i, _ in dense} & {i for i, _ in lexical}
            hits = [
                msgspec.structs.replace(h, retrievers=2 if h.chunk_id in both else 1) for h in hits
            ]
        if vector is None or not hits:
            return hits
        if mode == "dense":
            return [msgspec.structs.replace(h, similarity=h.score) for h in hits]
        similarity = self._similarities(vector, [h.chunk_id for h in hits])
        return [msgspec.structs.replace(h, similarity=similarity.get(h.chunk_id)) for h in hits]

    def _filtered_ids(self, filters: SearchFilter) -> np.ndarray:
        where, params = filters.where()
        rows = self.store.reader().execute(
            "SELECT ch.id FROM chunks ch JOIN documents d ON d.id = ch.document_id "
            f"JOIN collections col ON col.id = d.collection_id WHERE {where} ORDER BY ch.id",
            params,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _dense(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        with self._index_lock:
            if len(self._index) == 0:
                return []
            scores, ids = self._index.search(vector, k, allowed)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def _lexical(self, text: str, k: int, filters: SearchFilter) -> list[tuple[int, float]]:
        query = fts_query(text)
        if query is None:
            return []
        where, params = filters.where()
        rows = self.store.reader().execute(
            "SELECT ch.id, -bm25(chunks_fts) FROM chunks_fts "
            "JOIN chunks ch ON ch.id = chunks_fts.rowid "
            "JOIN documents d ON d.id = ch.document_id "
            "JOIN collections col ON col.id = d.collection_id "
            f"WHERE chunks_fts MATCH ? AND {where} ORDER BY bm25(chunks_fts) LIMIT ?",
            [query, *params, k],
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def _similarities(self, vector: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        found: dict[int, float] = {}
        for ids, vectors in self.store.vectors_for_chunks(self.model_id, chunk_ids, self.dimension):
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
            "ch.char_start, ch.char_end, ch.text FROM chunks ch "
            "JOIN documents d ON d.id = ch.document_id "
            f"JOIN collections c ON c.id = d.collection_id WHERE ch.id IN ({marks})",
            [p[0] for p in pairs],
        )
        by_id = {int(r[0]): r for r in rows}
        return [
            SearchHit(chunk_id, score, *by_id[chunk_id][1:])
            for chunk_id, score in pairs
            if chunk_id in by_id
        ]

    def stats(self) -> CatalogStats:
        disk = sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())
        counts = self.store.counts()
        return CatalogStats(
            data_dir=str(self.data_dir),
            model_id=self.store.meta("model_id"),
            dimension=int(self.store.meta("dimension") or 0) or None,
            index_type=self._index.index_type,
            index_spec=self._index.spec,
            documents=sum(c[1] for c in counts),
            chunks=self.store.chunk_count(),
            vectors_in_index_file=self.file_vector_count,
            vectors_in_memory=len(self._index),
            store_generation=self.store.generation(),
            index_file_generation=self._manifest.store_generation if self._manifest else None,
            disk_bytes=disk,
            collections=[CollectionStats(*c) for c in counts],
        )

    def require_collection(self, name: str) -> None:
        if name not in self.store.collections():
            raise CollectionNotFound(name)


def _acquire_writer_lock(path: Path) -> int:
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(handle, 64).decode(errors="replace").strip() or "unknown"
        os.close(handle)
        raise WriterBusy(
            f"another ragsvc process (pid {holder}) is writing to {path.parent}; "
            "wait for it to finish or stop it"
        ) from None
    os.ftruncate(handle, 0)
    os.write(handle, f"{os.getpid()}\n".encode())
    return handle
