"""Property tests (hypothesis): chunking invariants on generated text with the real tokenizer,
and the store against any sequence of ingests, replacements and deletes: SQLite rows, the
vector index and the BM25 index always hold the same chunks, also after reopening."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline
from ingest.extract.base import Extracted
from ingest.sources import TextSource
from tests.support.hashing_embedder import HashingEmbedder

WORDS = st.sampled_from(
    [
        "the",
        "tide",
        "harbour",
        "ledger",
        "photosynthesis",
        "über",
        "naïve",
        "東京",
        "état",
        "co-operate",
        "3.14",
        "e-mail",
        "unbelievably",
        "antidisestablishmentarianism",
        "x",
        "y",
        "z",
    ]
)
SENTENCE = st.lists(WORDS, min_size=1, max_size=40).map(lambda w: " ".join(w) + ".")
SEPARATOR = st.sampled_from([" ", "\n", "\n\n", "  \n \n", "\t"])
TEXT = st.lists(st.tuples(SENTENCE, SEPARATOR), min_size=1, max_size=60).map(
    lambda parts: "".join(s + sep for s, sep in parts)
)
NOISE = st.text(min_size=1, max_size=3000)  # any unicode, control characters included


def _check_chunks(embedder: Embedder, chunker: Chunker, text: str) -> None:
    chunks = chunker.chunk(Extracted("text/plain", text))
    offsets = embedder.token_offsets(text)
    if not offsets:
        assert chunks == []
        return
    previous_start = previous_end = -1
    for number, chunk in enumerate(chunks):
        assert chunk.ordinal == number
        assert text[chunk.char_start : chunk.char_end] == chunk.text  # offsets match the text
        assert chunk.char_start >= previous_start and chunk.char_end > previous_end  # in order
        assert chunk.token_count <= chunker.budget  # never over the model's limit
        previous_start, previous_end = chunk.char_start, chunk.char_end
    for start, end in offsets:  # every token's characters are in some chunk
        assert any(c.char_start <= start and end <= c.char_end for c in chunks), (start, end)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_chunks_cover_prose_in_order_within_the_limit(embedder: Embedder, text: str) -> None:
    _check_chunks(embedder, Chunker(embedder, max_tokens=64, overlap=8), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=NOISE)
def test_chunks_cover_any_unicode_in_order_within_the_limit(embedder: Embedder, text: str) -> None:
    _check_chunks(embedder, Chunker(embedder, max_tokens=32, overlap=4), text)


NAMES = st.sampled_from([f"doc-{i}.txt" for i in range(6)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), NAMES, TEXT),
        st.tuples(st.just("delete"), NAMES, st.just("")),
    ),
    min_size=1,
    max_size=12,
)


def _agree(catalog: Catalog) -> int:
    rows = catalog.store.reader().execute("SELECT id FROM chunks ORDER BY id").fetchall()
    stored = {int(r[0]) for r in rows}
    state = catalog.reader.state
    assert len(state.dense) == len(stored) == len(state.lexical)
    assert set(state.lexical.ids().tolist()) == stored
    return len(stored)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_any_sequence_of_writes_leaves_store_and_indexes_in_agreement(
    tmp_path_factory: object, operations: list[tuple[str, str, str]]
) -> None:
    folder: Path = tmp_path_factory.mktemp("store")  # type: ignore[attr-defined]
    embedder = HashingEmbedder()
    catalog = Catalog.open(folder, model_id=embedder.model_id, dimension=embedder.dimension)
    try:
        pipeline = IngestPipeline(catalog, embedder, Chunker(embedder, overlap=4))  # type: ignore[arg-type]
        for action, name, text in operations:
            if action == "ingest":
                pipeline.run([TextSource(name, text)], collection="c")
            else:
                found = (
                    catalog.store.reader()
                    .execute("SELECT id FROM documents WHERE source_name = ?", (name,))
                    .fetchone()
                )
                if found is not None:
                    catalog.delete_document(int(found[0]))
            catalog.refresh()
            _agree(catalog)
        names = [r[0] for r in catalog.store.reader().execute("SELECT source_name FROM documents")]
        assert len(names) == len(set(names))  # a replaced file is one document
        count = _agree(catalog)
    finally:
        catalog.close()
    reopened = Catalog.open(folder, model_id=embedder.model_id, dimension=embedder.dimension)
    try:
        assert _agree(reopened) == count  # recovery from the saved snapshot and the log
    finally:
        reopened.close()
