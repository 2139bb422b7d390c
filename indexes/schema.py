"""The store's SQLite schema, its forward-only migrations, and the connections of a store file:
per-thread readers, one locked writer, the schema upgraded on open (`PRAGMA user_version`).

`open_side_file` opens the service's own small databases (jobs, keys, audit, interactions) the
one way: WAL, the same busy timeout, their schema.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexes.errors import SchemaTooNew, StoreMissing

DATABASE_NAME = "ragsvc.sqlite3"
"""The store's file in a data directory."""
BUSY_TIMEOUT_MS = 30_000
"""How long a connection waits for another process's write lock before it fails."""

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

SCHEMA_VERSION = len(MIGRATIONS)

# SQLite limits the number of bound parameters per statement; stay well below it.
IN_BATCH = 900


def batches(items: list[Any], size: int = IN_BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


SIDE_FILE_PRAGMAS = ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
"""How every side database is opened (async openers run these too)."""


def open_side_file(
    path: Path, schema: str | None = None, *, durable: bool = False
) -> sqlite3.Connection:
    """A side database of the service (a file it owns beside the store): autocommit, usable
    from any thread (callers lock), `SIDE_FILE_PRAGMAS`, its schema created when given;
    `durable`: a commit survives power loss, not only a killed process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    for pragma in SIDE_FILE_PRAGMAS:
        conn.execute(pragma)
    if durable:
        conn.execute("PRAGMA synchronous=FULL")
    if schema is not None:
        conn.executescript(schema)
    return conn


class StoreFile:
    """One SQLite store file. Thread-safe: per-thread readers, one locked writer."""

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
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
