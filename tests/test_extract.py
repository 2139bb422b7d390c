"""Extraction: content sniffing, encodings, HTML and Markdown text, real and malformed PDFs."""

from __future__ import annotations

import json
import os

import pytest

from ingest import (
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ExtractionFailed,
    UnsupportedType,
)
from ingest.extract import extract, sniff
from tests.support.data import dataset


def test_sniffing_uses_content_not_the_name() -> None:
    assert sniff(b"%PDF-1.7\n...", "notes.txt") == "application/pdf"
    assert sniff(b"<!DOCTYPE html><html><body>x</body></html>", "page.txt") == "text/html"
    assert sniff(b"# Title\n\n- one\n- two\n", "notes") == "text/markdown"
    assert sniff(b"plain words", "a.md") == "text/markdown"
    assert sniff(b"plain words", "a.txt") == "text/plain"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyDocument),
        (b"   \n\t\n", EmptyDocument),
        (b"PK\x03\x04rest-of-a-zip", UnsupportedType),
        (b"\x89PNG\r\n\x1a\n....", UnsupportedType),
        (os.urandom(4096), UnsupportedType),
    ],
)
def test_bad_bytes_raise_a_reason(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        extract(data, "file.txt")
    assert str(raised.value)


def test_garbage_named_pdf_is_a_corrupt_pdf() -> None:
    with pytest.raises(ExtractionFailed, match="corrupt PDF"):
        extract(b"oops", "report.pdf")


_FRENCH = (
    "Le café était déjà fermé quand nous sommes arrivés. Une élève très âgée, "
    "naïve mais déterminée, répétait sa leçon de français près de la fenêtre. "
    "« Où est la bibliothèque ? » demanda-t-elle à l'employé, qui haussa les épaules. "
) * 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
        (_FRENCH.encode("cp1252"), "élève"),
        ("\ufeffBOM first".encode(), "BOM first"),
        (b"windows\r\nline\r\nendings", "windows\nline\nendings"),
    ],
)
def test_text_encoding_is_detected(data: bytes, expected: str) -> None:
    assert expected in extract(data, "x.txt").text


def test_html_keeps_visible_text_only() -> None:
    page = b"""<!doctype html><html><head><title>T</title><style>p{color:red}</style>
    <script>var secret = 1;</script></head><body><h1>Heading</h1><p>First &amp; para.</p>
    <noscript>enable js</noscript><div>Second <b>bold</b> para.</div></body></html>"""
    text = extract(page, "page.html").text
    assert "Heading" in text and "First & para." in text and "Second bold para." in text
    assert "secret" not in text and "color" not in text and "enable js" not in text
    assert "\n\n" in text  # block elements keep paragraph breaks


def test_markdown_drops_markup_keeps_words() -> None:
    source = b"# Install\n\nRun **make run** and see [the docs](http://x/y).\n\n```\ncode\n```\n"
    text = extract(source, "README.md").text
    assert text.startswith("Install")
    assert "Run make run and see the docs." in text
    assert "http" not in text and "```" not in text and "code" in text


def test_pdf_text_per_page() -> None:
    path = dataset("pdf_samples", "py-pdf_sample-files", "001-trivial", "minimal-document.pdf")
    extracted = extract(path.read_bytes(), path.name)
    assert extracted.media_type == "application/pdf"
    assert extracted.page_count == 1
    assert extracted.page_starts == [0]
    assert extracted.text.strip()


def test_multi_page_pdf_page_offsets() -> None:
    manifest = dataset("pdf_samples", "manifest.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    row = next(r for r in rows if r["category"] == "long_document" and not r["pypdf_error"])
    path = manifest.parent / row["file"]
    extracted = extract(path.read_bytes(), path.name)
    assert extracted.page_count == row["pypdf_7.1.0_pages"]
    assert extracted.page_starts == sorted(extracted.page_starts or [])


def _manifest_rows(category: str) -> list[dict[str, object]]:
    manifest = dataset("pdf_samples", "manifest.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [r for r in rows if r["category"] == category]


def test_every_malformed_pdf_reads_or_fails_with_a_reason() -> None:
    rows = _manifest_rows("malformed")
    assert len(rows) == 20
    root = dataset("pdf_samples")
    failed = []
    for row in rows:
        path = root / str(row["file"])
        try:
            extracted = extract(path.read_bytes(), path.name)
        except DocumentError as error:
            failed.append(path.name)
            assert str(error), path
            # What pypdf alone read (the manifest's record) is still read.
            assert row["pypdf_error"] or not row["pypdf_text_chars"], (path, error)
        else:
            assert extracted.text.strip(), path
            assert extracted.page_starts, path
    # pypdf alone raises on 8 of these; PDFium reads two of them (a missing startxref,
    # a broken xref) and is tried when pypdf cannot open a file.
    assert len(failed) == 7, failed


def test_encrypted_pdfs_need_a_password() -> None:
    root = dataset("pdf_samples")
    for row in _manifest_rows("encrypted"):
        path = root / str(row["file"])
        with pytest.raises(EncryptedDocument, match="password"):
            extract(path.read_bytes(), path.name)


def test_scans_without_text_layer_are_empty_documents() -> None:
    root = dataset("pdf_samples")
    scans = [r for r in _manifest_rows("image_only_scanlike") if r["pypdf_text_chars"] == 0]
    assert len(scans) == 5
    for row in scans:
        path = root / str(row["file"])
        with pytest.raises(EmptyDocument, match="no extractable text"):
            extract(path.read_bytes(), path.name)


def test_documents_bring_their_own_titles() -> None:
    from tests.support.office_files import docx_bytes, epub_bytes

    html = b"<html><head><title>  Tide  Tables </title></head><body><p>High water.</p></body>"
    assert extract(html, "t.html").title == "Tide Tables"
    assert extract(docx_bytes(), "r.docx").title == "Valley Survey 2026"
    assert extract(epub_bytes(), "b.epub").title == "Lighthouses"
    assert extract(b"plain words", "p.txt").title is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("Tagging named entities with HMMs", "Tagging named entities with HMMs"),
        ("Microsoft Word - draft3.doc", None),
        ("report_final.pdf", None),
        ("Untitled", None),
        ("   ", None),
        (None, None),
        ("x" * 400, None),
    ],
)
def test_tool_artefacts_are_not_titles(raw: object, kept: str | None) -> None:
    from ingest.extract.base import clean_title

    assert clean_title(raw) == kept
