"""The interaction log: one record per `/query`, to a JSONL file or an SQLite table.

It lives beside the store, not in it (`interactions.jsonl` or `interactions.sqlite3` in the
data directory), so that logging a query never waits for an ingestion transaction and the
source of truth holds only documents. The service writes it from the event loop: through
aiosqlite, or a worker thread for the JSONL file, so a slow disk never blocks the loop.
`ragsvc log tail` reads it back.

Feedback on an answer (`POST /feedback`: up or down, an optional correction and comment) is
kept beside its interaction, in the same SQLite file, keyed by the interaction's row (a client
may reuse a request id; a caller only ever reaches the records it may read, see
`Interaction.visible_to`). Feedback needs the `sqlite` sink.

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
from typing import Any, Literal

import aiosqlite
import anyio
import msgspec

from indexes.rows import utc_now
from indexes.schema import SIDE_FILE_PRAGMAS
from ragsvc.errors import RagsvcError

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
    answer: str | None = None
    cited_chunk_ids: list[int] = []
    key_id: str | None = None
    """The API key that asked (None without keys)."""
    scope: list[str] | None = None
    """The collections the question could search when it named none (None: every one)."""
    retrieval_query: str | None = None
    """What was searched for a follow-up: its standalone form (None for a first question)."""

    def visible_to(self, collections: frozenset[str] | None) -> bool:
        """Whether a caller limited to `collections` (None: every one) may read this record:
        only when it may read every collection the answer could have come from."""
        if self.collection is not None:
            return collections is None or self.collection in collections
        if self.scope is not None:
            return collections is None or set(self.scope) <= collections
        return collections is None


Rating = Literal["up", "down"]


class Feedback(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    rating: Rating
    correction: str | None = None
    """What the answer should have said; it replaces the answer in fine-tuning exports."""
    comment: str | None = None
    key_id: str | None = None
    at: str = ""


class Rated(msgspec.Struct, frozen=True):
    """An interaction with its feedback, if it has any."""

    interaction: Interaction
    feedback: Feedback | None


class FeedbackUnavailable(RagsvcError):
    """Feedback needs the interaction log in SQLite."""


def interaction_scope(
    collections: frozenset[str] | None, collection: str | None
) -> list[str] | None:
    """`Interaction.scope` of a question naming `collection` (or none), asked by a caller
    limited to `collections` (None: every one)."""
    if collection is not None or collections is None:
        return None
    return sorted(collections)


_ENCODER = msgspec.json.Encoder()
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{6,}\d(?!\d)")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
PRUNE_INTERVAL = 3600.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, at TEXT NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_request ON interactions(request_id);
CREATE TABLE IF NOT EXISTS feedback (
    interaction_id INTEGER PRIMARY KEY REFERENCES interactions(id) ON DELETE CASCADE,
    rating TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL
);
"""


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
            for pragma in SIDE_FILE_PRAGMAS:
                await db.execute(pragma)
            await db.executescript(SCHEMA)
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
            await self._db.execute(
                "DELETE FROM feedback WHERE interaction_id IN "
                "(SELECT id FROM interactions WHERE at < ?)",
                (cutoff,),
            )
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
                answer=None if interaction.answer is None else redact(interaction.answer),
                retrieval_query=None
                if interaction.retrieval_query is None
                else redact(interaction.retrieval_query),
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

    # -- feedback --------------------------------------------------------------------------

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise FeedbackUnavailable(
                f"feedback needs the interaction log in SQLite (interaction_log is {self.sink!r})"
            )
        return self._db

    async def find(
        self, request_id: str, collections: frozenset[str] | None
    ) -> tuple[int, Interaction] | None:
        """The newest interaction with this request id that a caller limited to
        `collections` may read, with its row id."""
        db = self._require_db()
        cursor = await db.execute(
            "SELECT id, record FROM interactions WHERE request_id = ? ORDER BY id DESC",
            (request_id,),
        )
        for row_id, line in await cursor.fetchall():
            interaction = msgspec.json.decode(line, type=Interaction)
            if interaction.error is None and interaction.visible_to(collections):
                return int(row_id), interaction
        return None

    async def give_feedback(self, interaction_id: int, feedback: Feedback) -> Feedback:
        """Store (or replace) the feedback on one interaction."""
        db = self._require_db()
        feedback = msgspec.structs.replace(feedback, at=feedback.at or utc_now())
        if self.redact:
            feedback = msgspec.structs.replace(
                feedback,
                correction=None if feedback.correction is None else redact(feedback.correction),
                comment=None if feedback.comment is None else redact(feedback.comment),
            )
        await db.execute(
            "INSERT INTO feedback(interaction_id, rating, at, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(interaction_id) DO UPDATE SET rating = excluded.rating, "
            "at = excluded.at, record = excluded.record",
            (interaction_id, feedback.rating, feedback.at, _ENCODER.encode(feedback).decode()),
        )
        return feedback

    async def rated(
        self,
        collections: frozenset[str] | None,
        *,
        rating: Literal["up", "down", "none", "any"] = "any",
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Rated], int | None]:
        """Interactions, newest first, with their feedback, that a caller limited to
        `collections` may read; and the offset of the next page (None at the end)."""
        db = self._require_db()
        cursor = await db.execute(*_rated_query(rating, since, until, newest_first=True))
        found: list[Rated] = []
        skipped = 0
        async for row in cursor:
            item = _rated(row)
            if not item.interaction.visible_to(collections):
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(found) == limit:
                return found, offset + limit
            found.append(item)
        return found, None

    def _append(self, line: bytes) -> None:
        with open(self.path, "ab") as handle:
            handle.write(line + b"\n")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()


def _rated_query(
    rating: str, since: str | None, until: str | None, *, newest_first: bool
) -> tuple[str, list[object]]:
    """The SQL and parameters that list answered interactions with their feedback."""
    clauses = ["json_extract(i.record, '$.error') IS NULL"]
    params: list[object] = []
    if rating in ("up", "down"):
        clauses.append("f.rating = ?")
        params.append(rating)
    elif rating == "none":
        clauses.append("f.rating IS NULL")
    if since:
        clauses.append("i.at >= ?")
        params.append(since)
    if until:
        clauses.append("i.at < ?")
        params.append(until)
    return (
        "SELECT i.record, f.record FROM interactions i LEFT JOIN feedback f "
        f"ON f.interaction_id = i.id WHERE {' AND '.join(clauses)} "
        f"ORDER BY i.id{' DESC' if newest_first else ''}",
        params,
    )


def _rated(row: Any) -> Rated:
    interaction = msgspec.json.decode(row[0], type=Interaction)
    feedback = None if row[1] is None else msgspec.json.decode(row[1], type=Feedback)
    return Rated(interaction, feedback)


def read_rated(
    data_dir: Path,
    *,
    rating: Literal["up", "down", "none", "any"] = "any",
    since: str | None = None,
) -> list[Rated]:
    """Every answered interaction of a data directory's SQLite log with its feedback, oldest
    first (the export commands; no caller limits apply)."""
    path = data_dir / "interactions.sqlite3"
    if not path.exists():
        raise FeedbackUnavailable(f"no interaction log in {data_dir} (interactions.sqlite3)")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(*_rated_query(rating, since, None, newest_first=False)).fetchall()
    return [_rated(row) for row in rows]


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
