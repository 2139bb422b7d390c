"""PowerPoint presentations (.pptx) with python-pptx: one section per slide.

A slide's text is its title, then the text of its other shapes (groups included) top to
bottom, then its tables by rows; its speaker notes follow. The location is
"slide N: Title" (or "slide N" without a title).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from ingest.errors import ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits
from ingest.extract.layout import Layout, table_row

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def _shapes(shapes: Any) -> Iterator[Any]:
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if getattr(shape, "shape_type", None) == 6:  # a group: its members, in place
            yield from _shapes(shape.shapes)
        else:
            yield shape


class PptxExtractor:
    media_type = MEDIA_TYPE

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()

    def extract(self, data: bytes) -> Extracted:
        import pptx

        try:
            presentation = pptx.Presentation(io.BytesIO(data))
        except MemoryError:
            raise  # the sandbox names the limit that stopped it
        except Exception as error:
            raise ExtractionFailed(f"unreadable PPTX: {type(error).__name__}: {error}") from None
        layout = Layout(self.media_type, self.limits)
        for number, slide in enumerate(presentation.slides, start=1):
            if layout.full:
                break
            title_shape = slide.shapes.title
            title = " ".join(title_shape.text_frame.text.split()) if title_shape else ""
            location = f"slide {number}: {title}" if title else f"slide {number}"
            layout.section(location)
            blocks = [title] if title else []
            for shape in _shapes(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
                    blocks.append(shape.text_frame.text)
            layout.block("\n".join(blocks))
            for shape in _shapes(slide.shapes):
                if getattr(shape, "has_table", False):
                    rows = [
                        (row_number, table_row([cell.text for cell in row.cells]))
                        for row_number, row in enumerate(shape.table.rows, start=1)
                    ]
                    layout.table(rows, f"{location}, table")
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    layout.section(f"{location}, notes")
                    layout.block(notes.text)
        return layout.build("presentation", presentation.core_properties.title)
