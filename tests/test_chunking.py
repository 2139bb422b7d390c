"""Chunking with the model's tokenizer: budget, offsets, pages, overlap and exact counts."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ingest import Chunker, Embedder
from ingest.chunking import CONTEXT_TOKENS, sentence_spans
from ingest.extract.base import Extracted, Section


def _sentences(count: int, start: int = 0) -> str:
    return " ".join(
        f"Sentence number {i} talks about topic {i % 7} in plain words."
        for i in range(start, start + count)
    )


def test_chunks_fit_the_model_and_point_into_the_text(chunker: Chunker, embedder: Embedder) -> None:
    text = "\n\n".join(_sentences(9, i * 9) for i in range(12))
    chunks = chunker.chunk(Extracted("text/plain", text))
    assert len(chunks) > 3
    assert chunker.budget == embedder.max_tokens - embedder.special_tokens == 254
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count <= chunker.budget
        # The count is exact: the chunk alone tokenizes to the same number of tokens.
        assert len(embedder.token_offsets(chunk.text)) == chunk.token_count
        assert chunk.page_start is None and chunk.page_end is None
    # Every sentence is in some chunk.
    for i in range(108):
        assert any(f"Sentence number {i} " in c.text for c in chunks)


def test_overlap_repeats_whole_sentences(embedder: Embedder) -> None:
    text = _sentences(200)
    chunker = Chunker(embedder, overlap=40)
    chunks = chunker.chunk(Extracted("text/plain", text))
    for previous, current in pairwise(chunks):
        assert current.char_start < previous.char_end  # overlapping spans
        overlap = text[current.char_start : previous.char_end]
        assert overlap.endswith(".")
        assert len(embedder.token_offsets(overlap)) <= 40
    no_overlap = Chunker(embedder, overlap=0).chunk(Extracted("text/plain", text))
    for previous, current in pairwise(no_overlap):
        assert current.char_start >= previous.char_end


def test_paragraphs_are_preferred_boundaries(chunker: Chunker) -> None:
    paragraphs = [_sentences(8, i * 8) for i in range(6)]
    text = "\n\n".join(paragraphs)
    for chunk in chunker.chunk(Extracted("text/plain", text)):
        assert chunk.text.startswith("Sentence number")
        assert chunk.text.endswith(".")


def test_text_without_boundaries_is_cut_between_words(chunker: Chunker, embedder: Embedder) -> None:
    text = " ".join(f"word{i}" for i in range(3000))
    chunks = chunker.chunk(Extracted("text/plain", text))
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= chunker.budget
        assert chunk.text.startswith("word") and chunk.text[-1].isdigit()


def test_pages_follow_character_offsets(chunker: Chunker) -> None:
    pages = [_sentences(30, p * 30) for p in range(4)]
    starts, offset = [], 0
    for page in pages:
        starts.append(offset)
        offset += len(page) + 2
    extracted = Extracted("application/pdf", "\n\n".join(pages), page_starts=starts)
    chunks = chunker.chunk(extracted)
    assert chunks[0].page_start == 1
    assert chunks[-1].page_end == 4
    for chunk in chunks:
        assert chunk.page_start is not None and chunk.page_end is not None
        first = next(n for n in range(4) if f"Sentence number {n * 30} " in pages[n]) + 1
        assert 1 <= first <= 4
        for page_number, page in enumerate(pages, start=1):
            if chunk.text[:40] in page:
                assert chunk.page_start == page_number


def test_empty_text_has_no_chunks(chunker: Chunker) -> None:
    assert chunker.chunk(Extracted("text/plain", "")) == []


@pytest.mark.parametrize(("size", "overlap"), [(4, 0), (256, 300)])
def test_impossible_sizes_are_refused(embedder: Embedder, size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        Chunker(embedder, max_tokens=size, overlap=overlap)


def test_chunks_carry_the_title_and_heading_path_within_the_models_limit(
    chunker: Chunker, embedder: Embedder
) -> None:
    title = "Glacier Retreat in the Northern Alps"
    text = f"{title}\n\n" + "\n\n".join(_sentences(9, i * 9) for i in range(8))
    chunks = chunker.chunk(Extracted("text/plain", text), title=title)
    assert len(chunks) > 2
    assert chunks[0].context is None  # its text begins with the title already
    assert all(c.context == title for c in chunks[1:])
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text  # offsets unchanged
        embedded = chunk.embedded_text
        assert embedded.endswith(chunk.text) and (chunk.context or "") in embedded
        assert len(embedder.token_offsets(embedded)) <= chunker.budget
    assert chunks[1].text_hash != chunker.chunk(Extracted("text/plain", text))[1].text_hash

    sections = [Section(0, "Field Report > Findings"), Section(1, "Inventory, rows 2-40")]
    table = "a | b\n" * 3
    extracted = Extracted(
        "text/plain", "Findings text.\n\n" + table, sections=sections, title="Survey 2026"
    )
    first, *rest = chunker.chunk(extracted)
    assert first.context == "Survey 2026\nField Report > Findings"
    assert rest[0].context == "Survey 2026\nInventory"  # rows are where, not what


def test_a_long_title_is_cut_to_the_context_budget(chunker: Chunker, embedder: Embedder) -> None:
    title = " ".join(f"word{i}" for i in range(200))
    (chunk,) = chunker.chunk(Extracted("text/plain", "Short body text."), title=title)
    assert chunk.context is not None and title.startswith(chunk.context)
    assert len(embedder.token_offsets(chunk.context)) <= CONTEXT_TOKENS


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "Rev. Paul T. Stallsworth leads it. He spoke.",
            ["Rev. Paul T. Stallsworth leads it.", "He spoke."],
        ),
        (
            "Reconstructions by Jones et al. 1998 agreed. So did others!",
            ["Reconstructions by Jones et al. 1998 agreed.", "So did others!"],
        ),
        ("Strains of Y. pestis differ. Why?", ["Strains of Y. pestis differ.", "Why?"]),
        ("Lefevre (c. 1455) taught, e.g. in Paris.", ["Lefevre (c. 1455) taught, e.g. in Paris."]),
        (
            "See Fig. 2 and No. 5. The answer was no. We left.",
            ["See Fig. 2 and No. 5.", "The answer was no.", "We left."],
        ),
        (
            "It was built in the U.S. The plans came later.",
            ["It was built in the U.S.", "The plans came later."],
        ),
        ('He said "go." (Then he went.) Done.', ['He said "go."', "(Then he went.)", "Done."]),
        ("他来了。我走了。", ["他来了。", "我走了。"]),
        (
            "Alas ! said he, the ship is lost. It sank on Sep. 15 at dawn. Why? None knew.",
            [
                "Alas ! said he, the ship is lost.",
                "It sank on Sep. 15 at dawn.",
                "Why?",
                "None knew.",
            ],
        ),
    ],
)
def test_sentences_end_at_full_stops_that_are_not_part_of_a_word(
    text: str, sentences: list[str]
) -> None:
    """Initials, abbreviations and a stop before a lower-case word do not end a sentence; a
    stop after an ordinary word (or "no.", or "U.S." before a capital) does, and closing
    quotes and brackets stay with their sentence."""
    assert [text[start:end] for start, end in sentence_spans(text)] == sentences


def test_a_sentence_wraps_across_lines_after_a_table_earlier_in_the_text() -> None:
    text = (
        "Name | Depth\nNorth quay | 12 m\n\nThe quay opened in 1851. Its depth is kept at twelve"
        "\nmetres by dredging every spring."
    )
    sentences = [text[a:b] for a, b in sentence_spans(text)]
    assert "Its depth is kept at twelve\nmetres by dredging every spring." in sentences
