"""Office, EPUB and scanned documents made by the tests themselves, with known contents."""

from __future__ import annotations

import io

TABLE_HEADER = ("Isotope", "Half-life", "Decay mode")
TABLE_ROWS = [(f"Element-{n}", f"{n * 7} days", "beta" if n % 2 else "alpha") for n in range(1, 41)]


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Valley Survey 2026"
    document.add_heading("Field Report", level=1)
    document.add_paragraph("The survey covered the northern valley in spring.")
    document.add_heading("Glacier Findings", level=2)
    document.add_paragraph("The Morteratsch glacier retreated 42 metres during the last year.")
    table = document.add_table(rows=1, cols=len(TABLE_HEADER))
    for cell, name in zip(table.rows[0].cells, TABLE_HEADER, strict=True):
        cell.text = name
    for values in TABLE_ROWS:
        cells = table.add_row().cells
        for cell, value in zip(cells, values, strict=True):
            cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


SLIDES = [
    ("Quarterly Review", "Revenue grew in every region."),
    ("Hiring Plan", "We will hire eleven marine biologists for the Azores station."),
    ("Risks", "Storms may delay the research vessel."),
]


def pptx_bytes() -> bytes:
    import pptx

    presentation = pptx.Presentation()
    layout = presentation.slide_layouts[1]  # title and content
    for title, body in SLIDES:
        slide = presentation.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Budget"
    first.append(["Item", "Cost"])
    first.append(["Telescope mirror", 125000])
    first.append(["Observatory dome", 98000])
    second = workbook.create_sheet("Inventory")
    second.append(["Part", "Count", "Shelf"])
    for n in range(1, 61):
        second.append([f"widget-{n}", n * 3, f"S{n % 7}"])
    second.append(["tungsten filament", 17, "S9"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def epub_bytes() -> bytes:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("ragsvc-test-book")
    book.set_title("Lighthouses")
    book.set_language("en")
    chapters = []
    for number, (title, text) in enumerate(
        [
            ("Early Lights", "The first lighthouse on the island burned whale oil."),
            ("Keepers", "Keeper Ida Lewis rescued eighteen people from the sea."),
        ],
        start=1,
    ):
        chapter = epub.EpubHtml(title=title, file_name=f"chapter{number}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    buffer = io.BytesIO()
    epub.write_epub(buffer, book)
    return buffer.getvalue()


SCANNED_LINES = [
    "The lighthouse keeper counted 4812 ships in 1911.",
    "Scanned pages carry no text layer at all.",
]


def scanned_pdf_bytes() -> bytes:
    """A two-page PDF: a page with a text layer, then a page that is only an image of text."""
    from PIL import Image, ImageDraw, ImageFont

    from tests.support.hostile_files import build_pdf

    image = Image.new("L", (1400, 500), 255)
    draw = ImageDraw.Draw(image)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
            "DejaVuSans.ttf", 40
        )
    except OSError:
        font = ImageFont.load_default(size=40)
    for number, line in enumerate(SCANNED_LINES):
        draw.text((50, 80 + 120 * number), line, fill=0, font=font)
    scan = io.BytesIO()
    image.save(scan, "PDF", resolution=150)
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    text_page = b"BT /F1 12 Tf 72 720 Td (A first page with an ordinary text layer.) Tj ET"
    for source in (build_pdf([(text_page, "")]), scan.getvalue()):
        for page in PdfReader(io.BytesIO(source)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
