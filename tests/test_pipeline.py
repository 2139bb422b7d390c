"""The ingestion pipeline: dedup, replacement, the embedding cache and per-document failures."""

from __future__ import annotations

import json
from pathlib import Path

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline, file_sources, jsonl_sources
from tests.support.data import write_corpus
from tests.support.recording_embedder import RecordingEmbedder


def _pipeline(catalog: Catalog, embedder: Embedder, chunker: Chunker) -> IngestPipeline:
    return IngestPipeline(catalog, embedder, chunker, pool_chunks=8)


def test_second_ingest_adds_nothing_and_embeds_nothing(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 12)
    recording = RecordingEmbedder(embedder)
    first = _pipeline(catalog, recording, chunker).run(
        file_sources([tmp_path / "docs"]), collection="c"
    )
    assert first.count("added") == 12
    assert len(recording.embedded) == first.texts_embedded > 0
    generation = catalog.store.generation()

    recording.embedded.clear()
    second = _pipeline(catalog, recording, chunker).run(
        file_sources([tmp_path / "docs"]), collection="c"
    )
    assert second.count("unchanged") == 12
    assert recording.embedded == []
    assert second.texts_embedded == 0
    assert catalog.store.generation() == generation


def test_identical_text_is_embedded_once(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    shared = "A paragraph that appears in two different documents about rivers and deltas."
    (folder / "one.txt").write_text(f"First document.\n\n{shared}")
    (folder / "two.txt").write_text(f"Second document, different opening.\n\n{shared}")
    (folder / "copy.txt").write_text(f"First document.\n\n{shared}")  # same bytes as one.txt
    recording = RecordingEmbedder(embedder)
    report = _pipeline(catalog, recording, Chunker(embedder, max_tokens=16, overlap=0)).run(
        file_sources([folder]), collection="c"
    )
    assert sorted(o.status for o in report.outcomes) == ["added", "added", "unchanged"]
    assert len(recording.embedded) == len(set(recording.embedded))


def test_same_name_new_bytes_replaces_the_old_version(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    target = folder / "notes.txt"
    target.write_text("Old version about sailing boats.")
    pipeline = _pipeline(catalog, embedder, chunker)
    pipeline.run(file_sources([folder]), collection="c")
    old = catalog.store.documents()[0]
    target.write_text("New version about mountain bikes.")
    report = pipeline.run(file_sources([folder]), collection="c")
    assert [o.status for o in report.outcomes] == ["replaced"]
    documents = catalog.store.documents()
    assert len(documents) == 1 and documents[0].id != old.id
    assert len(catalog.reader.state.dense) == catalog.store.chunk_count()
    hits = catalog.search(embedder.embed_query("sailing boats"), k=5)
    assert all("Old version" not in h.text for h in hits)
    # The same bytes in another collection are another document.
    pipeline.run(file_sources([folder]), collection="other")
    assert len(catalog.store.documents()) == 2


def test_bad_documents_do_not_stop_the_batch(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_corpus(folder, 3)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    report = _pipeline(catalog, embedder, chunker).run(file_sources([folder]), collection="c")
    assert report.count("added") == 3
    reasons = {o.name.split("/")[-1]: o.reason for o in report.failures}
    assert set(reasons) == {"empty.txt", "broken.pdf"}
    assert all(reasons.values())


def test_jsonl_records_keep_their_ids(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"_id": "d1", "title": "Rivers", "text": "Rivers carry sediment to the sea."}),
        "{not json",
        json.dumps({"_id": "d2", "title": "", "text": "Deserts receive little rain."}),
        json.dumps({"title": "no id", "text": "x"}),
    ]
    corpus.write_text("\n".join(lines) + "\n")
    report = _pipeline(catalog, embedder, chunker).run(jsonl_sources(corpus), collection="beir")
    assert report.count("added") == 2 and len(report.failures) == 2
    documents = {d.external_id: d for d in catalog.store.documents()}
    assert set(documents) == {"d1", "d2"}
    assert documents["d1"].metadata == {"title": "Rivers"}
    chunk = catalog.store.document_chunks(documents["d1"].id)[0]
    assert chunk.text.startswith("Rivers\n\nRivers carry")
