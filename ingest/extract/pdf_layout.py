"""PDF pages read as a person reads them: columns, paragraphs, and no page furniture.

The PDF extractor hands over each page as positioned text runs (`Run`: the characters of one
line between wide gaps, with their box in PDF units, y growing upwards). This module, which
knows nothing of PDF parsing, turns them into text:

- **Columns.** A gutter is a vertical strip, away from the page's edges, that no run of a
  column crosses while runs of several words fill the space on both sides of it side by side
  (`_gutters`). Runs that span a gutter (a title, a full-width figure caption) cut the page
  into bands; inside a band each column is read top to bottom, left column first. A table's
  columns are not text columns: their cells are short, so they never make a gutter.
- **Lines and paragraphs.** Runs that share a line are joined left to right; in a table
  (three or more lines whose runs start at the same places) with " | " between the cells,
  as the Office extractors write rows, so that a row is never read as wrapped prose; and a
  table's rows are cut into groups that each open with its header row again, as Office
  tables are, so that a chunk of a table reads on its own. A vertical gap
  clearly wider than the page's line spacing starts a new paragraph (a blank line, which the
  chunker and the sentence splitter read as a paragraph break), so a heading is not glued to
  the sentence under it.
- **Page furniture** (`remove_furniture`): lines at the top or bottom of a page that recur on
  many pages once digits are set aside (running headers and footers, with the page number
  changing, and OCR noise such as "SIEGE OP VICKSBURG" next to "SIEGE OF VICKSBURG"), and lone
  page numbers there, are taken out of the text. The most frequent running header is kept as
  a candidate title: it is document context, not content.
- **Headings**: a short line of a few words between a finished sentence and a capital,
  that does not end like a sentence, is a heading: a paragraph of its own, and the heading
  (a section, in `Extracted` terms) of what follows, so that chunks under it carry it as
  context, as an Office document's headings are carried.
- **Page breaks** (`join_pages`): pages are joined with a blank line, except where a
  paragraph runs on from one page to the next (the page ends mid-sentence and the next
  begins in lower case or right after a comma), which is joined with a line break.

Pages whose runs are mostly single characters (vertical CJK text, rotated tables) keep the
engine's own reading order: geometry sorted line by line would scramble them.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

from ingest.extract.layout import TABLE_GROUP_CHARS

EDGE_LINES = 3
"""How many lines at the top and at the bottom of a page may be furniture."""
EDGE_BAND = 0.2
"""... and only within this share of the page's height from its top or bottom edge."""
SIMILAR_FURNITURE = 0.8
"""Two edge lines whose letters match this closely (difflib ratio) are the same furniture."""
MAX_FUZZY_SIGNATURES = 400
"""Distinct edge lines compared pairwise for OCR noise; past this, exact matches only."""
PARAGRAPH_GAP = 0.8
"""A vertical gap between lines over this many line heights starts a paragraph."""
_PAGE_NUMBER = re.compile(
    r"^[\W_]*(?:page|p\.|seite|pg\.?)?\s*(?:\d{1,6}|[ivxlcdm]{1,7})"
    r"(?:\s*(?:of|/|von)\s*\d{1,6})?[\W_]*$",
    re.IGNORECASE,
)
_LETTERS = re.compile(r"[^\w]+|\d+|_")
TABLE_CELL = " | "
"""Between the cells of a table row, as the Office extractors write them."""
CONTINUES, PARAGRAPH, HEADING = 0, 1, 2
"""How a line starts: going on with the paragraph, a new paragraph, or a heading."""
_NUMBERED = re.compile(r"\d{1,2}(?:\.\d{1,2})*\.?\s+[A-Z]")
_WORDY = re.compile(r"[^\W\d_]{3,}")
_ENDS_LINE = re.compile(r"[.,;:!?]\s*$")
_ENDS_SENTENCE = re.compile(r"[.!?:;\"”’)\]]\s*$")  # noqa: RUF001 (closing quotes)


class Run(NamedTuple):
    """Text on one line between wide gaps, with its box (PDF units, y grows upwards)."""

    text: str
    left: float
    bottom: float
    right: float
    top: float

    @property
    def height(self) -> float:
        return self.top - self.bottom

    @property
    def words(self) -> int:
        return len(self.text.split())


class Line(NamedTuple):
    """A line of a page in reading order."""

    text: str
    paragraph: bool
    """It starts a paragraph (a blank line goes before it)."""
    edge: bool = True
    """It is among the `EDGE_LINES` highest or lowest lines of its page, within `EDGE_BAND`
    of the edge: where furniture stands."""
    heading: bool = False
    """It is a heading: a paragraph of its own, and the heading of what follows."""
    row: bool = False
    """It is a row of a table, its cells joined by `TABLE_CELL`."""


def runs_from_glyphs(
    chars: Sequence[str], boxes: Sequence[tuple[float, float, float, float]]
) -> list[Run]:
    """Runs from a page's characters in the engine's order and their boxes (left, bottom,
    right, top): a run ends at a line break, a jump to another line, a step backwards, or a
    horizontal gap wider than about an em (a column gutter or a table's cell gap)."""
    runs: list[Run] = []
    text: list[str] = []
    left = bottom = right = top = 0.0
    started = False

    def close() -> None:
        nonlocal started
        value = "".join(text).strip()
        if started and value:
            runs.append(Run(" ".join(value.split()), left, bottom, right, top))
        text.clear()
        started = False

    for char, (c_left, c_bottom, c_right, c_top) in zip(chars, boxes, strict=True):
        if char in "\r\n":
            close()
            continue
        if char.isspace() or c_right <= c_left or c_top <= c_bottom:
            if started:
                text.append(" ")
            continue
        if started:
            height = max(top - bottom, c_top - c_bottom, 1.0)
            middle = (c_bottom + c_top) / 2
            other_line = middle < bottom - 0.3 * height or middle > top + 0.3 * height
            gap = c_left - right
            if other_line or gap > 1.1 * height or c_right < left - 0.5 * height:
                close()
        if not started:
            left, bottom, right, top = c_left, c_bottom, c_right, c_top
            started = True
        else:
            left, right = min(left, c_left), max(right, c_right)
            bottom, top = min(bottom, c_bottom), max(top, c_top)
        text.append(char)
    close()
    return runs


def read_page(runs: list[Run], width: float, height: float, raw_text: str = "") -> list[Line]:
    """The page's lines in reading order, with paragraph starts and edge flags."""
    if not runs:
        return []
    chars = sum(len(r.text) for r in runs)
    if chars and sum(len(r.text) for r in runs if len(r.text) >= 4) < 0.5 * chars and raw_text:
        return lines_of_text(raw_text)  # vertical or rotated text: keep the engine's order
    gutters = _gutters(runs)
    lines: list[tuple[list[Run], int]] = []  # (runs of a line, CONTINUES/PARAGRAPH/HEADING)
    band: list[Run] = []
    for run in sorted(runs, key=lambda r: (-r.top, r.left)):
        if gutters and any(run.left < g0 and run.right > g1 for g0, g1 in gutters):
            lines.extend(_read_band(band, gutters))
            band = []
            lines.append(([run], PARAGRAPH))
        else:
            band.append(run)
    lines.extend(_read_band(band, gutters))
    # Furniture stands among the few highest or lowest lines on the page, wherever reading
    # order puts it (a header over the right column is read after the left column).
    tops = [max(r.top for r in line) for line, _ in lines]
    bottoms = [min(r.bottom for r in line) for line, _ in lines]
    highest = sorted(set(tops), reverse=True)[:EDGE_LINES][-1]
    lowest = sorted(set(bottoms))[:EDGE_LINES][-1]
    rows = _table_rows([line for line, _ in lines])
    page_lines = []
    for number, (line_runs, paragraph) in enumerate(lines):
        ordered = sorted(line_runs, key=lambda r: r.left)
        top, bottom = tops[number], bottoms[number]
        edge = (top >= highest and top >= height * (1 - EDGE_BAND)) or (
            bottom <= lowest and bottom <= height * EDGE_BAND
        )
        # At an edge, the parts of a line (a title left, a name right, a page number) recur
        # each on their own, so each is a line of its own.
        if number in rows:
            parts = [TABLE_CELL.join(r.text for r in ordered)]
        else:
            parts = [r.text for r in ordered] if edge else [" ".join(r.text for r in ordered)]
        for index, text in enumerate(parts):
            starts = paragraph != CONTINUES and number > 0 and index == 0
            heading = paragraph == HEADING and number not in rows and bool(_WORDY.search(text))
            page_lines.append(Line(text, starts, edge, heading, number in rows))
    return _table_groups(page_lines)


def _table_groups(lines: list[Line]) -> list[Line]:
    """Each table's rows in groups of about `TABLE_GROUP_CHARS`, each group a paragraph that
    opens with the table's first row (its header) again, as Office tables are cut, so that a
    chunk of a table reads on its own."""
    grouped: list[Line] = []
    index = 0
    while index < len(lines):
        if not lines[index].row:
            line = lines[index]
            if grouped and grouped[-1].row and not line.paragraph:
                line = line._replace(paragraph=True)  # prose after a table starts afresh
            grouped.append(line)
            index += 1
            continue
        end = index
        while end < len(lines) and lines[end].row:
            end += 1
        header = lines[index]._replace(paragraph=True)
        grouped.append(header)
        size = len(header.text)
        for row in lines[index + 1 : end]:
            if size + len(row.text) + 1 > TABLE_GROUP_CHARS and size > len(header.text):
                grouped.append(header)
                size = len(header.text)
            grouped.append(row._replace(paragraph=False))
            size += len(row.text) + 1
        index = end
    return grouped


def _table_rows(lines: list[list[Run]]) -> set[int]:
    """The lines that are rows of a table: three or more lines in a row, each of two or more
    runs apart, whose runs start at the same places (within a few points)."""
    rows: set[int] = set()
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and len(lines[end]) >= 2 and _aligned(lines[start], lines[end]):
            end += 1
        if end - start >= 3:
            rows.update(range(start, end))
        start = max(end, start + 1)
    return rows


def _aligned(first: list[Run], other: list[Run]) -> bool:
    """Whether most of the cells of `other` start where a cell of `first` starts."""
    starts = [r.left for r in first]
    near = sum(any(abs(r.left - x) <= 4.0 for x in starts) for r in other)
    return near >= max(2, len(other) - 1)


def lines_of_text(text: str) -> list[Line]:
    """Lines of a page's plain text (OCR, or an engine's own order): the first and last
    `EDGE_LINES` may be furniture."""
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line]
    return [
        Line(line, False, index < EDGE_LINES or index >= len(kept) - EDGE_LINES)
        for index, line in enumerate(kept)
    ]


def _gutters(runs: list[Run]) -> list[tuple[float, float]]:
    """The x-ranges between text columns: strips that no run of a column crosses, with runs
    of several words beside each other on both sides."""
    left = min(r.left for r in runs)
    right = max(r.right for r in runs)
    span = right - left
    if span <= 0:
        return []
    narrow = [r for r in runs if r.right - r.left < 0.55 * span]
    if len(narrow) < 8:
        return []
    # How many runs cover each point across the page; a gutter may be crossed by a stray
    # few (a footer's file code, a page number) but not by a column's lines.
    covered = [0] * (math.ceil(span) + 1)
    for run in narrow:
        for x in range(int(run.left - left), min(len(covered), math.ceil(run.right - left))):
            covered[x] += 1
    stray = max(1, len(narrow) // 30)
    heights = statistics.median(r.height for r in narrow)
    gutters = []
    x = 0
    while x < len(covered):
        if covered[x] > stray:
            x += 1
            continue
        start = x
        while x < len(covered) and covered[x] <= stray:
            x += 1
        g0, g1 = left + start, left + x
        if g1 - g0 < max(4.0, 0.5 * heights) or g0 - left < 0.15 * span or right - g1 < 0.15 * span:
            continue
        if _columns_beside(narrow, g0, g1):
            gutters.append((g0, g1))
    return gutters


def _columns_beside(runs: list[Run], g0: float, g1: float) -> bool:
    """Whether text columns stand on both sides of the strip g0-g1: runs of several words
    that fill their side, beside each other on the page."""
    west = [r for r in runs if r.right <= g0]
    east = [r for r in runs if r.left >= g1]
    prose = []
    for side in (west, east):
        lines = [r for r in side if r.words >= 4]
        if len(lines) < 4:
            return False  # short cells (a table, a figure's labels) are not a text column
        prose.append(lines)
    west_top = max(r.top for r in prose[0])
    west_bottom = min(r.bottom for r in prose[0])
    beside = [r for r in prose[1] if r.bottom < west_top and r.top > west_bottom]
    return len(beside) >= 3


def _read_band(band: list[Run], gutters: list[tuple[float, float]]) -> list[tuple[list[Run], int]]:
    """A band between spanning runs, column by column, each top to bottom, as lines."""
    if not band:
        return []
    columns: list[list[Run]] = [[] for _ in range(len(gutters) + 1)]
    for run in band:
        middle = (run.left + run.right) / 2
        columns[sum(middle > g0 for g0, _ in gutters)].append(run)
    lines: list[tuple[list[Run], int]] = []
    for column in columns:
        grouped = _group_lines(column)
        if not grouped:
            continue
        heights = [max(r.top for r in line) - min(r.bottom for r in line) for line in grouped]
        line_height = statistics.median(heights) if heights else 0.0
        previous_bottom: float | None = None
        for number, line in enumerate(grouped):
            top = max(r.top for r in line)
            if number == 0:
                # A column goes on with the one before it where that one stopped mid-sentence.
                paragraph = not lines or not runs_on(_text(lines[-1][0]), _text(line))
            else:
                paragraph = (
                    previous_bottom is not None
                    and previous_bottom - top > PARAGRAPH_GAP * max(line_height, 1.0)
                )
            lines.append((line, PARAGRAPH if paragraph else CONTINUES))
            previous_bottom = min(r.bottom for r in line)
        _set_headings_apart(lines, len(lines) - len(grouped))
    return lines


def _text(line: list[Run]) -> str:
    return " ".join(r.text for r in sorted(line, key=lambda r: r.left))


def _set_headings_apart(lines: list[tuple[list[Run], int]], first: int) -> None:
    """Mark the headings of lines[first:] (one column): a short line of a few words, starting
    with a capital or a section number ("3.2 Parsing"), that opens the column, a paragraph,
    or comes after a finished sentence, does not end like one, and is followed by a line of
    prose (half the column wide or more) that starts with a capital, as "Proposed Design
    Changes" between two paragraphs. A figure's labels are followed by more labels."""
    column = lines[first:]
    if len(column) < 2:
        return
    width = max(r.right for line, _ in column for r in line) - min(
        r.left for line, _ in column for r in line
    )
    texts = [_text(line) for line, _ in column]
    widths = [max(r.right for r in line) - min(r.left for r in line) for line, _ in column]
    for index in range(len(column) - 1):
        text, after = texts[index], texts[index + 1]
        before = texts[index - 1] if index else "."
        if (
            widths[index] < 0.7 * width
            and widths[index + 1] >= 0.5 * width
            and len(text.split()) <= 10
            and (text[:1].isupper() or _NUMBERED.match(text))
            and _WORDY.search(text)
            and not _ENDS_LINE.search(text)
            and (_ENDS_SENTENCE.search(before) or column[index][1] == PARAGRAPH)
            and after[:1].isupper()
        ):
            lines[first + index] = (lines[first + index][0], HEADING)
            lines[first + index + 1] = (lines[first + index + 1][0], PARAGRAPH)


def _group_lines(runs: list[Run]) -> list[list[Run]]:
    """Runs that overlap vertically by half the smaller height share a line."""
    lines: list[list[Run]] = []
    for run in sorted(runs, key=lambda r: (-r.top, r.left)):
        if lines:
            line = lines[-1]
            top, bottom = max(r.top for r in line), min(r.bottom for r in line)
            overlap = min(top, run.top) - max(bottom, run.bottom)
            if overlap >= 0.5 * min(top - bottom, run.height):
                line.append(run)
                continue
        lines.append([run])
    return lines


def _signature(text: str) -> str:
    """What stays of a line when page numbers, case and punctuation are set aside."""
    return " ".join(_LETTERS.sub(" ", text.lower()).split())


def remove_furniture(pages: list[list[Line]]) -> tuple[list[list[Line]], str | None]:
    """Pages without their running headers, footers and page numbers, and the most frequent
    running header's text (a candidate title), if there is one."""
    count = len(pages)
    if count < 2:
        return pages, None
    candidates = {
        (number, index): _signature(line.text)
        for number, lines in enumerate(pages)
        for index, line in enumerate(lines)
        if line.edge
    }
    pages_with = _recurrence({key: sig for key, sig in candidates.items() if sig})
    needed = max(min(3, count), min(8, math.ceil(0.1 * count)))
    furniture: set[tuple[int, int]] = set()
    headers: Counter[str] = Counter()
    for (number, index), signature in candidates.items():
        text = pages[number][index].text
        if not signature:
            if _PAGE_NUMBER.match(text):
                furniture.add((number, index))
        elif len(pages_with.get(signature, ())) >= needed:
            furniture.add((number, index))
            if index < len(pages[number]) / 2:
                headers[text] += 1
        elif _PAGE_NUMBER.match(text) and len(text) <= 12:
            furniture.add((number, index))
    cleaned = []
    for number, lines in enumerate(pages):
        kept = [line for index, line in enumerate(lines) if (number, index) not in furniture]
        if not kept:
            kept = list(lines)  # a page that is all "furniture" repeats its content: keep it
        if kept and kept[0].paragraph:
            kept[0] = kept[0]._replace(paragraph=False)
        cleaned.append(kept)
    title = None
    if headers:
        # The same words on every page as they are ("Volume 1"), or without the page number.
        title, times = headers.most_common(1)[0]
        if times < needed:
            stripped = Counter(_strip_page_number(text) for text in headers.elements())
            title = stripped.most_common(1)[0][0]
    return cleaned, title or None


def _recurrence(signatures: dict[tuple[int, int], str]) -> dict[str, set[int]]:
    """For each signature, the pages on which it or one like it (OCR noise) stands."""
    pages: dict[str, set[int]] = {}
    for (number, _), signature in signatures.items():
        pages.setdefault(signature, set()).add(number)
    distinct = sorted(pages)
    if len(distinct) > MAX_FUZZY_SIGNATURES:
        return pages
    merged = {signature: set(found) for signature, found in pages.items()}
    for i, first in enumerate(distinct):
        for second in distinct[i + 1 :]:
            matcher = SequenceMatcher(None, first, second, autojunk=False)
            if (
                matcher.real_quick_ratio() >= SIMILAR_FURNITURE
                and matcher.quick_ratio() >= SIMILAR_FURNITURE
                and matcher.ratio() >= SIMILAR_FURNITURE
            ):
                merged[first] |= pages[second]
                merged[second] |= pages[first]
    return merged


def _strip_page_number(text: str) -> str:
    text = re.sub(r"^\W*\d{1,6}\W+|\W+\d{1,6}\W*$", "", text.strip())
    return text.strip(" .,;:-|")


def page_text(lines: list[Line]) -> tuple[str, list[tuple[int, str]]]:
    """A page's text, and its headings as (offset, text)."""
    parts: list[str] = []
    headings: list[tuple[int, str]] = []
    length = 0
    for line in lines:
        if parts:
            separator = "\n\n" if line.paragraph or line.heading else "\n"
            parts.append(separator)
            length += len(separator)
        if line.heading:
            headings.append((length, line.text))
        parts.append(line.text)
        length += len(line.text)
    return "".join(parts), headings


def runs_on(previous: str, following: str) -> bool:
    """Whether the text of one page runs on into the next: the first ends mid-sentence and
    the second goes on in lower case (or the first ends with a comma or a hyphen)."""
    before, after = previous.rstrip(), following.lstrip()
    if not before or not after or _ENDS_SENTENCE.search(before):
        return False
    last, first = before[-1], after[0]
    if last in ",-\u00ad":
        return first.isalnum()
    return last.isalpha() and last.islower() and (first.islower() or first.isdigit())


def join_pages(pages: list[list[Line]]) -> tuple[str, list[int], list[tuple[int, str]]]:
    """The pages' text, where each page starts, and the headings as (offset, text): a blank
    line between pages, or a line break where a paragraph runs on across the break."""
    parts: list[str] = []
    starts: list[int] = []
    headings: list[tuple[int, str]] = []
    offset = 0
    previous = ""
    for number, lines in enumerate(pages):
        text, page_headings = page_text(lines)
        if number:
            separator = "\n" if runs_on(previous, text) else "\n\n"
            parts.append(separator)
            offset += len(separator)
        starts.append(offset)
        headings.extend((offset + at, heading) for at, heading in page_headings)
        parts.append(text)
        offset += len(text)
        previous = text
    return "".join(parts), starts, headings
