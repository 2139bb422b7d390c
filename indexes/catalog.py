"""The catalog: one data directory's store, its writer, and its reader, opened together.

A data directory holds `ragsvc.sqlite3` (the source of truth) and `index/` (snapshots of the
derived indexes and their manifest). Mutations go to SQLite through `StoreWriter`; the
in-memory indexes (`IndexReader`) follow the store's change log, so a catalog sees its own
writes at once and other processes' writes on `refresh`. Several processes may write to
one directory (SQLite serialises them); any of them may save a snapshot.

The reader is opened lazily: a process that only writes (the service's ingestion worker)
never loads an index. On open, a snapshot that does not reflect the store is caught up from
the change log or, if the log was pruned, from stored embeddings; one that cannot be trusted
(missing, unreadable, another model) is rebuilt from them. Nothing is re-embedded to recover.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np

from indexes import recovery, snapshot
from indexes.errors import CollectionNotFound, ModelMismatch, StoreMissing
from indexes.fusion import FusionParams, Mode, SearchFilter
from indexes.lexical import DEFAULT_B, DEFAULT_K1, Analyzer
from indexes.reader import IndexReader, SearchHit, StageTimer, no_stage
from indexes.recovery import LexicalSettings
from indexes.rows import ChunkEmbedding, NewDocument
from indexes.schema import DATABASE_NAME
from indexes.state import IndexState
from indexes.store import Store
from indexes.store_api import DocumentStore, StoreReads
from indexes.vectors import IndexChoice, IndexType, VectorParams, resolve
from indexes.writer import CommitResult, StoreWriter

logger = logging.getLogger(__name__)
INDEX_DIRECTORY = "index"
MILVUS_LITE_NAME = "milvus.db"
"""The milvus-lite file used when `vector_backend` is milvus and no `milvus_uri` is given."""


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
    lexical_postings: int
    store_change_seq: int
    index_file_change_seq: int | None
    disk_bytes: int
    collections: list[CollectionStats]


class Catalog(StoreReads):
    """Store + writer + reader for one data directory. Use `Catalog.open`."""

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        model_id: str,
        dimension: int,
        index_type: IndexChoice,
        *,
        readonly: bool,
        save_interval: float,
        lexical: LexicalSettings,
        vector_params: VectorParams | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.model_id = model_id
        self.dimension = dimension
        self.readonly = readonly
        self.save_interval = save_interval
        self.writer = None if readonly else StoreWriter(store, model_id)
        self._requested_type: IndexChoice = index_type
        params = vector_params or VectorParams()
        if params.backend == "milvus" and not params.milvus_uri:
            params = msgspec.structs.replace(params, milvus_uri=str(data_dir / MILVUS_LITE_NAME))
        self.vector_params = params
        self._lexical = lexical
        self._reader: IndexReader | None = None
        self._reader_lock = threading.Lock()
        self._saved_seq: int | None = None
        self._saved_build: str | None = None
        self._manifest_mtime: float | None = None
        self._last_save = time.monotonic()

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        model_id: str | None = None,
        dimension: int | None = None,
        index_type: IndexChoice = "flat",
        readonly: bool = False,
        save_interval: float = 30.0,
        allow_model_change: bool = False,
        lexical_k1: float = DEFAULT_K1,
        lexical_b: float = DEFAULT_B,
        vector_params: VectorParams | None = None,
    ) -> Catalog:
        """Open (creating when writable and a model is given) the catalog in `data_dir`.

        Without `model_id`, the store must exist and its own model is used (for commands that
        embed nothing). Raises `ModelMismatch` when the store was embedded with another model,
        unless `allow_model_change` (used by `rebuild --reembed`), and `StoreMissing` when
        there is no store to open.
        """
        data_dir = Path(data_dir)
        if (readonly or model_id is None) and not (data_dir / DATABASE_NAME).exists():
            raise StoreMissing(f"no store in {data_dir}; run `ragsvc ingest` first")
        if not readonly:
            (data_dir / INDEX_DIRECTORY).mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / DATABASE_NAME, readonly=readonly)
        try:
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
        except BaseException:
            store.close()
            raise
        return cls(
            data_dir,
            store,
            model_id,
            dimension,
            index_type,
            readonly=readonly,
            save_interval=save_interval,
            lexical=LexicalSettings(Analyzer(), lexical_k1, lexical_b),
            vector_params=vector_params,
        )

    def close(self) -> None:
        try:
            if not self.readonly and self._reader is not None:
                self.flush()
        finally:
            if self._reader is not None:
                self._reader.state.dense.close()
            self.store.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index_directory(self) -> Path:
        return self.data_dir / INDEX_DIRECTORY

    @property
    def reader(self) -> IndexReader:
        """The in-memory indexes, loaded (or rebuilt) on first use."""
        if self._reader is None:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = self._open_reader()
        return self._reader

    @property
    def index_type(self) -> IndexType:
        return self.reader.state.dense.index_type

    def _open_reader(self) -> IndexReader:
        state, changed = recovery.open_state(
            self.store,
            self.index_directory,
            self.model_id,
            self.dimension,
            self._requested_type,
            self._lexical,
            self.vector_params,
        )
        manifest = snapshot.read_manifest(self.index_directory)
        if manifest is not None and manifest.build_id == state.build_id:
            self._saved_seq, self._saved_build = manifest.change_seq, manifest.build_id
        self._manifest_mtime = _mtime(self.index_directory / snapshot.MANIFEST_NAME)
        reader = IndexReader(self.store, state)
        if changed and not self.readonly:
            self._reader = reader
            # A state built afresh (no usable snapshot, or another vector backend) replaces
            # the snapshot of the build it could not use; otherwise every open rebuilds.
            self.save(replace_build=manifest is None or manifest.build_id != state.build_id)
        return reader

    # -- writes ------------------------------------------------------------------------------

    def _writer(self) -> StoreWriter:
        if self.writer is None:
            raise RuntimeError("catalog opened read-only")
        return self.writer

    def commit(
        self,
        documents: Sequence[NewDocument],
        vectors: Mapping[bytes, np.ndarray | ChunkEmbedding],
    ) -> list[CommitResult]:
        """Store documents in one transaction (see `StoreWriter.commit`); a loaded reader
        sees them when this returns."""
        results = self._writer().commit(documents, vectors)
        self._after_write()
        return results

    def delete_document(self, document_id: int, collection: str | None = None) -> None:
        """Delete a document, its chunks and their vectors. Raises `NotFound` subclasses."""
        self._writer().delete_document(document_id, collection)
        self._after_write()

    def create_collection(self, name: str) -> bool:
        """Create an empty collection; False when it already exists."""
        return self._writer().create_collection(name)

    def delete_collection(self, name: str) -> tuple[int, int]:
        """Delete a collection and everything in it: (documents, chunks) deleted."""
        deleted = self._writer().delete_collection(name)
        self._after_write()
        return deleted

    def store_embeddings(
        self, model_id: str, vectors: Mapping[bytes, np.ndarray | ChunkEmbedding]
    ) -> None:
        self._writer().store_embeddings(model_id, vectors)

    def _after_write(self) -> None:
        if self._reader is not None:
            self._reader.refresh()
            self.maybe_save(rebuild=False)  # a write never waits for a rebuild

    def rebuild(self, index_type: IndexChoice | None = None) -> None:
        """Build new indexes from the store beside the served ones, save them as a new
        build (other processes swap to it on refresh) and swap them in here. (Another model:
        `build_aside` and `switch_model`.)"""
        self._writer()
        if index_type is None:
            index_type = self.index_kind()
        state = self.build_aside(self.model_id, self.dimension, index_type)
        self._requested_type = index_type
        replaced = None
        if self._reader is None:
            self._reader = IndexReader(self.store, state)
        else:
            replaced = self._reader.state
            self._reader.swap(state)
        self.save(replace_build=True)
        if replaced is not None:
            replaced.dense.discard()  # a Milvus build's collection goes with it

    def index_kind(self) -> IndexChoice:
        """The kind a rebuild keeps: the served index's, else the saved snapshot's, else the
        one asked for."""
        if self._reader is not None:
            return self._reader.state.dense.index_type
        return _manifest_type(self.index_directory) or self._requested_type

    # -- changing the model ------------------------------------------------------------------

    def build_aside(self, model_id: str, dimension: int, index_type: IndexChoice) -> IndexState:
        """A new build of the indexes from the embeddings of `model_id` (they must all be
        stored; `LookupError` names the first chunk without one), not served here yet."""
        return recovery.build(
            self.store, model_id, dimension, index_type, self._lexical, self.vector_params
        )

    def switch_model(self, state: IndexState, dimension: int, model_name: str) -> bool:
        """Make the store serve `state`'s model: its snapshot is saved first, then one
        transaction makes the model the store's, if every chunk has an embedding for it (a
        writer of the old model may have committed since: then False, nothing switched, and
        `state` may be passed again once those chunks are embedded).
        Servers following the store move to the snapshot; writers of the old model are
        refused (`ModelChanged`) and reload. `model_name` is what loads the model."""
        writer = self._writer()
        try:
            self._catch_up(state)
        except LookupError:
            return False  # a writer of the old model committed since: embed that first
        manifest = snapshot.save(self.index_directory, state, dimension, replace_build=True)
        if not writer.set_model(state.model_id, dimension, model_name):
            return False
        self.model_id, self.dimension = state.model_id, dimension
        self._requested_type = state.dense.index_type
        if self._reader is None:
            self._reader = IndexReader(self.store, state)
        else:
            replaced = self._reader.state
            self._reader.swap(state)
            replaced.dense.discard()  # a Milvus build's collection goes with it
        if manifest is not None:  # saved above; what the switch committed since follows
            self._saved_seq, self._saved_build = manifest.change_seq, manifest.build_id
            self._manifest_mtime = _mtime(self.index_directory / snapshot.MANIFEST_NAME)
        return True

    def _catch_up(self, state: IndexState) -> None:
        for _ in recovery.apply(state, recovery.read_change(self.store, state)):
            pass

    def drop_embeddings(self, model_id: str) -> int:
        """Forget the stored embeddings of a model the store does not serve (a re-embed
        given up); returns how many went."""
        if model_id == self.model_id:
            raise ValueError(f"{model_id!r} is the model the store serves")
        return self._writer().drop_embeddings(model_id)

    def stored_model(self) -> tuple[str | None, int | None, str | None]:
        """(model id, dimension, name that loads it) as the store says now: another model
        than this catalog's once a re-embed switched the store."""
        dimension = self.store.meta("dimension")
        return (
            self.store.meta("model_id"),
            int(dimension) if dimension else None,
            self.store.meta("embedding_model"),
        )

    @staticmethod
    def recorded_model(data_dir: Path) -> str | None:
        """The name of the model a re-embed switched the store in `data_dir` to, if one did
        (what loads it: a model name or folder), without opening the catalog."""
        if not (data_dir / DATABASE_NAME).is_file():
            return None
        store = Store(data_dir / DATABASE_NAME, readonly=True)
        try:
            return store.meta("embedding_model")
        finally:
            store.close()

    # -- following other processes -----------------------------------------------------------

    @property
    def model_switched(self) -> bool:
        """Whether the store now serves another model than this catalog's (`follow_model`)."""
        return self.store.meta("model_id") not in (None, self.model_id)

    def follow_model(self) -> bool:
        """Serve the model the store switched to: its snapshot (saved before the switch)
        loaded and caught up, or a build from its stored embeddings. False when the store
        serves this catalog's model."""
        model_id, dimension, _ = self.stored_model()
        if model_id is None or dimension is None or model_id == self.model_id:
            return False
        state, _ = recovery.open_state(
            self.store,
            self.index_directory,
            model_id,
            dimension,
            self._requested_type,
            self._lexical,
            self.vector_params,
        )
        reader = self.reader
        replaced = reader.state
        reader.swap(state)
        replaced.dense.close()
        self.model_id, self.dimension = model_id, dimension
        if self.writer is not None:
            self.writer.model_id = model_id
        manifest = snapshot.read_manifest(self.index_directory)
        if manifest is not None and manifest.build_id == state.build_id:
            self._saved_seq, self._saved_build = manifest.change_seq, manifest.build_id
        self._manifest_mtime = _mtime(self.index_directory / snapshot.MANIFEST_NAME)
        return True

    def refresh(self) -> bool:
        """Catch up with writes made elsewhere, and move to a new build saved elsewhere (a
        rebuild), built aside and swapped in. True when anything changed. Once the store
        serves another model, nothing more is applied until `follow_model`."""
        reader = self.reader
        if self.model_switched:
            return False
        moved = self._follow_rebuild(reader)
        return reader.refresh() or moved

    def _follow_rebuild(self, reader: IndexReader) -> bool:
        path = self.index_directory / snapshot.MANIFEST_NAME
        mtime = _mtime(path)
        if mtime == self._manifest_mtime:
            return False
        self._manifest_mtime = mtime
        manifest = snapshot.read_manifest(self.index_directory)
        if (
            manifest is None
            or manifest.build_id == reader.state.build_id
            or manifest.model_id != self.model_id
        ):
            return False
        lexical = self._lexical
        state = snapshot.load(
            self.index_directory,
            manifest,
            lexical.analyzer,
            k1=lexical.k1,
            b=lexical.b,
            params=self.vector_params,
        )
        replaced = reader.state
        reader.swap(state)
        replaced.dense.close()  # the process that rebuilt drops a replaced Milvus collection
        self._saved_seq, self._saved_build = manifest.change_seq, manifest.build_id
        return True

    # -- persistence -------------------------------------------------------------------------

    def save(self, *, replace_build: bool = False) -> None:
        """Save the reader's state as the current snapshot (unless another process saved it,
        or a newer build, already), then forget changes the previous snapshot reflected."""
        writer = self._writer()
        reader = self.reader
        previous = snapshot.read_manifest(self.index_directory)
        with reader.reading() as state:
            manifest = snapshot.save(
                self.index_directory, state, self.dimension, replace_build=replace_build
            )
        self._last_save = time.monotonic()
        if manifest is None:
            return
        self._saved_seq, self._saved_build = manifest.change_seq, manifest.build_id
        self._manifest_mtime = _mtime(self.index_directory / snapshot.MANIFEST_NAME)
        if previous is not None and previous.change_seq <= manifest.change_seq:
            # Keep one snapshot's worth of history: a process following the log more slowly
            # than snapshots are saved reads it from there; one further behind compares ids.
            with writer.store.write(bump_generation=False) as conn:
                Store.prune_changes(conn, previous.change_seq)

    @property
    def dirty(self) -> bool:
        if self._reader is None:
            return False
        state = self._reader.state
        return state.build_id != self._saved_build or state.change_seq != self._saved_seq

    def flush(self) -> None:
        if self.dirty:
            self.save()

    def outgrown(self) -> bool:
        """Whether the store asked for `auto` and the served index is no longer the kind its
        size calls for (it grew past a threshold, or shrank well below one)."""
        if self._requested_type != "auto" or self._reader is None or self.readonly:
            return False
        dense = self._reader.state.dense
        if dense.index_type not in ("flat", "ivf", "ivf_sq8"):
            return False  # HNSW was asked for by name (`rebuild --index-type hnsw`): kept
        count = len(dense)
        wanted = resolve("auto", count, self.vector_params)
        if wanted == dense.index_type:
            return False
        # Hysteresis: an index is kept down to half the threshold that called for it, so a
        # store at a boundary is not rebuilt back and forth.
        params = self.vector_params
        if dense.index_type == "ivf_sq8":
            return count < params.auto_compress_threshold // 2
        if dense.index_type == "ivf" and wanted == "flat":
            return count < params.auto_threshold // 2
        return True  # grown past a threshold

    def maybe_save(self, *, rebuild: bool = True) -> None:
        """Save when dirty and `save_interval` seconds passed since the last save; with
        `rebuild`, rebuild aside and swap when an `auto` index has outgrown its kind (the
        server's follower thread does this, never a request: a rebuild at a million chunks
        takes minutes)."""
        if rebuild and self.outgrown():
            logger.info("the index outgrew its kind: rebuilding it aside (index_type auto)")
            self.rebuild("auto")
            return
        if (
            not self.readonly
            and self.dirty
            and time.monotonic() - self._last_save >= self.save_interval
        ):
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
        fusion: FusionParams | None = None,
        stage: StageTimer = no_stage,
        model_id: str | None = None,
    ) -> list[SearchHit]:
        """See `IndexReader.retrieve`."""
        return self.reader.retrieve(
            k=k,
            vector=vector,
            text=text,
            mode=mode,
            filters=filters,
            fusion=fusion,
            stage=stage,
            model_id=model_id,
        )

    def hits(self, pairs: Sequence[tuple[int, float]]) -> list[SearchHit]:
        return self.reader.hits(pairs)

    def stats(self) -> CatalogStats:
        state = self.reader.state  # first: opening the reader may save a snapshot
        disk = sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())
        counts = self.store.counts()
        manifest = snapshot.read_manifest(self.index_directory)
        with self.store.snapshot() as conn:
            store_seq = self.store.change_seq(conn)
        return CatalogStats(
            data_dir=str(self.data_dir),
            model_id=self.store.meta("model_id"),
            dimension=int(self.store.meta("dimension") or 0) or None,
            index_type=state.dense.index_type,
            index_spec=state.dense.spec,
            documents=sum(c[1] for c in counts),
            chunks=self.store.chunk_count(),
            vectors_in_index_file=manifest.vector_count if manifest else 0,
            vectors_in_memory=len(state.dense),
            lexical_postings=state.lexical.postings,
            store_change_seq=store_seq,
            index_file_change_seq=manifest.change_seq if manifest else None,
            disk_bytes=disk,
            collections=[CollectionStats(*c) for c in counts],
        )

    def documents_store(self) -> DocumentStore:
        return self.store

    def require_collection(self, name: str) -> None:
        if name not in self.store.collections():
            raise CollectionNotFound(name)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


def _manifest_type(directory: Path) -> IndexType | None:
    manifest = snapshot.read_manifest(directory)
    return manifest.index_type if manifest else None
