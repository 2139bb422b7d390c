"""Text assembled block by block, for formats with structure: `Layout`.

The Office and EPUB extractors walk their documents in reading order and hand each heading,
paragraph, slide and table to a `Layout`, which joins blocks with blank lines (paragraph
breaks for the chunker) and records a `Section` wherever the origin changes. Tables become
groups of rows, each group opening with the header row again, so that every chunk of a table
can be read on its own; a group is its own section ("sheet Sales, rows 2-40").
"""

from __future__ import annotations

from collections.abc import Sequence

from ingest.errors import EmptyDocument
from ingest.extract.base import Extracted, ExtractionLimits, Section, clean_title

BLOCK_SEPARATOR = "\n\n"
TABLE_GROUP_CHARS = 360
"""Characters of rows per table group, header included: inside one chunk of the default
model (256 tokens) even for rows of codes and numbers, which take a token per 1.5 to 2
characters. A row group larger than a chunk is split by lines, without the header."""


def table_row(cells: Sequence[object]) -> str:
    """One row as text: cells separated by " | ", empty trailing cells left out."""
    values = ["" if c is None else " ".join(str(c).split()) for c in cells]
    while values and not values[-1]:
        values.pop()
    return " | ".join(values)


class Layout:
    def __init__(self, media_type: str, limits: ExtractionLimits) -> None:
        self.media_type = media_type
        self.limits = limits
        self._parts: list[str] = []
        self._length = 0
        self._sections: list[Section] = []
        self._pending: str | None = None
        self.capped: str | None = None
        self.warnings: list[str] = []

    @property
    def full(self) -> bool:
        return self.capped is not None

    def section(self, location: str) -> None:
        """What follows comes from `location`, until the next call."""
        self._pending = location

    def block(self, text: str) -> None:
        text = text.strip()
        if not text or self.full:
            return
        start = self._length + (len(BLOCK_SEPARATOR) if self._parts else 0)
        room = self.limits.max_chars - start
        if room <= 0:
            self._cap()
            return
        if len(text) > room:
            text = text[:room]
            self._cap()
        if self._pending is not None:
            self._sections.append(Section(start, self._pending))
            self._pending = None
        if self._parts:
            self._parts.append(BLOCK_SEPARATOR)
        self._parts.append(text)
        self._length = start + len(text)

    def table(
        self,
        rows: Sequence[tuple[int, str]],
        location: str,
        *,
        group_chars: int = TABLE_GROUP_CHARS,
    ) -> None:
        """`rows` are (row number, text) with the header first; each group of rows is a
        section `"{location}, rows a-b"` and starts with the header row."""
        rows = [(number, text) for number, text in rows if text.strip()]
        if not rows:
            return
        (header_number, header), body = rows[0], rows[1:]
        if not body:
            self.section(f"{location}, row {header_number}")
            self.block(header)
            return
        group: list[tuple[int, str]] = []
        size = len(header)
        for number, text in body:
            if group and size + len(text) + 1 > group_chars:
                self._table_group(header, group, location)
                group, size = [], len(header)
            group.append((number, text))
            size += len(text) + 1
        self._table_group(header, group, location)

    def _table_group(self, header: str, group: list[tuple[int, str]], location: str) -> None:
        first, last = group[0][0], group[-1][0]
        self.section(
            f"{location}, rows {first}-{last}" if first != last else f"{location}, row {first}"
        )
        self.block("\n".join([header, *(text for _, text in group)]))

    def _cap(self) -> None:
        self.capped = (
            f"capped: the first {self.limits.max_chars} characters were read "
            "(setting extract_max_chars)"
        )

    def build(self, what: str, title: object = None) -> Extracted:
        text = "".join(self._parts)
        if not text.strip():
            raise EmptyDocument(f"no text in the {what}")
        return Extracted(
            self.media_type,
            text,
            warnings=self.warnings,
            capped=self.capped,
            sections=self._sections,
            title=clean_title(title),
        )
