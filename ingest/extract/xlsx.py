"""Excel workbooks (.xlsx) with openpyxl, read-only and by cached values (no formulas run).

Each sheet is a table: its first non-empty row is the header, repeated at the top of every
group of rows; a group's location is "sheet Sales, rows 2-40" in the sheet's own row numbers.
"""

from __future__ import annotations

import io

from ingest.errors import ExtractionFailed
from ingest.extract.base import Extracted, ExtractionLimits
from ingest.extract.layout import Layout, table_row

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class XlsxExtractor:
    media_type = MEDIA_TYPE

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()

    def extract(self, data: bytes) -> Extracted:
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except MemoryError:
            raise  # the sandbox names the limit that stopped it
        except Exception as error:
            raise ExtractionFailed(f"unreadable XLSX: {type(error).__name__}: {error}") from None
        layout = Layout(self.media_type, self.limits)
        try:
            for sheet in workbook.worksheets:
                if layout.full:
                    break
                rows: list[tuple[int, str]] = []
                chars = 0
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                    text = table_row(values)
                    if text:
                        rows.append((number, text))
                        chars += len(text)
                    if chars > self.limits.max_chars:
                        break
                layout.table(rows, f"sheet {sheet.title}")
        finally:
            workbook.close()
        return layout.build("workbook", workbook.properties.title)
