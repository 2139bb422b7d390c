"""The interaction log: one record per `/query`, to a JSONL file or an SQLite table.

It lives beside the store, not in it (`interactions.jsonl` or `interactions.sqlite3` in the
data directory), so that logging a query never waits for an ingestion transaction and the
source of truth holds only documents. The service writes it from the event loop: through
aiosqlite, or a worker thread for the JSONL file, so a slow disk never blocks the loop.
`ragsvc log tail` reads it back.

Privacy: with `redact`, e-mail addresses, card numbers (13 to 19 digits passing the Luhn
check) and phone numbers are replaced in logged questions and errors before they are written;
with `retention_days`, records older than that are deleted when the log opens and then about
hourly.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
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
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{6,}\d(?!\d)")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
PRUNE_INTERVAL = 3600.0


def _luhn(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def redact(text: str) -> str:
    """`text` with e-mail addresses, card numbers and phone numbers replaced."""
    text = _EMAIL.sub("[email]", text)

    def card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[card]" if _luhn(digits) else match.group()

    text = _CARD.sub(card, text)

    def phone(match: re.Match[str]) -> str:
        found = match.group()
        digits = re.sub(r"\D", "", found)
        # A phone number has 8 to 15 digits and a + or separators; a date or a bare
        # run of digits (an order number) is left alone.
        shaped = found.startswith("+") or bool(re.search(r"[ ().-]", found))
        if 8 <= len(digits) <= 15 and shaped and not _DATE.fullmatch(found):
            return "[phone]"
        return found

    return _PHONE.sub(phone, text)


class InteractionLog:
    def __init__(
        self,
        path: Path,
        sink: Sink,
        db: aiosqlite.Connection | None,
        *,
        redact: bool = False,
        retention_days: int = 0,
    ) -> None:
        self.sink = sink
        self.path = path
        self._db = db
        self._lock = anyio.Lock()
        self.redact = redact
        self.retention_days = retention_days
        self._pruned_at = 0.0

    @classmethod
    async def open(
        cls, data_dir: Path, sink: Sink, *, redact: bool = False, retention_days: int = 0
    ) -> InteractionLog:
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
        log = cls(path, sink, db, redact=redact, retention_days=retention_days)
        await log.prune()
        return log

    async def prune(self) -> int:
        """Delete records older than `retention_days`; returns how many went."""
        self._pruned_at = time.monotonic()
        if self.retention_days <= 0 or self.sink == "off":
            return 0
        cutoff = (datetime.now(UTC) - timedelta(days=self.retention_days)).isoformat()
        if self._db is not None:
            cursor = await self._db.execute("DELETE FROM interactions WHERE at < ?", (cutoff,))
            return cursor.rowcount
        async with self._lock:
            return await anyio.to_thread.run_sync(self._prune_file, cutoff)

    def _prune_file(self, cutoff: str) -> int:
        if not self.path.exists():
            return 0
        lines = self.path.read_bytes().splitlines()
        kept = [line for line in lines if msgspec.json.decode(line, type=Interaction).at >= cutoff]
        if len(kept) < len(lines):
            scratch = self.path.with_suffix(".jsonl.tmp")
            scratch.write_bytes(b"".join(line + b"\n" for line in kept))
            scratch.replace(self.path)
        return len(lines) - len(kept)

    async def record(self, interaction: Interaction) -> None:
        if self.sink == "off":
            return
        if time.monotonic() - self._pruned_at > PRUNE_INTERVAL:
            await self.prune()
        interaction = msgspec.structs.replace(interaction, at=interaction.at or utc_now())
        if self.redact:
            interaction = msgspec.structs.replace(
                interaction,
                question=redact(interaction.question),
                error=None if interaction.error is None else redact(interaction.error),
            )
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
