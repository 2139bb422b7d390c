"""Extraction: bytes in, text (with page offsets) out, the format found by content sniffing.

The file name is only a hint, used to tell Markdown from plain text; what decides is the
content: PDF magic bytes, the members of a ZIP container (Word, PowerPoint, Excel, EPUB),
known binary signatures, whether the bytes decode as text, and HTML or Markdown structure
in that text. A new binary format is one module with an extractor class and one line in
`BINARY_EXTRACTORS` (and, for a ZIP container, one in `_ZIP_MEMBERS`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import PurePath

import msgspec

from ingest.errors import EmptyDocument, ExtractionFailed, UnsupportedType
from ingest.extract import docx, epub, pptx, xlsx
from ingest.extract.base import Extracted, ExtractionLimits, Extractor, TextExtractor
from ingest.extract.html import HtmlExtractor, looks_like_html
from ingest.extract.markdown import MarkdownExtractor, looks_like_markdown
from ingest.extract.pdf import PdfExtractor
from ingest.extract.text import PlainTextExtractor, decode_text

TEXT_EXTRACTORS: dict[str, TextExtractor] = {
    extractor.media_type: extractor
    for extractor in (PlainTextExtractor(), MarkdownExtractor(), HtmlExtractor())
}
BINARY_EXTRACTORS: dict[str, Callable[[ExtractionLimits], Extractor]] = {
    PdfExtractor.media_type: PdfExtractor,
    docx.MEDIA_TYPE: docx.DocxExtractor,
    pptx.MEDIA_TYPE: pptx.PptxExtractor,
    xlsx.MEDIA_TYPE: xlsx.XlsxExtractor,
    epub.MEDIA_TYPE: epub.EpubExtractor,
}
EXTRACTORS: dict[str, Extractor] = {
    **{name: make(ExtractionLimits()) for name, make in BINARY_EXTRACTORS.items()},
    **TEXT_EXTRACTORS,
}
# The member of a ZIP container that tells its format.
_ZIP_MEMBERS: tuple[tuple[str, str], ...] = (
    ("word/document.xml", docx.MEDIA_TYPE),
    ("ppt/presentation.xml", pptx.MEDIA_TYPE),
    ("xl/workbook.xml", xlsx.MEDIA_TYPE),
    ("META-INF/container.xml", epub.MEDIA_TYPE),
)

# Formats recognised by their first bytes that have no extractor (yet).
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
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
    if data.startswith(b"PK\x03\x04"):
        container = _zip_format(data)
        if container is not None:
            return container, None
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


def _zip_format(data: bytes) -> str | None:
    """The Office or EPUB format of a ZIP container, by the members it holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    for member, media_type in _ZIP_MEMBERS:
        if member in names:
            return media_type
    return None


def extract(data: bytes, name: str = "", limits: ExtractionLimits | None = None) -> Extracted:
    """Sniff and extract within `limits`; raises an `DocumentError` subclass with the reason
    on failure."""
    limits = limits or ExtractionLimits()
    media_type, text = _sniff(data, name)
    if text is None:
        return BINARY_EXTRACTORS[media_type](limits).extract(data)
    if len(text) <= limits.max_chars:
        return TEXT_EXTRACTORS[media_type].from_text(text)
    extracted = TEXT_EXTRACTORS[media_type].from_text(text[: limits.max_chars])
    capped = (
        f"capped: the first {limits.max_chars} of {len(text)} characters were read "
        "(setting extract_max_chars)"
    )
    return msgspec.structs.replace(extracted, capped=capped)


__all__ = ["EXTRACTORS", "Extracted", "ExtractionLimits", "Extractor", "extract", "sniff"]
