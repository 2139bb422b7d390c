"""SQuAD-format articles typeset into PDFs that look like what people upload (for
`bench_pdf_answers.py`).

A few articles make one PDF, a volume: each article opens with its title as a heading, and
its paragraphs flow from column to column and page to page (so paragraphs break across
pages), under a running header (the collection's and the volume's names) and over a footer
("Page 3 of 5") on every page. Styles take turns by volume: one column justified with
hyphenated line ends, two justified columns, one ragged column in a larger font. After the
first paragraph comes a small table (article, paragraph, words) with its header row.
`scanned` renders the pages to images and makes a PDF of the images only, which only OCR
can read.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

FONT = "Times-Roman"
BOLD = "Times-Bold"
MARGIN = 64
GUTTER = 22
HEADER_NAME = "XQuAD reading collection"


class Style(NamedTuple):
    columns: int
    size: float
    justify: bool
    hyphenate: bool


STYLES = (
    Style(columns=1, size=10.5, justify=True, hyphenate=True),
    Style(columns=2, size=9.5, justify=True, hyphenate=True),
    Style(columns=1, size=11.5, justify=False, hyphenate=False),
)


class _Placed(NamedTuple):
    words: list[str]
    font: str
    x: float
    y: float
    width: float
    justify: bool


def _wrap(text: str, width: float, font: str, size: float, hyphenate: bool) -> list[list[str]]:
    """Lines of words that fit `width`; a long word that does not fit is hyphenated."""
    lines: list[list[str]] = []
    line: list[str] = []
    space = stringWidth(" ", font, size)
    used = 0.0
    words = text.split()
    while words:
        word = words.pop(0)
        need = stringWidth(word, font, size) + (space if line else 0)
        if used + need <= width:
            line.append(word)
            used += need
            continue
        if hyphenate and line and len(word) >= 8 and word.isalpha():
            room = width - used - space
            for cut in range(len(word) - 3, 2, -1):
                if stringWidth(word[:cut] + "-", font, size) <= room:
                    line.append(word[:cut] + "-")
                    words.insert(0, word[cut:])
                    break
            else:
                words.insert(0, word)
        else:
            words.insert(0, word)
        if not line:  # a word wider than the line: it gets a line of its own
            line.append(words.pop(0))
        lines.append(line)
        line, used = [], 0.0
    if line:
        lines.append(line)
    return lines


def typeset(volume: str, articles: list[tuple[str, list[str]]], style: Style) -> bytes:
    """Articles (title, paragraphs) as one PDF in `style`, with running header, footer and
    a table."""
    width, height = A4
    leading = style.size * 1.3
    column_width = (width - 2 * MARGIN - (style.columns - 1) * GUTTER) / style.columns
    top, bottom = height - MARGIN, MARGIN
    pages: list[list[_Placed]] = [[]]
    column = 0
    y = top

    def advance(lines_needed: int = 1) -> None:
        nonlocal column, y
        if y - lines_needed * leading >= bottom:
            return
        column += 1
        if column == style.columns:
            pages.append([])
            column = 0
        y = top

    def x_of() -> float:
        return MARGIN + column * (column_width + GUTTER)

    blocks: list[tuple[str, str]] = []
    table = [["Article", "Paragraph", "Words"]]
    for title, paragraphs in articles:
        blocks.append(("heading", title.replace("_", " ")))
        blocks.extend(("text", p) for p in paragraphs)
        table.extend(
            [title.replace("_", " ")[:18], str(n), str(len(p.split()))]
            for n, p in enumerate(paragraphs, start=1)
        )
    blocks.insert(2, ("table", ""))
    table = table[:8]
    for kind, text in blocks:
        if kind == "table":
            advance(len(table) + 1)
            cell = column_width / 3
            for number, row in enumerate(table):
                font = BOLD if number == 0 else FONT
                for index, value in enumerate(row):
                    pages[-1].append(
                        _Placed([value], font, x_of() + index * cell, y, cell, justify=False)
                    )
                y -= leading
            y -= leading * 0.6
            continue
        if kind == "heading":
            advance(3)
            pages[-1].append(_Placed([text], BOLD, x_of(), y, column_width, justify=False))
            y -= leading * 1.5
            continue
        lines = _wrap(text, column_width, FONT, style.size, style.hyphenate)
        for number, words in enumerate(lines):
            advance()
            last = number == len(lines) - 1
            pages[-1].append(
                _Placed(words, FONT, x_of(), y, column_width, style.justify and not last)
            )
            y -= leading
        y -= leading * 0.6

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    for number, placed in enumerate(pages, start=1):
        canvas.setFont(FONT, 9)
        canvas.drawString(MARGIN, height - MARGIN / 2, volume)
        canvas.drawRightString(width - MARGIN, height - MARGIN / 2, HEADER_NAME)
        canvas.drawCentredString(width / 2, MARGIN / 2, f"Page {number} of {len(pages)}")
        for item in placed:
            _draw(canvas, item, style.size)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw(canvas: Canvas, item: _Placed, size: float) -> None:
    canvas.setFont(item.font, size)
    if not item.justify or len(item.words) < 2:
        canvas.drawString(item.x, item.y, " ".join(item.words))
        return
    natural = sum(stringWidth(w, item.font, size) for w in item.words)
    gap = (item.width - natural) / (len(item.words) - 1)
    x = item.x
    for word in item.words:
        canvas.drawString(x, item.y, word)
        x += stringWidth(word, item.font, size) + gap


def scanned(pdf: bytes, scale: float = 2.0) -> bytes:
    """The pages of `pdf` as images only (rendered at 72 * `scale` dpi), as a scan is."""
    import pypdfium2
    from reportlab.lib.utils import ImageReader

    document = pypdfium2.PdfDocument(pdf)
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    width, height = A4
    for page in document:
        image = page.render(scale=scale, grayscale=True).to_pil()
        canvas.drawImage(ImageReader(image), 0, 0, width=width, height=height)
        canvas.showPage()
        page.close()
    document.close()
    canvas.save()
    return buffer.getvalue()
