"""Office formats, EPUB and scanned PDFs through the real server: each is searchable, and a
hit says where in its document it came from (heading path, slide, sheet and rows, page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ingest.chunking import Chunker
from ingest.extract import extract, sniff
from ingest.extract.base import ExtractionLimits
from tests.support import office_files
from tests.support.processes import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("formats")
    server = Server(folder / "data", folder / "server.log", {"RAGSVC_OCR": "true"}).start()
    files = {
        "report.docx": office_files.docx_bytes(),
        "review.pptx": office_files.pptx_bytes(),
        "budget.xlsx": office_files.xlsx_bytes(),
        "lighthouses.epub": office_files.epub_bytes(),
        "scan.pdf": office_files.scanned_pdf_bytes(),
    }
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            response = http.post(
                "/documents",
                params={"wait": "true"},
                files=[("files", (name, data)) for name, data in files.items()],
            )
            assert response.status_code == 200, response.text
            jobs = response.json()["jobs"]
            assert [j["state"] for j in jobs] == ["ready"] * len(files), jobs
            yield http
    finally:
        server.stop()


def _top(client: httpx.Client, query: str, source: str, needle: str) -> dict[str, Any]:
    """The best of the top 5 hits for `query` that comes from `source` and holds `needle`."""
    response = client.post("/search", json={"query": query, "k": 5, "mode": "hybrid"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    hits = [h for h in results if h["source_name"] == source and needle in h["text"]]
    assert hits, f"no hit from {source} with {needle!r} for {query!r}: {results}"
    return dict(hits[0])


def test_docx_hit_reports_its_heading_path(client: httpx.Client) -> None:
    hit = _top(client, "How far did the Morteratsch glacier retreat?", "report.docx", "42 metres")
    assert hit["location"] == "Field Report > Glacier Findings"


def test_docx_table_rows_carry_the_header_and_their_row_range(client: httpx.Client) -> None:
    row = "Element-33 | 231 days | beta"
    hit = _top(client, "Element-33 231 days", "report.docx", row)
    assert hit["text"].startswith("Isotope | Half-life | Decay mode\n")
    location = hit["location"]
    assert location.startswith("Field Report > Glacier Findings, table 1, rows ")
    first, last = (int(n) for n in location.rsplit(" ", 1)[1].split("-"))
    assert first <= 34 <= last  # Element-33 is the table's row 34 (the header is row 1)


def test_pptx_hit_reports_its_slide(client: httpx.Client) -> None:
    question = "How many marine biologists will be hired?"
    hit = _top(client, question, "review.pptx", "eleven marine biologists")
    assert hit["location"] == "slide 2: Hiring Plan"


def test_xlsx_hit_reports_its_sheet_and_rows(client: httpx.Client) -> None:
    hit = _top(client, "tungsten filament count", "budget.xlsx", "tungsten filament | 17 | S9")
    assert hit["text"].startswith("Part | Count | Shelf\n")
    location = hit["location"]
    assert location.startswith("sheet Inventory, rows ")
    assert location.endswith("-62")  # the filament is the sheet's row 62
    budget = _top(client, "cost of the telescope mirror", "budget.xlsx", "Telescope mirror")
    assert budget["location"] == "sheet Budget, rows 2-3"


def test_epub_hit_reports_its_chapter(client: httpx.Client) -> None:
    question = "Who rescued eighteen people from the sea?"
    hit = _top(client, question, "lighthouses.epub", "Ida Lewis")
    assert hit["location"] == "Keepers"


def test_scanned_page_is_read_by_ocr_and_keeps_its_page(client: httpx.Client) -> None:
    question = "How many ships did the lighthouse keeper count?"
    hit = _top(client, question, "scan.pdf", "4812 ships in 1911")
    assert hit["page_end"] == 2  # the text layer of page 1 and the scanned page 2
    assert hit["text"].index("4812") > hit["text"].index("ordinary text layer")


def test_without_ocr_a_scanned_page_is_left_out_and_a_scan_alone_is_refused() -> None:
    data = office_files.scanned_pdf_bytes()
    extracted = extract(data, "scan.pdf", ExtractionLimits(ocr=False))
    assert "ships" not in extracted.text and extracted.page_count == 2


def test_office_containers_are_told_apart_by_content() -> None:
    names = {
        office_files.docx_bytes(): "wordprocessingml",
        office_files.pptx_bytes(): "presentationml",
        office_files.xlsx_bytes(): "spreadsheetml",
        office_files.epub_bytes(): "epub",
    }
    for data, kind in names.items():
        assert kind in sniff(data, "no-suffix")


def test_a_table_group_fits_one_chunk_so_every_chunk_has_the_header(chunker: Chunker) -> None:
    extracted = extract(office_files.xlsx_bytes(), "budget.xlsx")
    chunks = chunker.chunk(extracted)
    inventory = [c for c in chunks if (c.location or "").startswith("sheet Inventory")]
    assert len(inventory) >= 2
    assert all(c.text.startswith("Part | Count | Shelf\n") for c in inventory)


def test_a_broken_office_file_fails_its_job_with_a_reason() -> None:
    broken = office_files.docx_bytes()[:2000]
    with pytest.raises(Exception, match=r"DOCX|ZIP|zip"):
        extract(broken, "broken.docx")
