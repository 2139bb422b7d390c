"""E-books (.epub) with EbookLib: the spine's documents in reading order, as HTML text.

Each spine document is a section located by its first heading (or its file name); headings
inside it start sections of their own.
"""

from __future__ import annotations

import io
import re
import warnings

from ingest.errors import ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits
from ingest.extract.html import html_to_text
from ingest.extract.layout import Layout

MEDIA_TYPE = "application/epub+zip"
_HEADING = re.compile(r"<h[1-3][^>]*>(.*?)</h[1-3]>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


class EpubExtractor:
    media_type = MEDIA_TYPE

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()

    def extract(self, data: bytes) -> Extracted:
        import ebooklib
        from ebooklib import epub

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EbookLib warns about its own future defaults
                book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
        except MemoryError:
            raise  # the sandbox names the limit that stopped it
        except Exception as error:
            raise ExtractionFailed(f"unreadable EPUB: {type(error).__name__}: {error}") from None
        layout = Layout(self.media_type, self.limits)
        for item_id, _linear in book.spine:
            item = book.get_item_with_id(item_id)
            if (
                item is None
                or item.get_type() != ebooklib.ITEM_DOCUMENT
                or isinstance(item, epub.EpubNav)  # the table of contents repeats the titles
            ):
                continue
            if layout.full:
                break
            html = item.get_content().decode("utf-8", errors="replace")
            heading = _HEADING.search(html)
            title = " ".join(_TAG.sub("", heading.group(1)).split()) if heading else ""
            layout.section(title or item.get_name())
            layout.block(html_to_text(html))
        titles = book.get_metadata("DC", "title")
        return layout.build("e-book", titles[0][0] if titles else None)
