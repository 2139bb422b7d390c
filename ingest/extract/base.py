"""The `Extractor` contract and the extracted-text value it returns."""

from __future__ import annotations

import re
from typing import Protocol

import msgspec


class Section(msgspec.Struct, frozen=True):
    """A stretch of the text with one origin: it runs from `start` to the next section."""

    start: int
    location: str
    """Where it came from, for a reader: "Methods > Results", "slide 2: Title",
    "sheet Sales, rows 2-40"."""


NOTICE_CHARS = 2_000
"""The longest notice a document's job carries."""


class Extracted(msgspec.Struct, frozen=True):
    """Text extracted from one document.

    `page_starts[i]` is the character offset in `text` where page i+1 begins (PDF only);
    pages are joined with a blank line, so a page break is also a paragraph break.
    `sections`, in order of `start`, say where each part came from (Office formats, EPUB,
    the headings found in a PDF):
    no chunk crosses a section's start, and each chunk reports the location of its section.
    """

    media_type: str
    text: str
    page_starts: list[int] | None = None
    warnings: list[str] = []
    capped: str | None = None
    """Set when a limit cut the document short: which limit, and what was kept."""
    sections: list[Section] = []
    title: str | None = None
    """The document's own title (PDF or Office properties, HTML `<title>`, a JSONL record's),
    carried into every chunk's context."""

    @property
    def page_count(self) -> int | None:
        return None if self.page_starts is None else len(self.page_starts)

    @property
    def notice(self) -> str | None:
        """What the uploader should be told in one line (a job's `warning`): the limit that
        cut the document short, pages left out (and that most were, when most were), pages
        read by OCR."""
        notes = [self.capped] if self.capped else []
        skipped = sum(": skipped" in warning for warning in self.warnings)
        pages = self.page_count
        if pages and skipped * 2 > pages:
            notes.insert(0, f"most pages were left out ({skipped} of {pages})")
        notes.extend(self.warnings)
        text = "; ".join(notes)
        if len(text) > NOTICE_CHARS:
            text = text[: NOTICE_CHARS - 5].rstrip() + " ..."
        return text or None


class ExtractionLimits(msgspec.Struct, frozen=True):
    """Bounds on what one document may cost to extract (settings `extract_*`)."""

    timeout: float = 120.0
    """Seconds of wall-clock time (enforced by the sandbox)."""
    max_memory: int = 2_000_000_000
    """Bytes of address space of the sandbox process."""
    max_pages: int = 2_000
    """Pages read from a PDF; the rest are left out, and the job says so."""
    max_stream_bytes: int = 50_000_000
    """Bytes one PDF stream may decompress to."""
    max_decompressed_bytes: int = 200_000_000
    """Bytes of page content all the streams of one PDF may decompress to."""
    max_chars: int = 5_000_000
    """Characters of text kept from one document."""
    ocr: bool = False
    """Read PDF pages without a text layer by OCR of their images (setting `ocr`)."""


_NOT_A_TITLE = re.compile(
    r"(\.(docx?|pdf|pptx?|xlsx?|txt|tex|dvi|ps|indd|qxd|rtf|odt)$)|^(microsoft (word|powerpoint)"
    r" - |untitled$|title$|slide \d+$|document\d*$)",
    re.IGNORECASE,
)


def clean_title(raw: object) -> str | None:
    """A document property as a title, or None for what tools write there instead of one
    (a file name, "Microsoft Word - draft.doc", "Untitled")."""
    if not isinstance(raw, str):
        return None
    title = " ".join(raw.split())
    if not title or len(title) > 300 or _NOT_A_TITLE.search(title):
        return None
    return title


class Extractor(Protocol):
    media_type: str

    def extract(self, data: bytes) -> Extracted:
        """Extract text; raise an `DocumentError` subclass for a document that cannot be read."""
        ...


class TextExtractor(Extractor, Protocol):
    """An extractor for a text format, which can start from already decoded text."""

    def from_text(self, text: str) -> Extracted: ...
