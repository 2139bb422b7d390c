"""PDF with pypdf: text per page, page numbers kept.

pypdf runs lenient (`strict=False`): it repairs what it can and logs what it repaired. A file
it cannot open at all, or one that needs a password, is a per-document `ExtractionFailed` or
`EncryptedDocument`; a single page that fails is skipped with a warning, since the rest of the
document is still worth having. A PDF with pages but no text layer is `EmptyDocument`.
"""

from __future__ import annotations

import io
import logging

from pypdf import PasswordType, PdfReader

from ingest.errors import EmptyDocument, EncryptedDocument, ExtractionFailed
from ingest.extract.base import Extracted

PAGE_SEPARATOR = "\n\n"
logger = logging.getLogger(__name__)


class PdfExtractor:
    media_type = "application/pdf"

    def extract(self, data: bytes) -> Extracted:
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
            pages = list(reader.pages)
        except ExtractionFailed:
            raise
        except RecursionError:
            raise ExtractionFailed("malformed PDF: object structure nests without end") from None
        except Exception as error:
            raise ExtractionFailed(f"unreadable PDF: {_describe(error)}") from None
        if not pages:
            raise EmptyDocument("PDF has no pages")

        texts: list[str] = []
        warnings: list[str] = []
        for number, page in enumerate(pages, start=1):
            try:
                text = page.extract_text() or ""
            except RecursionError:
                text = ""
                warnings.append(f"page {number}: skipped, object structure nests without end")
            except Exception as error:
                text = ""
                warnings.append(f"page {number}: skipped, {_describe(error)}")
            texts.append(text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))
        for warning in warnings:
            logger.warning("%s", warning)

        if not any(t.strip() for t in texts):
            raise EmptyDocument(
                f"no extractable text in {len(pages)} page(s) (a scan without a text layer?)"
            )
        page_starts: list[int] = []
        offset = 0
        for text in texts:
            page_starts.append(offset)
            offset += len(text) + len(PAGE_SEPARATOR)
        return Extracted(
            self.media_type, PAGE_SEPARATOR.join(texts), page_starts=page_starts, warnings=warnings
        )


def _describe(error: Exception) -> str:
    message = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {message}"[:300]
