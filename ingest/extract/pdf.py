"""PDF with pypdf: text per page, page numbers kept.

pypdf runs lenient (`strict=False`): it repairs what it can and logs what it repaired. A file
it cannot open at all, or one that needs a password, is a per-document `ExtractionFailed` or
`EncryptedDocument`; a single page that fails is skipped with a warning, since the rest of the
document is still worth having. Pages without a text layer are read by OCR of their images
when `limits.ocr` is on (`ocr.py`), and say so in a warning. A PDF with pages but no text
layer (and no OCR) is `EmptyDocument`; one
whose pages all failed fails with the first page's reason (a decompression limit, a decoder
error), not as if it had no text layer.

`ExtractionLimits` bound the work: every stream's decompressed size (pypdf's configuration),
the pages read, the page contents decompressed in all, and the characters kept. A document
cut short by a limit is still indexed, up to the limit, with `capped` saying which.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from pypdf import PasswordType, PdfReader, apply_configuration

from ingest.errors import EmptyDocument, EncryptedDocument, ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits, clean_title

PAGE_SEPARATOR = "\n\n"
logger = logging.getLogger(__name__)


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
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                try:
                    decrypted = reader.decrypt("")
                except Exception as error:  # unsupported algorithm, missing crypto library
                    raise EncryptedDocument(
                        f"encrypted PDF that cannot be opened: {error}"
                    ) from None
                if decrypted == PasswordType.NOT_DECRYPTED:
                    raise EncryptedDocument("encrypted PDF: a password is required")
            page_count = len(reader.pages)
        except ExtractionFailed:
            raise
        except RecursionError:
            raise ExtractionFailed("malformed PDF: object structure nests without end") from None
        except Exception as error:
            raise ExtractionFailed(f"unreadable PDF: {_describe(error)}") from None
        if not page_count:
            raise EmptyDocument("PDF has no pages")

        texts: list[str] = []
        warnings: list[str] = []
        capped = None
        if page_count > limits.max_pages:
            capped = (
                f"capped: the first {limits.max_pages} of {page_count} pages were read "
                "(setting extract_max_pages)"
            )
        decompressed = 0
        chars = 0
        for number in range(1, min(page_count, limits.max_pages) + 1):
            try:
                page = reader.pages[number - 1]
                contents = page.get_contents()
                decompressed += len(contents.get_data()) if contents is not None else 0
                if decompressed > limits.max_decompressed_bytes:
                    capped = (
                        f"capped at page {number - 1} of {page_count}: the page contents "
                        f"decompress to over {limits.max_decompressed_bytes} bytes (setting "
                        "extract_max_decompressed_bytes)"
                    )
                    break
                text = page.extract_text() or ""
                if limits.ocr and not text.strip():
                    text = _ocr(page)
                    if text:
                        warnings.append(f"page {number}: no text layer, read by OCR")
            except ExtractionFailed:
                raise
            except RecursionError:
                text = ""
                warnings.append(f"page {number}: skipped, object structure nests without end")
            except Exception as error:
                text = ""
                warnings.append(f"page {number}: skipped, {_describe(error)}")
            text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
            if chars + len(text) > limits.max_chars:
                texts.append(text[: limits.max_chars - chars])
                capped = (
                    f"capped at page {number} of {page_count}: over {limits.max_chars} characters "
                    "of text (setting extract_max_chars)"
                )
                break
            chars += len(text) + len(PAGE_SEPARATOR)
            texts.append(text)
        for warning in warnings:
            logger.warning("%s", warning)

        if not any(t.strip() for t in texts):
            if warnings:
                # Say what went wrong, not "no text": pages that failed are not a missing layer.
                more = f" (and {len(warnings) - 1} more pages)" if len(warnings) > 1 else ""
                raise ExtractionFailed(f"no text could be read: {warnings[0]}{more}")
            if capped:
                raise ExtractionFailed(f"no text before the limit: {capped}")
            raise EmptyDocument(
                f"no extractable text in {len(texts)} page(s) (a scan without a text layer?)"
            )
        page_starts: list[int] = []
        offset = 0
        for text in texts:
            page_starts.append(offset)
            offset += len(text) + len(PAGE_SEPARATOR)
        return Extracted(
            self.media_type,
            PAGE_SEPARATOR.join(texts),
            page_starts=page_starts,
            warnings=warnings,
            capped=capped,
            title=_title(reader),
        )


def _title(reader: Any) -> str | None:
    try:
        return clean_title(reader.metadata.title if reader.metadata else None)
    except Exception:
        return None  # a malformed info dictionary is no reason to lose the document


def _ocr(page: Any) -> str:
    from ingest.extract.ocr import read_images

    return read_images([image.data for image in page.images])


def _describe(error: Exception) -> str:
    message = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {message}"[:300]
