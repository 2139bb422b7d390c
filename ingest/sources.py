"""Where documents come from: files and folders, or BEIR-style JSONL records.

A source is loaded lazily, in the pipeline's preparation thread, so that reading and
parsing overlap with embedding. Missing paths are refused up front, before anything is
written, so a typo never leaves a half-done run behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ingest.errors import InputNotFound, InvalidRecord
from ingest.extract.base import Extracted


class Loaded(NamedTuple):
    data: bytes
    """The bytes that identify the document (their sha256 deduplicates it)."""
    external_id: str | None
    metadata: dict[str, Any]
    extracted: Extracted | None
    """Set when the source is already text (JSONL records); otherwise extracted from `data`."""
    collection: str | None = None
    """The collection this document goes to, when the source says (else the run's)."""


class Source(Protocol):
    name: str
    """How the document is named in the store and in reports (may be refined by `load`)."""
    key: str
    """Identifies this source in outcomes and stage reports; never changes."""

    def load(self) -> Loaded:
        """Read the document; raise an `DocumentError` subclass when it cannot be."""
        ...


class FileSource:
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.key = str(path)

    def load(self) -> Loaded:
        return Loaded(self.path.read_bytes(), None, {}, None)


class RecordSource:
    """One line of a BEIR corpus: {"_id": ..., "title": ..., "text": ..., "metadata": {...}}."""

    def __init__(self, line: str, line_number: int) -> None:
        self.line = line
        self.name = self.key = f"line {line_number}"

    def load(self) -> Loaded:
        try:
            record = json.loads(self.line)
        except json.JSONDecodeError as error:
            raise InvalidRecord(f"invalid JSON: {error}") from None
        if not isinstance(record, dict):
            raise InvalidRecord("a record must be a JSON object")
        external_id, title, text = record.get("_id"), record.get("title", ""), record.get("text")
        if not isinstance(external_id, str | int) or str(external_id) == "":
            raise InvalidRecord('a record needs a non-empty "_id"')
        if not isinstance(text, str) or not isinstance(title, str | None):
            raise InvalidRecord('"text" (and "title", if given) must be strings')
        self.name = str(external_id)
        body = f"{title}\n\n{text}" if title else text
        if not body.strip():
            raise InvalidRecord(f"record {external_id!r} has no text")
        metadata: dict[str, Any] = {"title": title} if title else {}
        if isinstance(record.get("metadata"), dict):
            metadata.update(record["metadata"])
        extracted = Extracted("text/plain", body, title=title or None)
        return Loaded(body.encode("utf-8"), str(external_id), metadata, extracted)


def file_sources(paths: Sequence[Path], *, recursive: bool = False) -> list[FileSource]:
    """Every file named or inside a named folder (its subfolders too when `recursive`).

    A file's name is its path relative to the folder given, prefixed by that folder's name.
    Hidden files and folders are skipped. Raises `InputNotFound` for a path that does not exist.
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputNotFound(f"no such file or directory: {', '.join(missing)}")
    sources: list[FileSource] = []
    for path in paths:
        if path.is_file():
            sources.append(FileSource(path, path.name))
            continue
        pattern = "**/*" if recursive else "*"
        root = path.resolve()
        for child in sorted(root.glob(pattern)):
            relative = child.relative_to(root)
            if child.is_file() and not any(part.startswith(".") for part in relative.parts):
                sources.append(FileSource(child, str(Path(root.name) / relative)))
    return sources


def jsonl_sources(path: Path) -> Iterator[RecordSource]:
    """The records of a JSONL file; raises `InputNotFound` now, not on first iteration."""
    if not path.is_file():
        raise InputNotFound(f"no such file: {path}")
    return _records(path)


def _records(path: Path) -> Iterator[RecordSource]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield RecordSource(line, number)


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


class TextSource:
    """Text already in memory (evaluation data, an API payload), one document."""

    def __init__(self, name: str, text: str, metadata: dict[str, Any] | None = None) -> None:
        self.name = self.key = name
        self.text = text
        self.metadata = metadata or {}

    def load(self) -> Loaded:
        if not self.text.strip():
            raise InvalidRecord(f"{self.name} has no text")
        extracted = Extracted("text/plain", self.text)
        return Loaded(self.text.encode("utf-8"), self.name, dict(self.metadata), extracted)


class BytesSource:
    """A file's bytes already in memory (a test's or a benchmark's document), one document."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = self.key = name
        self.data = data

    def load(self) -> Loaded:
        return Loaded(self.data, None, {}, None)
