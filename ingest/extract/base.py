"""The `Extractor` contract and the extracted-text value it returns."""

from __future__ import annotations

from typing import Protocol

import msgspec


class Extracted(msgspec.Struct, frozen=True):
    """Text extracted from one document.

    `page_starts[i]` is the character offset in `text` where page i+1 begins (PDF only);
    pages are joined with a blank line, so a page break is also a paragraph break.
    """

    media_type: str
    text: str
    page_starts: list[int] | None = None
    warnings: list[str] = []

    @property
    def page_count(self) -> int | None:
        return None if self.page_starts is None else len(self.page_starts)


class Extractor(Protocol):
    media_type: str

    def extract(self, data: bytes) -> Extracted:
        """Extract text; raise an `IngestError` subclass for a document that cannot be read."""
        ...


class TextExtractor(Extractor, Protocol):
    """An extractor for a text format, which can start from already decoded text."""

    def from_text(self, text: str) -> Extracted: ...
