"""PDFs typeset in the test with reportlab: pages of lines at known places, running headers
and footers, two columns. Each page is a list of blocks (paragraphs) of already broken lines,
so a test decides exactly where a line, a column or a page ends."""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

FONT = "Helvetica"
SIZE = 10
LEADING = 13
PARAGRAPH_SPACE = 10
MARGIN = 72

Block = list[str]


def paged_pdf(
    pages: list[list[Block]],
    *,
    header: str | None = None,
    footer: str | None = None,
    columns: int = 1,
    title: str | None = None,
) -> bytes:
    """A PDF of `pages`; `header` and `footer` may hold `{page}` and `{pages}`. With two
    columns, a page's blocks are shared between them: the first half on the left."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    if title:
        canvas.setTitle(title)
    width, height = A4
    gutter = 24
    column_width = (width - 2 * MARGIN - (columns - 1) * gutter) / columns
    for number, blocks in enumerate(pages, start=1):
        canvas.setFont(FONT, SIZE)
        values = {"page": number, "pages": len(pages)}
        if header:
            canvas.drawString(MARGIN, height - MARGIN / 2, header.format(**values))
        if footer:
            canvas.drawCentredString(width / 2, MARGIN / 2, footer.format(**values))
        share = -(-len(blocks) // columns)
        for column in range(columns):
            x = MARGIN + column * (column_width + gutter)
            y = height - MARGIN
            for block in blocks[column * share : (column + 1) * share]:
                for line in block:
                    canvas.drawString(x, y, line)
                    y -= LEADING
                y -= PARAGRAPH_SPACE
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def table_pdf(paragraph: str, rows: list[list[str]], column_width: float = 140) -> bytes:
    """One page: a line of prose, then a table of `rows` (the first is the header), each
    cell drawn at its column's left edge."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    canvas.setFont(FONT, SIZE)
    height = A4[1]
    y = height - MARGIN
    canvas.drawString(MARGIN, y, paragraph)
    y -= 2 * LEADING
    for row in rows:
        for index, cell in enumerate(row):
            canvas.drawString(MARGIN + index * column_width, y, cell)
        y -= LEADING
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
