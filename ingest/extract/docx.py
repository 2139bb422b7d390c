"""Word documents (.docx) with python-docx: paragraphs and tables in reading order.

Each heading starts a section whose location is its heading path ("Methods > Results");
a table becomes groups of rows with the header row repeated ("Methods, table 1, rows 2-9").
"""

from __future__ import annotations

import io

from ingest.errors import ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits
from ingest.extract.layout import Layout, table_row

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def heading_level(style_name: str) -> int | None:
    """1 for "Heading 1" (and "Title"), 2 for "Heading 2"...; None for body text."""
    if style_name == "Title":
        return 1
    if style_name.startswith("Heading"):
        digits = style_name.removeprefix("Heading").strip()
        return int(digits) if digits.isdigit() else 1
    return None


class DocxExtractor:
    media_type = MEDIA_TYPE

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()

    def extract(self, data: bytes) -> Extracted:
        import docx
        from docx.table import Table

        try:
            document = docx.Document(io.BytesIO(data))
        except MemoryError:
            raise  # the sandbox names the limit that stopped it
        except Exception as error:
            raise ExtractionFailed(f"unreadable DOCX: {type(error).__name__}: {error}") from None
        layout = Layout(self.media_type, self.limits)
        path: list[tuple[int, str]] = []
        tables = 0
        for item in document.iter_inner_content():
            if layout.full:
                break
            if isinstance(item, Table):
                tables += 1
                where = " > ".join(title for _, title in path)
                location = f"{where}, table {tables}" if where else f"table {tables}"
                rows = [
                    (number, table_row([cell.text for cell in row.cells]))
                    for number, row in enumerate(item.rows, start=1)
                ]
                layout.table(rows, location)
                if path:
                    layout.section(" > ".join(title for _, title in path))
                continue
            text = item.text
            level = heading_level(item.style.name if item.style is not None else "")
            if level is not None and text.strip():
                path = [(lvl, title) for lvl, title in path if lvl < level]
                path.append((level, " ".join(text.split())))
                layout.section(" > ".join(title for _, title in path))
            layout.block(text)
        return layout.build("Word document", document.core_properties.title)
