"""PDF: pypdf opens and bounds the file, PDFium reads its text, `pdf_layout` orders it.

Two engines, each where it is the better tool (measured in `benchmarks/bench_pdf_extract.py`,
figures in `benchmarks/RESULTS.md`):

- **pypdf** opens the file leniently (`strict=False`: it repairs what it can and logs what
  it repaired), decrypts it, reads its title, and decompresses every page's content streams
  under the stream limits before anything else looks at the page. A file it cannot open at
  all, or one that needs a password, is a per-document `ExtractionFailed` or
  `EncryptedDocument`, unless PDFium reads it (then a warning says pypdf could not); a page
  whose contents break a limit or cannot be decoded is skipped with a warning naming it.
- **PDFium** (`pypdfium2`) gives each page's characters with their boxes. It splits far
  fewer words than pypdf ("section 1204", not "section 120 4") and reads CJK text pypdf
  garbles, in a twelfth of the time. The characters become positioned runs, which
  `pdf_layout` reads in columns and paragraphs, without running headers, footers and page
  numbers, joining a paragraph broken by a page break. Where PDFium cannot load a page,
  pypdf's text of it is used.

Pages without a text layer are read by OCR of their images when `limits.ocr` is on
(`ocr.py`), and say so in a warning; their lines get the same furniture removal. A PDF with
pages but no text (and no OCR) is `EmptyDocument`; one whose pages all failed fails with the
first page's reason (a decompression limit, a decoder error), not as if it had no text layer.

`ExtractionLimits` bound the work: every stream's decompressed size (pypdf's configuration),
the pages read, the page contents decompressed in all, and the characters kept. A document
cut short by a limit is still indexed, up to the limit, with `capped` saying which.
"""

from __future__ import annotations

import ctypes
import io
import logging
from typing import Any

from pypdf import PasswordType, PdfReader, apply_configuration
from pypdf.errors import LimitReachedError

from ingest.errors import EmptyDocument, EncryptedDocument, ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits, Section, clean_title
from ingest.extract.pdf_layout import (
    Line,
    join_pages,
    lines_of_text,
    read_page,
    remove_furniture,
    runs_from_glyphs,
)

logger = logging.getLogger(__name__)
# PDFium's marks for a hyphen it found at a line end, shown as one.
_HYPHENS = {0x02: "-", 0xFFFE: "-", 0xAD: "-"}


class PdfExtractor:
    media_type = "application/pdf"

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()

    def extract(self, data: bytes) -> Extracted:
        limits = self.limits
        stream_limit = limits.max_stream_bytes
        with apply_configuration(
            zlib_maximum_output_length=stream_limit,
            lzw_maximum_output_length=stream_limit,
            run_length_maximum_output_length=stream_limit,
            brotli_maximum_output_length=stream_limit,
            jbig2_maximum_output_length=stream_limit,
            maximum_declared_stream_length=stream_limit,
            array_based_stream_maximum_output_length=stream_limit,
        ):
            return self._extract(data, limits)

    def _extract(self, data: bytes, limits: ExtractionLimits) -> Extracted:
        warnings: list[str] = []
        reader: PdfReader | None = None
        try:
            reader = _open_pypdf(data)
            page_count = len(reader.pages)
        except EncryptedDocument:
            raise
        except Exception as error:
            reason = (
                "malformed PDF: object structure nests without end"
                if isinstance(error, RecursionError)
                else f"unreadable PDF: {_describe(error)}"
            )
            document = _open_pdfium(data)
            if document is None:
                raise ExtractionFailed(reason) from None
            page_count = len(document)
            warnings.append(f"read by PDFium alone; pypdf could not open it ({reason})")
        else:
            document = _open_pdfium(data)
        if not page_count:
            raise EmptyDocument("PDF has no pages")

        pages: list[list[Line]] = []
        capped = None
        if page_count > limits.max_pages:
            capped = (
                f"capped: the first {limits.max_pages} of {page_count} pages were read "
                "(setting extract_max_pages)"
            )
        decompressed = 0
        chars = 0
        try:
            for number in range(1, min(page_count, limits.max_pages) + 1):
                lines: list[Line] = []
                try:
                    pypdf_page = reader.pages[number - 1] if reader is not None else None
                    if pypdf_page is not None:
                        contents = pypdf_page.get_contents()
                        decompressed += len(contents.get_data()) if contents is not None else 0
                        if decompressed > limits.max_decompressed_bytes:
                            capped = (
                                f"capped at page {number - 1} of {page_count}: the page "
                                f"contents decompress to over {limits.max_decompressed_bytes} "
                                "bytes (setting extract_max_decompressed_bytes)"
                            )
                            break
                    lines = _page_lines(document, pypdf_page, number)
                    if limits.ocr and not any(line.text.strip() for line in lines):
                        lines = _ocr(pypdf_page)
                        if lines:
                            warnings.append(f"page {number}: no text layer, read by OCR")
                except ExtractionFailed:
                    raise
                except LimitReachedError:
                    warnings.append(
                        f"page {number}: skipped, its contents decompress to over "
                        f"{limits.max_stream_bytes} bytes (setting extract_max_stream_bytes)"
                    )
                except RecursionError:
                    warnings.append(f"page {number}: skipped, object structure nests without end")
                except Exception as error:
                    warnings.append(f"page {number}: skipped, {_describe(error)}")
                pages.append(lines)
                chars += sum(len(line.text) + 2 for line in lines)
                if chars > limits.max_chars:
                    capped = (
                        f"capped at page {number} of {page_count}: over {limits.max_chars} "
                        "characters of text (setting extract_max_chars)"
                    )
                    break
        finally:
            if document is not None:
                document.close()
        for warning in warnings:
            logger.warning("%s", warning)

        pages, running_title = remove_furniture(pages)
        text, page_starts, headings = join_pages(pages)
        if len(text) > limits.max_chars:
            text = text[: limits.max_chars]
            page_starts = [start for start in page_starts if start < limits.max_chars]
            headings = [(at, heading) for at, heading in headings if at < limits.max_chars]
        if not text.strip():
            failed = [w for w in warnings if w.startswith("page ")]
            if failed:
                # Say what went wrong, not "no text": pages that failed are not a missing layer.
                more = f" (and {len(failed) - 1} more pages)" if len(failed) > 1 else ""
                raise ExtractionFailed(f"no text could be read: {failed[0]}{more}")
            if capped:
                raise ExtractionFailed(f"no text before the limit: {capped}")
            raise EmptyDocument(
                f"no extractable text in {len(pages)} page(s) (a scan without a text layer?)"
            )
        title = _title(reader) if reader is not None else None
        return Extracted(
            self.media_type,
            text,
            page_starts=page_starts,
            warnings=warnings,
            capped=capped,
            sections=[Section(at, heading) for at, heading in headings],
            title=title or clean_title(running_title),
        )


def _open_pypdf(data: bytes) -> PdfReader:
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except Exception as error:  # unsupported algorithm, missing crypto library
            raise EncryptedDocument(f"encrypted PDF that cannot be opened: {error}") from None
        if decrypted == PasswordType.NOT_DECRYPTED:
            raise EncryptedDocument("encrypted PDF: a password is required")
    return reader


def _open_pdfium(data: bytes) -> Any:
    """The document in PDFium, or None where PDFium cannot open it."""
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(data)
    except Exception:
        return None


def _page_lines(document: Any, pypdf_page: Any, number: int) -> list[Line]:
    """The page's lines in reading order: PDFium's characters where it loads the page,
    otherwise pypdf's text."""
    if document is not None:
        try:
            page = document[number - 1]
        except Exception:
            page = None
        if page is not None:
            try:
                return _pdfium_lines(page)
            finally:
                page.close()
    if pypdf_page is None:
        return []
    return lines_of_text(pypdf_page.extract_text() or "")


def _pdfium_lines(page: Any) -> list[Line]:
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    textpage = page.get_textpage()
    try:
        raw = textpage.raw
        count = pdfium_c.FPDFText_CountChars(raw)
        left, right, bottom, top = (ctypes.c_double() for _ in range(4))
        refs = [ctypes.byref(v) for v in (left, right, bottom, top)]
        chars: list[str] = []
        boxes: list[tuple[float, float, float, float]] = []
        for index in range(max(count, 0)):
            code = pdfium_c.FPDFText_GetUnicode(raw, index)
            if code in _HYPHENS:
                char = _HYPHENS[code]
            elif code < 32 and code not in (9, 10, 13):
                continue
            elif 0xD800 <= code <= 0xDFFF:
                continue  # half of a pair PDFium cannot give whole; not text we can show
            else:
                char = chr(code)
            if pdfium_c.FPDFText_GetCharBox(raw, index, *refs):
                boxes.append((left.value, bottom.value, right.value, top.value))
            else:
                boxes.append((0.0, 0.0, 0.0, 0.0))
            chars.append(char)
        runs = runs_from_glyphs(chars, boxes)
        return read_page(runs, width, height, raw_text="".join(chars))
    finally:
        textpage.close()


def _title(reader: Any) -> str | None:
    try:
        return clean_title(reader.metadata.title if reader.metadata else None)
    except Exception:
        return None  # a malformed info dictionary is no reason to lose the document


def _ocr(page: Any) -> list[Line]:
    from ingest.extract.ocr import read_images, read_runs

    if page is None:
        return []
    images = [image.data for image in page.images]
    if len(images) == 1:  # a scanned page: read its lines where they stand
        runs, width, height = read_runs(images[0])
        return read_page(runs, width, height)
    return lines_of_text(read_images(images))


def _describe(error: Exception) -> str:
    message = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {message}"[:300]
