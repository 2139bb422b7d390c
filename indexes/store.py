"""The SQLite store: collections, documents, chunks and embeddings, the source of truth.

Everything needed to rebuild the vector index lives here: chunk text, the embedding of every
chunk text keyed by (model id, text hash), the model id and its dimension. The schema is
versioned with `PRAGMA user_version` and upgraded by forward-only migrations.

Reads use one connection per thread; writes go through `Store.write()`, one transaction at a
time under a lock, and each write transaction advances the store's *generation*, which the
vector-index manifest records so that a stale index is detected on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from indexes.errors import CollectionNotFound, DocumentNotFound, SchemaTooNew, StoreMissing

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE collections (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE documents (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        external_id   TEXT,
        source_name   TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        sha256        TEXT NOT NULL,
        byte_size     INTEGER NOT NULL,
        status        TEXT NOT NULL DEFAULT 'ready',
        page_count    INTEGER,
        char_count    INTEGER NOT NULL,
        chunk_count   INTEGER NOT NULL,
        metadata      TEXT NOT NULL DEFAULT '{}',
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        UNIQUE (collection_id, source_name),
        UNIQUE (collection_id, sha256)
    );
    CREATE INDEX documents_external_id ON documents(collection_id, external_id);
    -- AUTOINCREMENT: a chunk id is also its FAISS id and must never be reused.
    CREATE TABLE chunks (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal     INTEGER NOT NULL,
        text        TEXT NOT NULL,
        page_start  INTEGER,
        page_end    INTEGER,
        char_start  INTEGER NOT NULL,
        char_end    INTEGER NOT NULL,
        token_count INTEGER NOT NULL,
        text_hash   BLOB NOT NULL,
        UNIQUE (document_id, ordinal)
    );
    CREATE INDEX chunks_text_hash ON chunks(text_hash);
    CREATE TABLE embeddings (
        model_id  TEXT NOT NULL,
        text_hash BLOB NOT NULL,
        vector    BLOB NOT NULL,
        PRIMARY KEY (model_id, text_hash)
    ) WITHOUT ROWID;
    """,
    # 2: ingestion jobs. The uploaded bytes stay in `payload` until the job ends, so a job
    # acknowledged to a client survives a crash and is resumed on restart.
    """
    CREATE TABLE jobs (
        id            TEXT PRIMARY KEY,
        collection    TEXT NOT NULL,
        file_name     TEXT NOT NULL,
        metadata      TEXT NOT NULL DEFAULT '{}',
        payload       BLOB,
        byte_size     INTEGER NOT NULL,
        state         TEXT NOT NULL,
        pages         INTEGER,
        chunks_total  INTEGER,
        chunks_done   INTEGER NOT NULL DEFAULT 0,
        document_id   INTEGER,
        outcome       TEXT,
        error         TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL,
        started_at    TEXT,
        finished_at   TEXT
    );
    CREATE INDEX jobs_pending ON jobs(state, created_at);
    """,
    # 3: lexical search. FTS5 over chunk text, maintained by triggers, so the index changes in
    # the same transaction as the chunks and can never drift from them.
    """
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
    """,
    # 4: a change log of chunk ids, kept by triggers in the same transaction as the chunks, so
    # every process that holds an index in memory follows the store by reading what changed
    # since it last looked. Sentence spans and vectors are stored beside a chunk's embedding.
    # BM25 moves to an in-memory index derived from the chunks, so FTS5 goes.
    """
    DROP TRIGGER chunks_fts_insert;
    DROP TRIGGER chunks_fts_delete;
    DROP TABLE chunks_fts;
    CREATE TABLE chunk_changes (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        chunk_id INTEGER NOT NULL,
        added    INTEGER NOT NULL
    );
    CREATE TRIGGER chunk_changes_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunk_changes(chunk_id, added) VALUES (new.id, 1);
    END;
    CREATE TRIGGER chunk_changes_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunk_changes(chunk_id, added) VALUES (old.id, 0);
    END;
    ALTER TABLE embeddings ADD COLUMN sentence_spans BLOB;
    ALTER TABLE embeddings ADD COLUMN sentence_vectors BLOB;
    """,
    # 4: where in its document a chunk came from (heading path, slide, sheet and rows).
    """
    ALTER TABLE chunks ADD COLUMN location TEXT;
    """,
    # 5: the document title and heading path embedded and indexed with a chunk's text.
    """
    ALTER TABLE chunks ADD COLUMN context TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# SQLite limits the number of bound parameters per statement; stay well below it.
_IN_BATCH = 900
_NO_IDS = np.zeros(0, dtype=np.int64)


CONTEXT_SEPARATOR = "\n\n"


def embedded_text(context: str | None, text: str) -> str:
    """What is embedded and indexed for a chunk: its context, a blank line, its text."""
    return f"{context}{CONTEXT_SEPARATOR}{text}" if context else text


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ChunkEmbedding(NamedTuple):
    """A chunk text's embedding and, when the embedder pools them from the same forward pass,
    its sentences' spans (character offsets in the chunk text) and vectors."""

    vector: np.ndarray
    """float32, (dimension,), L2-normalised."""
    sentence_spans: np.ndarray | None = None
    """int32, (sentences, 2)."""
    sentence_vectors: np.ndarray | None = None
    """float16, (sentences, dimension), L2-normalised before rounding."""


class Change(NamedTuple):
    """What the change log says happened to chunks since a sequence number."""

    seq: int
    """The newest sequence number read; pass it back to read on from there."""
    added: np.ndarray
    removed: np.ndarray


class ChunkData(NamedTuple):
    """Chunks as an index needs them: ids (ascending), owners, text and vectors."""

    ids: np.ndarray
    document_ids: np.ndarray
    collection_ids: np.ndarray
    texts: list[str]
    vectors: np.ndarray


class NewChunk(msgspec.Struct, frozen=True):
    """A chunk ready to be stored; `text_hash` keys its embedding."""

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    text_hash: bytes
    page_start: int | None = None
    page_end: int | None = None
    location: str | None = None
    """Where in the document the chunk lies, beyond pages: "Intro > Results", "slide 2",
    "sheet Sales, rows 2-40"."""
    context: str | None = None
    """The document's title and heading path, embedded and indexed with the text (not part
    of `text` or its offsets); `text_hash` is the hash of `embedded_text`."""

    @property
    def embedded_text(self) -> str:
        return embedded_text(self.context, self.text)


class NewDocument(msgspec.Struct, frozen=True):
    """A fully extracted and chunked document, ready to be committed in one transaction."""

    collection: str
    source_name: str
    media_type: str
    sha256: str
    byte_size: int
    char_count: int
    chunks: list[NewChunk]
    external_id: str | None = None
    page_count: int | None = None
    metadata: dict[str, Any] = {}


class DocumentRow(msgspec.Struct, frozen=True):
    id: int
    collection: str
    source_name: str
    external_id: str | None
    media_type: str
    sha256: str
    byte_size: int
    status: str
    page_count: int | None
    char_count: int
    chunk_count: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ChunkRow(msgspec.Struct, frozen=True):
    id: int
    document_id: int
    ordinal: int
    text: str
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    token_count: int
    location: str | None = None


DOCUMENT_COLUMNS = """
    d.id, c.name, d.source_name, d.external_id, d.media_type, d.sha256, d.byte_size, d.status,
    d.page_count, d.char_count, d.chunk_count, d.metadata, d.created_at, d.updated_at
"""


CHUNK_COLUMNS = (
    "id, document_id, ordinal, text, page_start, page_end, char_start, char_end, token_count, "
    "location"
)
SELECT_DOCUMENT = (
    f"SELECT {DOCUMENT_COLUMNS} FROM documents d "
    "JOIN collections c ON c.id = d.collection_id WHERE d.id = ?"
)
SELECT_DOCUMENT_CHUNKS = (
    f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE document_id = ? ORDER BY ordinal"
)


def documents_query(
    collection: str | None, limit: int, offset: int, collections: Sequence[str] | None = None
) -> tuple[str, tuple[Any, ...]]:
    """A page of documents by id, of one collection or of any of `collections` when given:
    (SQL, parameters)."""
    sql = f"SELECT {DOCUMENT_COLUMNS} FROM documents d JOIN collections c ON c.id = d.collection_id"
    page = " ORDER BY d.id LIMIT ? OFFSET ?"
    if collection is not None:
        return sql + " WHERE c.name = ?" + page, (collection, limit, offset)
    if collections is not None:
        marks = ",".join("?" * len(collections))
        return sql + f" WHERE c.name IN ({marks})" + page, (*collections, limit, offset)
    return sql + page, (limit, offset)


def document_row(row: Any) -> DocumentRow:
    values = list(row)
    values[11] = json.loads(values[11])
    return DocumentRow(*values)


class Store:
    """One SQLite database file. Thread-safe: per-thread readers, one locked writer."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly and not path.exists():
            raise StoreMissing(f"no store at {path}; run `ragsvc ingest` first")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._migrate(self._writer)
        else:
            version = self.reader().execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(self._too_new_message(version))

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.path}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed document survives power loss, not only a killed process.
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.row_factory = sqlite3.Row
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (autocommit, so each query sees the latest commit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        self._readers = []
        self._local = threading.local()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @contextmanager
    def write(self, *, bump_generation: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; commits (advancing the generation), or rolls back.

        Writes that do not touch documents or chunks (job bookkeeping) pass
        `bump_generation=False`, so the vector index is not thought stale because of them.
        """
        if self._writer is None:
            raise RuntimeError("store opened read-only")
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                if bump_generation:
                    conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('generation', '1') "
                        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                    )
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _too_new_message(self, version: int) -> str:
        return (
            f"{self.path} has schema version {version}, newer than the newest this ragsvc "
            f"knows ({SCHEMA_VERSION}); upgrade ragsvc"
        )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(self._too_new_message(version))
        for number in range(version, SCHEMA_VERSION):
            # One transaction per migration; executescript keeps trigger bodies whole.
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\n"
                    f"PRAGMA user_version = {number + 1};\nCOMMIT;"
                )
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- meta --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def generation(self, conn: sqlite3.Connection | None = None) -> int:
        """The store's generation; with a writer's `conn`, the one its transaction commits."""
        row = (
            (conn or self.reader())
            .execute("SELECT value FROM meta WHERE key = 'generation'")
            .fetchone()
        )
        return int(row[0]) if row is not None else 0

    # -- collections and documents -----------------------------------------------------------

    def collection_id(self, name: str, conn: sqlite3.Connection | None = None) -> int:
        row = (
            (conn or self.reader())
            .execute("SELECT id FROM collections WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise CollectionNotFound(name)
        return int(row[0])

    def collection_ids(self, names: Sequence[str]) -> list[int]:
        """The ids of those of `names` that exist."""
        rows = (
            self.reader()
            .execute(
                f"SELECT id FROM collections WHERE name IN ({','.join('?' * len(names))})", names
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows]

    @staticmethod
    def ensure_collection(conn: sqlite3.Connection, name: str) -> int:
        conn.execute(
            "INSERT INTO collections(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
            (name, utc_now()),
        )
        return int(conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()[0])

    def collections(self) -> list[str]:
        rows = self.reader().execute("SELECT name FROM collections ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def find_by_sha256(self, collection: str, sha256: str) -> int | None:
        row = (
            self.reader()
            .execute(
                "SELECT d.id FROM documents d JOIN collections c ON c.id = d.collection_id "
                "WHERE c.name = ? AND d.sha256 = ?",
                (collection, sha256),
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def document(self, document_id: int) -> DocumentRow:
        row = self.reader().execute(SELECT_DOCUMENT, (document_id,)).fetchone()
        if row is None:
            raise DocumentNotFound(document_id)
        return document_row(row)

    def documents(
        self, collection: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[DocumentRow]:
        if collection is not None:
            self.collection_id(collection)
        sql, params = documents_query(collection, limit, offset)
        rows = self.reader().execute(sql, params).fetchall()
        return [document_row(r) for r in rows]

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        found: dict[int, ChunkRow] = {}
        for batch in _batches(list(chunk_ids)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch
            )
            for row in rows:
                found[int(row[0])] = ChunkRow(*row)
        return found

    def document_chunks(self, document_id: int) -> list[ChunkRow]:
        rows = self.reader().execute(SELECT_DOCUMENT_CHUNKS, (document_id,))
        return [ChunkRow(*row) for row in rows]

    def chunk_ids(self, collection: str | None = None) -> np.ndarray:
        if collection is None:
            rows = self.reader().execute("SELECT id FROM chunks ORDER BY id")
        else:
            collection_id = self.collection_id(collection)
            rows = self.reader().execute(
                "SELECT ch.id FROM chunks ch JOIN documents d ON d.id = ch.document_id "
                "WHERE d.collection_id = ? ORDER BY ch.id",
                (collection_id,),
            )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    # -- embeddings --------------------------------------------------------------------------

    def cached_hashes(self, model_id: str, text_hashes: Iterable[bytes]) -> set[bytes]:
        """The subset of `text_hashes` that already has an embedding for `model_id`."""
        found: set[bytes] = set()
        for batch in _batches(list(text_hashes)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                f"SELECT text_hash FROM embeddings WHERE model_id = ? AND text_hash IN ({marks})",
                (model_id, *batch),
            )
            found.update(bytes(r[0]) for r in rows)
        return found

    def vectors_for_chunks(
        self,
        model_id: str,
        chunk_ids: Sequence[int] | None,
        dimension: int,
        *,
        conn: sqlite3.Connection | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) batches for the given chunks, or for every chunk when None.

        `conn` reads through a writer's open transaction instead of this thread's reader.
        Raises `LookupError` when a chunk has no stored embedding for `model_id`.
        """
        conn = conn or self.reader()

        def rows_for(batch: list[int] | None) -> list[sqlite3.Row]:
            sql = (
                "SELECT ch.id, e.vector FROM chunks ch LEFT JOIN embeddings e "
                "ON e.model_id = ? AND e.text_hash = ch.text_hash"
            )
            if batch is None:
                return conn.execute(sql + " ORDER BY ch.id", (model_id,)).fetchall()
            marks = ",".join("?" * len(batch))
            return conn.execute(sql + f" WHERE ch.id IN ({marks})", (model_id, *batch)).fetchall()

        def to_arrays(rows: list[sqlite3.Row]) -> tuple[np.ndarray, np.ndarray]:
            missing = [int(r[0]) for r in rows if r[1] is None]
            if missing:
                raise LookupError(
                    f"{len(missing)} chunks have no stored embedding for {model_id!r} "
                    f"(first: {missing[:5]}); run `ragsvc rebuild --reembed`"
                )
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            return ids, vectors.reshape(len(rows), dimension)

        if chunk_ids is None:
            rows = rows_for(None)
            for start in range(0, len(rows), 10_000):
                yield to_arrays(rows[start : start + 10_000])
        else:
            for batch in _batches(list(chunk_ids)):
                yield to_arrays(rows_for(batch))

    def texts_missing_embeddings(self, model_id: str) -> list[tuple[bytes, str]]:
        """Distinct (text hash, embedded text) of chunks with no embedding for `model_id`."""
        rows = self.reader().execute(
            f"SELECT ch.text_hash, MIN(COALESCE(ch.context || '{CONTEXT_SEPARATOR}', '') || "
            "ch.text) FROM chunks ch LEFT JOIN embeddings e "
            "ON e.model_id = ? AND e.text_hash = ch.text_hash WHERE e.text_hash IS NULL "
            "GROUP BY ch.text_hash",
            (model_id,),
        )
        return [(bytes(r[0]), str(r[1])) for r in rows]

    @staticmethod
    def insert_embeddings(
        conn: sqlite3.Connection,
        model_id: str,
        vectors: Mapping[bytes, np.ndarray | ChunkEmbedding],
    ) -> None:
        def row(text_hash: bytes, value: np.ndarray | ChunkEmbedding) -> tuple[Any, ...]:
            embedding = value if isinstance(value, ChunkEmbedding) else ChunkEmbedding(value)
            spans = embedding.sentence_spans
            sentences = embedding.sentence_vectors
            return (
                model_id,
                text_hash,
                np.ascontiguousarray(embedding.vector, dtype=np.float32).tobytes(),
                None if spans is None else np.ascontiguousarray(spans, dtype=np.int32).tobytes(),
                None
                if sentences is None
                else np.ascontiguousarray(sentences, dtype=np.float16).tobytes(),
            )

        conn.executemany(
            "INSERT OR IGNORE INTO embeddings(model_id, text_hash, vector, sentence_spans, "
            "sentence_vectors) VALUES (?, ?, ?, ?, ?)",
            (row(h, v) for h, v in vectors.items()),
        )

    def sentences_for_chunks(
        self, model_id: str, chunk_ids: Sequence[int], dimension: int
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(spans, float32 vectors) of the chunks whose embedding stored sentence vectors."""
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for batch in _batches(list(chunk_ids)):
            marks = ",".join("?" * len(batch))
            rows = self.reader().execute(
                "SELECT ch.id, e.sentence_spans, e.sentence_vectors FROM chunks ch "
                "JOIN embeddings e ON e.model_id = ? AND e.text_hash = ch.text_hash "
                f"WHERE ch.id IN ({marks}) AND e.sentence_vectors IS NOT NULL",
                (model_id, *batch),
            )
            for chunk_id, spans, vectors in rows:
                found[int(chunk_id)] = (
                    np.frombuffer(spans, dtype=np.int32).reshape(-1, 2),
                    np.frombuffer(vectors, dtype=np.float16)
                    .reshape(-1, dimension)
                    .astype(np.float32),
                )
        return found

    # -- the change log ----------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on this thread's reader: every query in it sees one state."""
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def change_seq(conn: sqlite3.Connection) -> int:
        """The newest change-log sequence number (0 before any chunk was written)."""
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'chunk_changes'"
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def pruned_through(self, conn: sqlite3.Connection | None = None) -> int:
        row = (
            (conn or self.reader())
            .execute("SELECT value FROM meta WHERE key = 'chunk_changes_pruned_through'")
            .fetchone()
        )
        return int(row[0]) if row is not None else 0

    def changes_since(self, seq: int, conn: sqlite3.Connection) -> Change | None:
        """Chunks added and removed after `seq` (an id in both lists was added, then removed),
        or None when the log no longer reaches back that far (it was pruned)."""
        if seq < self.pruned_through(conn):
            return None
        rows = conn.execute(
            "SELECT seq, chunk_id, added FROM chunk_changes WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        if not rows:
            return Change(seq, _NO_IDS, _NO_IDS)
        added = np.fromiter((r[1] for r in rows if r[2]), dtype=np.int64)
        removed = np.fromiter((r[1] for r in rows if not r[2]), dtype=np.int64)
        return Change(int(rows[-1][0]), added, removed)

    @staticmethod
    def prune_changes(conn: sqlite3.Connection, through: int) -> None:
        """Forget changes up to `through`, which a saved index snapshot already reflects."""
        conn.execute("DELETE FROM chunk_changes WHERE seq <= ?", (through,))
        Store.set_meta(conn, "chunk_changes_pruned_through", str(through))

    def chunk_data(
        self,
        model_id: str,
        dimension: int,
        chunk_ids: Sequence[int] | None,
        conn: sqlite3.Connection,
        batch: int = 10_000,
    ) -> Iterator[ChunkData]:
        """Chunks with their document, collection, text and vector, by ascending id; every
        chunk when `chunk_ids` is None. Raises `LookupError` for a chunk with no embedding."""
        select = (
            "SELECT ch.id, ch.document_id, d.collection_id, "
            f"COALESCE(ch.context || '{CONTEXT_SEPARATOR}', '') || ch.text, e.vector "
            "FROM chunks ch "
            "JOIN documents d ON d.id = ch.document_id LEFT JOIN embeddings e "
            "ON e.model_id = ? AND e.text_hash = ch.text_hash"
        )

        def to_data(rows: list[sqlite3.Row]) -> ChunkData:
            missing = [int(r[0]) for r in rows if r[4] is None]
            if missing:
                raise LookupError(
                    f"{len(missing)} chunks have no stored embedding for {model_id!r} "
                    f"(first: {missing[:5]}); run `ragsvc rebuild --reembed`"
                )
            count = len(rows)
            return ChunkData(
                np.fromiter((r[0] for r in rows), dtype=np.int64, count=count),
                np.fromiter((r[1] for r in rows), dtype=np.int64, count=count),
                np.fromiter((r[2] for r in rows), dtype=np.int64, count=count),
                [str(r[3]) for r in rows],
                np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(
                    count, dimension
                ),
            )

        if chunk_ids is None:
            cursor = conn.execute(select + " ORDER BY ch.id", (model_id,))
            while rows := cursor.fetchmany(batch):
                yield to_data(rows)
            return
        ordered = sorted(int(i) for i in chunk_ids)
        for part in _batches(ordered):
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                select + f" WHERE ch.id IN ({marks}) ORDER BY ch.id", (model_id, *part)
            ).fetchall()
            if rows:
                yield to_data(rows)

    def document_ids_where(self, where: str, params: Sequence[object]) -> np.ndarray:
        """Ids of documents matching a condition on `d` (documents) and `col` (collections)."""
        rows = self.reader().execute(
            "SELECT d.id FROM documents d JOIN collections col ON col.id = d.collection_id "
            f"WHERE {where}",
            list(params),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    # -- counts ------------------------------------------------------------------------------

    def counts(self) -> list[tuple[str, int, int]]:
        """(collection, documents, chunks) for every collection."""
        rows = self.reader().execute(
            "SELECT c.name, COUNT(DISTINCT d.id), COUNT(ch.id) FROM collections c "
            "LEFT JOIN documents d ON d.collection_id = c.id "
            "LEFT JOIN chunks ch ON ch.document_id = d.id GROUP BY c.id ORDER BY c.name"
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def chunk_count(self) -> int:
        return int(self.reader().execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


def _batches(items: list[Any], size: int = _IN_BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
