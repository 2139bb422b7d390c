"""API keys: created, listed and revoked by the CLI, checked by the server (`keys.sqlite3`).

A key reads `rsk_<id>_<secret>`. The id finds the row; the secret (256 random bits) is
checked against its stored SHA-256 in constant time. Only the hash is stored and the key is
shown once, when it is created. A fast hash is enough for secrets this random: there is no
dictionary to try.

Scopes nest: `read` (every GET, `/search`, `/query`) < `write` (also uploads and deletes) <
`admin` (also collections). A key may be limited to collections; it then sees nothing else.

The server keeps the active keys in memory and reloads them when the file changes (SQLite's
`data_version`), so a key created or revoked by the CLI counts from the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from indexes import NotFound
from indexes.schema import open_side_file

KEYS_NAME = "keys.sqlite3"
PREFIX = "rsk"
Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    collections TEXT NOT NULL,          -- JSON list; empty: every collection
    secret_hash TEXT NOT NULL,
    rate_limit  REAL,                   -- requests per second; NULL: the setting's
    upload_quota INTEGER,               -- bytes per UTC day; NULL: the setting's
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE TABLE IF NOT EXISTS uploads (
    key_id TEXT NOT NULL,
    day    TEXT NOT NULL,               -- UTC date
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
);
"""


class KeyNotFound(NotFound):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} does not exist")
        self.key_id = key_id


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    name: str
    scope: Scope
    collections: list[str]
    """Empty: every collection."""
    created_at: float
    revoked_at: float | None = None
    rate_limit: float | None = None
    """Requests per second; None: the `key_rate_limit` setting."""
    upload_quota: int | None = None
    """Bytes per UTC day; None: the `key_upload_bytes_per_day` setting."""


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts for: a key, or the keyless loopback user (`key_id` None)."""

    key_id: str | None
    scope: Scope
    collections: frozenset[str] | None
    """None: every collection."""
    rate_limit: float | None = None
    upload_quota: int | None = None

    def can(self, scope: Scope) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def sees(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


LOOPBACK_USER = Principal(key_id=None, scope="admin", collections=None)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_side_file(path, _SCHEMA)
        self._lock = threading.Lock()
        self._version = -1
        self._active: dict[str, tuple[str, ApiKey]] = {}

    @classmethod
    def open(cls, data_dir: Path) -> KeyStore:
        return cls(data_dir / KEYS_NAME)

    def close(self) -> None:
        self._conn.close()

    def create(
        self,
        name: str,
        scope: Scope,
        collections: list[str] | None = None,
        *,
        rate_limit: float | None = None,
        upload_quota: int | None = None,
    ) -> str:
        """A new key; returns it whole (the only time it exists outside the caller)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        if not name.strip() or len(name) > 200:
            raise ValueError("a key needs a name of 1 to 200 characters")
        if any(not c.strip() or len(c) > 200 for c in collections or []):
            raise ValueError("collection names are 1 to 200 characters")
        if rate_limit is not None and rate_limit < 0:
            raise ValueError("--rate must be 0 (unlimited) or more requests per second")
        if upload_quota is not None and upload_quota < 0:
            raise ValueError("--upload-quota must be 0 (unlimited) or more bytes per day")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys(id, name, scope, collections, secret_hash, rate_limit, "
                "upload_quota, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name.strip(),
                    scope,
                    msgspec.json.encode(sorted(set(collections or []))).decode(),
                    _hash(secret),
                    rate_limit,
                    upload_quota,
                    time.time(),
                ),
            )
            self._version = -1  # this connection's own writes leave data_version alone
        return f"{PREFIX}_{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            # Revoking a revoked key changes nothing and is not an error.
            self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            self._version = -1
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise KeyNotFound(key_id)
        return _key(row)

    # -- the server's side -------------------------------------------------------------------

    def active(self) -> dict[str, tuple[str, ApiKey]]:
        """The active keys by id, read again when another connection changed the file."""
        with self._lock:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            if version != self._version:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS}, secret_hash FROM api_keys WHERE revoked_at IS NULL"
                ).fetchall()
                self._active = {row[0]: (row[-1], _key(row[:-1])) for row in rows}
                self._version = version
            return self._active

    def has_keys(self) -> bool:
        """Whether any key is active: without one the service is open, on loopback only."""
        return bool(self.active())

    def authenticate(
        self, token: str, active: dict[str, tuple[str, ApiKey]] | None = None
    ) -> ApiKey | None:
        """The active key `token` is, or None; `active` is `self.active()` when the caller
        already read it."""
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        entry = (self.active() if active is None else active).get(parts[1])
        if entry is None:
            return None
        secret_hash, key = entry
        return key if hmac.compare_digest(secret_hash, _hash(parts[2])) else None

    def revoked_id(self, token: str) -> str | None:
        """The id of the revoked key `token` is, if it is one: the audit log names who was
        refused (an unknown token names no one, its id being only a claim)."""
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT secret_hash FROM api_keys WHERE id = ? AND revoked_at IS NOT NULL",
                (parts[1],),
            ).fetchone()
        if row is not None and hmac.compare_digest(str(row[0]), _hash(parts[2])):
            return parts[1]
        return None

    # -- upload quotas -----------------------------------------------------------------------

    def uploaded_today(self, key_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT bytes FROM uploads WHERE key_id = ? AND day = ?", (key_id, _today())
            ).fetchone()
        return int(row[0]) if row else 0

    def add_upload(self, key_id: str, size: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO uploads(key_id, day, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT(key_id, day) DO UPDATE SET bytes = bytes + excluded.bytes",
                (key_id, _today(), size),
            )


_COLUMNS = "id, name, scope, collections, created_at, revoked_at, rate_limit, upload_quota"


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _key(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, scope, collections, created_at, revoked_at, rate_limit, upload_quota = row
    return ApiKey(
        id=str(key_id),
        name=str(name),
        scope=scope,
        collections=msgspec.json.decode(str(collections)),
        created_at=float(created_at),
        revoked_at=None if revoked_at is None else float(revoked_at),
        rate_limit=None if rate_limit is None else float(rate_limit),
        upload_quota=None if upload_quota is None else int(upload_quota),
    )


def principal_of(key: ApiKey) -> Principal:
    return Principal(
        key_id=key.id,
        scope=key.scope,
        collections=frozenset(key.collections) if key.collections else None,
        rate_limit=key.rate_limit,
        upload_quota=key.upload_quota,
    )
