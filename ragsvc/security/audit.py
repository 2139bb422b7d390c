"""The audit log: every write and key change, who made it, from where, and how it ended.

One row per action in `audit.sqlite3`: when, the actor (a key id, `loopback` for the keyless
local user, `cli` for commands run on the machine), the action (`upload`, `delete`,
`key.create`, `key.revoke`), the ids it touched, the client address, and the outcome (`ok`, or
the HTTP status and reason of a refusal). `ragsvc audit tail` prints the latest.
Refused requests are logged too, so attempts on other tenants' ids leave a trace.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from indexes.rows import utc_now
from indexes.schema import open_side_file

AUDIT_NAME = "audit.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    client  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
"""


class AuditEntry(msgspec.Struct, frozen=True):
    actor: str
    action: str
    target: str
    """The ids touched: `document 12`, `jobs 3f..,9a.. in collection a`, `key 3f9c0a1b2d4e`."""
    client: str
    outcome: str
    at: str = ""


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._conn = open_side_file(path, _SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path) -> AuditLog:
        return cls(data_dir / AUDIT_NAME)

    def close(self) -> None:
        self._conn.close()

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO audit(at, actor, action, target, client, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.at or utc_now(), entry.actor, entry.action, entry.target, entry.client,
                 entry.outcome),
            )  # fmt: skip

    def tail(self, count: int) -> list[AuditEntry]:
        """The latest `count` entries, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT actor, action, target, client, outcome, at FROM audit "
                "ORDER BY id DESC LIMIT ?",
                (count,),
            ).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]
