"""PDFs read as a person reads them: typeset here with reportlab, then extracted, chunked and
answered on. Running headers, footers and page numbers stay out of chunks and answers; two
columns read column by column; a paragraph broken by a page break is one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline
from ingest.chunking import sentence_spans
from ingest.cleaning import readable
from ingest.extract import extract
from ingest.extract.base import ExtractionLimits
from ingest.extract.layout import TABLE_GROUP_CHARS
from ingest.extract.pdf_layout import Line, remove_furniture, runs_on
from ingest.sources import BytesSource
from ragsvc.answering.base import Passage
from ragsvc.answering.extractive import ExtractiveBackend, Scored
from ragsvc.answering.sentences import answer_kind, quotable
from ragsvc.retrieval.retriever import passages, retrieve
from ragsvc.settings import Settings
from tests.support.pdf_files import paged_pdf, table_pdf

HEADER = "Annual Report of the Harbour Board"
FOOTER = "Page {page} of {pages}"
TOPICS = [
    (
        "The harbour dredged the north channel to a depth of twelve metres in March.",
        "Dredging took six weeks and moved forty thousand cubic metres of silt.",
    ),
    (
        "Pilot boats guided three hundred and ten ships into the inner basin.",
        "Most of them were grain carriers bound for the eastern quay.",
    ),
    (
        "The board replaced the wooden fenders on the ferry pier with rubber ones.",
        "The old fenders had split after two winters of ice.",
    ),
    (
        "A new tide gauge was mounted on the breakwater lighthouse.",
        "It reports the water level every ten minutes to the harbour office.",
    ),
    (
        "Fees for private moorings rose by four percent from the first of July.",
        "The increase pays for the new security cameras at the marina.",
    ),
]


# Two paragraphs for each of two columns, each line as it is set.
COLUMNS = [
    [
        "The left column opens the story of the",
        "lighthouse on the northern cape and its",
        "first keeper, who lit the lamp in 1851.",
    ],
    ["He kept a log of every ship that passed", "and of every storm that reached the cape."],
    [
        "The right column goes on with the second",
        "keeper, his daughter, who took over the",
        "lamp when her father fell ill in 1872.",
    ],
    ["She kept the light burning for forty", "years and saved nine sailors from the sea."],
]


def _report_pages() -> list[list[list[str]]]:
    return [[[first], [second]] for first, second in TOPICS]


def test_running_headers_footers_and_page_numbers_are_in_no_chunk(chunker: Chunker) -> None:
    pdf = paged_pdf(_report_pages(), header=HEADER, footer=FOOTER)
    extracted = extract(pdf, "report.pdf")
    assert extracted.page_count == 5
    chunks = chunker.chunk(extracted)
    text = " ".join(chunk.text for chunk in chunks)
    for first, second in TOPICS:
        assert first in text and second in text
    assert "Harbour Board" not in text
    assert "Page" not in text and "of 5" not in text
    # The running header is document context, as a title is.
    assert extracted.title == HEADER
    assert all(HEADER in (chunk.context or "") for chunk in chunks)


def test_running_headers_with_ocr_noise_are_recognised() -> None:
    noisy = [
        "THE SIEGE OF VICKSBURG. 52",
        "THE SIEGE OP VICKSBURG. 53",
        "54 THE SIEGE OF VICKSBURG.",
        "THE SIEGE OF VICKSBUKG. 55",
    ]
    pages = [
        [Line(header, False), Line(f"Body text of page {n} tells what happened.", True, False)]
        for n, header in enumerate(noisy)
    ]
    cleaned, title = remove_furniture(pages)
    assert [[line.text for line in page] for page in cleaned] == [
        [f"Body text of page {n} tells what happened."] for n in range(4)
    ]
    assert title is not None and "SIEGE" in title


def test_a_two_column_page_reads_column_by_column() -> None:
    pdf = paged_pdf([COLUMNS], columns=2)
    text = readable(extract(pdf, "columns.pdf").text)
    assert "and its first keeper, who lit the lamp in 1851." in text
    assert "the second keeper, his daughter, who took over the lamp" in text
    assert text.index("storm that reached the cape") < text.index("The right column")


def test_a_scanned_two_column_page_is_read_by_ocr_column_by_column() -> None:
    from benchmarks.typeset import scanned

    pdf = scanned(paged_pdf([COLUMNS], columns=2))
    extracted = extract(pdf, "scan.pdf", ExtractionLimits(ocr=True))
    assert extracted.warnings == ["page 1: no text layer, read by OCR"]
    words = readable(extracted.text).split()
    text = " ".join(words)
    # OCR may run a word or two together; the order of the columns is what is tested.
    assert (
        text.index("1851") < text.index("storm") < text.index("right column") < text.index("1872")
    )


def test_a_table_reads_as_rows_of_cells() -> None:
    rows = [
        ["Harbour", "Depth", "Opened"],
        ["North quay", "12 m", "1851"],
        ["Ferry pier", "7 m", "1903"],
        ["Marina", "4 m", "1988"],
    ]
    pdf = table_pdf("The harbour has three berths, listed below with their depths.", rows)
    lines = extract(pdf, "berths.pdf").text.splitlines()
    assert "The harbour has three berths, listed below with their depths." in lines
    for row in rows:
        assert " | ".join(row) in lines


def test_a_long_table_is_cut_into_row_groups_that_each_open_with_its_header() -> None:
    rows = [["Vessel", "Length", "Registered"]] + [
        [f"Harbour tug number {n}", f"{20 + n} m", f"{1950 + n}"] for n in range(40)
    ]
    pdf = table_pdf("The fleet register lists every tug with its length.", rows)
    text = extract(pdf, "fleet.pdf").text
    groups = [block for block in text.split("\n\n") if " | " in block]
    assert len(groups) > 2
    for group in groups:
        assert group.startswith("Vessel | Length | Registered\n")
        assert len(group) <= TABLE_GROUP_CHARS + 40
    body = [line for group in groups for line in group.splitlines()[1:]]
    assert body == [" | ".join(row) for row in rows[1:]]


def test_a_paragraph_broken_by_a_page_break_is_one_sentence(chunker: Chunker) -> None:
    pages = [
        [
            ["The registry opened its doors in the spring."],
            ["Once registered, the design of a vessel hull stays protected for"],
        ],
        [
            ["ten years from the date of registration or first publication."],
            ["After that anyone may copy it."],
        ],
        [["The registry publishes a list of designs every quarter."]],
    ]
    pdf = paged_pdf(pages, header=HEADER, footer=FOOTER)
    extracted = extract(pdf, "hulls.pdf")
    (chunk,) = chunker.chunk(extracted)
    sentences = [readable(chunk.text[a:b]) for a, b in sentence_spans(chunk.text)]
    assert (
        "Once registered, the design of a vessel hull stays protected for ten years from the "
        "date of registration or first publication." in sentences
    )
    assert (chunk.page_start, chunk.page_end) == (1, 3)


def test_a_page_runs_on_only_mid_sentence() -> None:
    assert runs_on("stays protected for", "ten years")
    assert runs_on("as listed in the annex,", "The second part")
    assert not runs_on("It ended there.", "then another")
    assert not runs_on("INTRODUCTION", "The act")
    assert not runs_on("a list of", "THE NEXT HEADING")


def test_an_answer_is_never_a_running_header(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    pdf = paged_pdf(_report_pages(), header=HEADER, footer=FOOTER)
    IngestPipeline(catalog, embedder, chunker).run([BytesSource("report.pdf", pdf)], collection="c")
    answerer = ExtractiveBackend(embedder, min_confidence=0.0)
    for question in (
        "What is the annual report of the harbour board?",
        "Which page of the annual report is this?",
        "How deep was the north channel dredged?",
    ):
        hits = retrieve(catalog, embedder, Settings(), question, k=5, need_vector=True).hits
        answer = answerer.answer(question, passages(catalog, hits))
        assert "Harbour Board" not in answer.text and "Page" not in answer.text, answer.text


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("The vessel hull design is protected for ten years.", True),
        ("Proposed Design Changes", False),
        ("54 THE SIEGE OF VICKSBURG.", False),
        ("Figure 2: Finding a similar relation from two articles.", False),
        ("Introduction . . . . . . . . . . 12", False),
        ("harbour, 12, 45, 67, 89", False),
        ("Copyright Office Summary December 1998 INTRODUCTION", False),
        ("Total fees | 4,500", True),
        ("他来了，我们一起去了车站。", True),  # noqa: RUF001 (a CJK comma)
    ],
)
def test_headings_captions_and_fragments_are_not_quotable(sentence: str, expected: bool) -> None:
    assert quotable(sentence) is expected


def test_the_sentence_holding_the_kind_of_thing_asked_ranks_first_without_raising_evidence() -> (
    None
):
    passage = Passage(
        number=1, chunk_id=1, document_id=1, source_name="hulls.pdf", text="", similarity=0.6
    )
    topic = "Title V creates a new form of protection for the design of vessel hulls."
    duration = "Protection lasts ten years from registration."
    question = "How long does protection for a vessel hull design last?"
    pattern = answer_kind(question)
    assert pattern is not None
    assert pattern.search(duration) and not pattern.search(topic)
    scored = Scored(
        [(passage, topic), (passage, duration)],
        similarity=np.array([0.62, 0.60]),
        lexical=np.array([0.5, 0.5]),
        stored=np.zeros(2, dtype=bool),
        question_vector=np.zeros(3),
        kind=np.array([False, True]),
        asked=True,
    )
    chosen, evidence = ExtractiveBackend._choose([passage], scored)
    assert chosen[0] == 1  # the duration, though the topic sentence is nearer the question
    # The evidence is the sentence's own: holding the kind asked ranks it, not its evidence.
    assert evidence.sentence == pytest.approx(0.7 * 0.60 + 0.3 * 0.5)
    assert (evidence.passage, evidence.kind) == (0.6, 1.0)
    assert answer_kind("Who wrote the report?") is None
    assert answer_kind("When was the DMCA signed?").search("on October 28, 1998")  # type: ignore[union-attr]
    assert answer_kind("How many ships came?").search("310 ships")  # type: ignore[union-attr]


def test_a_page_over_the_stream_limit_is_named_in_the_document_note(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    from ingest.extract.pdf import PdfExtractor
    from tests.support.hostile_files import TEXT_PAGE, build_pdf, deflated_zeros

    text_page = (TEXT_PAGE.format(n=1).encode(), "")
    bomb_page = (deflated_zeros(3_000_000), "/Filter /FlateDecode")
    reader = PdfExtractor(ExtractionLimits(max_stream_bytes=1_000_000))
    pipeline = IngestPipeline(
        catalog, embedder, chunker, extractor=lambda data, name: reader.extract(data)
    )
    one = build_pdf([text_page, bomb_page, text_page])
    most = build_pdf([text_page, bomb_page, bomb_page, bomb_page])
    sources = [BytesSource("one.pdf", one), BytesSource("most.pdf", most)]
    report = pipeline.run(sources, collection="c")
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["one.pdf"].status == "added"
    note = outcomes["one.pdf"].reason or ""
    assert "page 2: skipped" in note and "1000000 bytes (setting extract_max_stream_bytes)" in note
    assert "page 1" not in note and "page 3" not in note
    most_note = outcomes["most.pdf"].reason or ""
    assert most_note.startswith("most pages were left out (3 of 4)")
    assert all(f"page {n}: skipped" in most_note for n in (2, 3, 4))
