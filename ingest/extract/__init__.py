"""Extraction: bytes in, text (with page offsets) out, the format found by content sniffing.

The file name is only a hint, used to tell Markdown from plain text; what decides is the
content: PDF magic bytes, known binary signatures, whether the bytes decode as text, and
HTML or Markdown structure in that text.
"""

from __future__ import annotations

from pathlib import PurePath

import msgspec

from ingest.errors import EmptyDocument, ExtractionFailed, UnsupportedType
from ingest.extract.base import Extracted, ExtractionLimits, Extractor, TextExtractor
from ingest.extract.html import HtmlExtractor, looks_like_html
from ingest.extract.markdown import MarkdownExtractor, looks_like_markdown
from ingest.extract.pdf import PdfExtractor
from ingest.extract.text import PlainTextExtractor, decode_text

TEXT_EXTRACTORS: dict[str, TextExtractor] = {
    extractor.media_type: extractor
    for extractor in (PlainTextExtractor(), MarkdownExtractor(), HtmlExtractor())
}
EXTRACTORS: dict[str, Extractor] = {PdfExtractor.media_type: PdfExtractor(), **TEXT_EXTRACTORS}

# Formats recognised by their first bytes that have no extractor (yet).
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or DOCX/XLSX/EPUB)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an executable"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office document"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"SQLite format 3", "an SQLite database"),
)
_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}


def sniff(data: bytes, name: str = "") -> str:
    """The media type of `data`; raises `EmptyDocument` or `UnsupportedType`."""
    return _sniff(data, name)[0]


def _sniff(data: bytes, name: str) -> tuple[str, str | None]:
    """(media type, decoded text for text formats)."""
    if not data:
        raise EmptyDocument("empty file (0 bytes)")
    if b"%PDF-" in data[:1024]:
        return "application/pdf", None
    for signature, description in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedType(f"unsupported type: {description}")
    if PurePath(name).suffix.lower() == ".pdf":
        raise ExtractionFailed("corrupt PDF: no %PDF- header in the first 1024 bytes")
    text = decode_text(data)
    if looks_like_html(text):
        return "text/html", text
    if PurePath(name).suffix.lower() in _MARKDOWN_SUFFIXES or looks_like_markdown(text):
        return "text/markdown", text
    return "text/plain", text


def extract(data: bytes, name: str = "", limits: ExtractionLimits | None = None) -> Extracted:
    """Sniff and extract within `limits`; raises an `IngestError` subclass with the reason
    on failure."""
    limits = limits or ExtractionLimits()
    media_type, text = _sniff(data, name)
    if text is None:
        return PdfExtractor(limits).extract(data)
    if len(text) <= limits.max_chars:
        return TEXT_EXTRACTORS[media_type].from_text(text)
    extracted = TEXT_EXTRACTORS[media_type].from_text(text[: limits.max_chars])
    capped = (
        f"capped: the first {limits.max_chars} of {len(text)} characters were read "
        "(setting extract_max_chars)"
    )
    return msgspec.structs.replace(extracted, capped=capped)


__all__ = ["EXTRACTORS", "Extracted", "ExtractionLimits", "Extractor", "extract", "sniff"]
