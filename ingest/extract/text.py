"""Plain text: the encoding is detected (BOM, then UTF-8, then charset detection), not assumed,
and data that decodes to control characters is refused as binary."""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes
from charset_normalizer.utils import is_multi_byte_encoding

from ingest.errors import EmptyDocument, UnsupportedType
from ingest.extract.base import Extracted

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters other than tab, newline, carriage return and form feed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAX_CONTROL_SHARE = 0.01
_LINE_ENDINGS = re.compile(r"\r\n?")
_WESTERN = "cp1252"
_WESTERN_CHAOS_MARGIN = 0.05


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding; raise `UnsupportedType` for binary data."""
    text = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            break
    if text is None:
        if b"\x00" in data[:8192]:
            raise UnsupportedType("binary data (contains NUL bytes), not text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _detect_legacy_encoding(data)
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise UnsupportedType("binary data: too many control characters to be text")
    return _LINE_ENDINGS.sub("\n", text)


def _detect_legacy_encoding(data: bytes) -> str:
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise UnsupportedType("binary data: no text encoding fits it")
    # Single-byte code pages often fit equally well; like browsers (WHATWG), prefer
    # windows-1252, by far the most common legacy encoding, when it fits about as well.
    western = next((m for m in matches if m.encoding == _WESTERN), None)
    if (
        western is not None
        and not is_multi_byte_encoding(best.encoding)
        and western.chaos <= best.chaos + _WESTERN_CHAOS_MARGIN
    ):
        return str(western)
    return str(best)


def require_text(text: str) -> str:
    if not text.strip():
        raise EmptyDocument("no text: the document is empty or only whitespace")
    return text


class PlainTextExtractor:
    media_type = "text/plain"

    def extract(self, data: bytes) -> Extracted:
        return self.from_text(decode_text(data))

    def from_text(self, text: str) -> Extracted:
        return Extracted(self.media_type, require_text(text))
