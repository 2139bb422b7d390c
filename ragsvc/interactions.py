"""The interaction log: one record per `/query`, to a JSONL file or an SQLite table.

It lives beside the store, not in it (`interactions.jsonl` or `interactions.sqlite3` in the
data directory), so that logging a query never waits for an ingestion transaction and the
source of truth holds only documents. The service writes it from the event loop: through
aiosqlite, or a worker thread for the JSONL file, so a slow disk never blocks the loop.
`ragsvc log tail` reads it back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import aiosqlite
import anyio
import msgspec

from indexes.store import utc_now

Sink = Literal["sqlite", "jsonl", "off"]


class Interaction(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    at: str = ""
    question: str
    collection: str | None = None
    chunk_ids: list[int] = []
    scores: list[float] = []
    template: str | None = None
    backend: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    embed_ms: float | None = None
    search_ms: float | None = None
    answer_ms: float | None = None
    total_ms: float | None = None
    confidence: float | None = None
    answerable: bool | None = None
    cached: bool = False
    streamed: bool = False
    fallback_reason: str | None = None
    error: str | None = None


_ENCODER = msgspec.json.Encoder()


class InteractionLog:
    def __init__(self, path: Path, sink: Sink, db: aiosqlite.Connection | None) -> None:
        self.sink = sink
        self.path = path
        self._db = db
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, data_dir: Path, sink: Sink) -> InteractionLog:
        path = data_dir / ("interactions.sqlite3" if sink == "sqlite" else "interactions.jsonl")
        db = None
        if sink == "sqlite":
            data_dir.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path, isolation_level=None)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(
                "CREATE TABLE IF NOT EXISTS interactions ("
                "id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, at TEXT NOT NULL, "
                "record TEXT NOT NULL)"
            )
        return cls(path, sink, db)

    async def record(self, interaction: Interaction) -> None:
        if self.sink == "off":
            return
        interaction = msgspec.structs.replace(interaction, at=interaction.at or utc_now())
        line = _ENCODER.encode(interaction)
        if self._db is not None:
            await self._db.execute(
                "INSERT INTO interactions(request_id, at, record) VALUES (?, ?, ?)",
                (interaction.request_id, interaction.at, line.decode()),
            )
            return
        async with self._lock:
            await anyio.to_thread.run_sync(self._append, line)

    def _append(self, line: bytes) -> None:
        with open(self.path, "ab") as handle:
            handle.write(line + b"\n")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()


def tail(data_dir: Path, sink: Sink, count: int) -> list[Interaction]:
    """The last `count` interactions, oldest first."""
    if sink == "sqlite":
        path = data_dir / "interactions.sqlite3"
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT record FROM interactions ORDER BY id DESC LIMIT ?", (count,)
            ).fetchall()
        lines = [r[0] for r in reversed(rows)]
    elif sink == "jsonl":
        path = data_dir / "interactions.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()[-count:]
    else:
        return []
    return [msgspec.json.decode(line, type=Interaction) for line in lines]
