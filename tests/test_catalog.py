"""The catalog on a real SQLite file, a real FAISS index and the BM25 index: writes, search,
following the change log, snapshots and recovery."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexes import (
    Catalog,
    CollectionNotFound,
    DocumentNotFound,
    ModelMismatch,
    SchemaTooNew,
    StoreMissing,
    recovery,
)
from indexes.catalog import DATABASE_NAME
from indexes.lexical import Analyzer
from indexes.recovery import LexicalSettings
from indexes.schema import SCHEMA_VERSION
from indexes.vectors import FaissIndex, VectorParams
from ingest import Chunker, Embedder, IngestPipeline, file_sources
from tests.support.data import write_corpus


def _ingest(
    catalog: Catalog,
    embedder: Embedder,
    chunker: Chunker,
    folder: Path,
    collection: str = "default",
) -> None:
    report = IngestPipeline(catalog, embedder, chunker, pool_chunks=16).run(
        file_sources([folder]), collection=collection
    )
    assert not report.failures
    catalog.refresh()  # as `ragsvc ingest` does: the indexes follow, the snapshot is saved


def _open(data_dir: Path, embedder: Embedder, **options: object) -> Catalog:
    return Catalog.open(
        data_dir, model_id=embedder.model_id, dimension=embedder.dimension, **options
    )  # type: ignore[arg-type]


def test_faiss_ids_are_chunk_ids(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 5)
    _ingest(catalog, embedder, chunker, tmp_path / "docs")
    chunk_ids = catalog.store.chunk_ids()
    assert sorted(catalog.reader.state.dense.ids().tolist()) == chunk_ids.tolist()
    hits = catalog.search(embedder.embed_query("volcano magma eruption"), k=3)
    assert len(hits) == 3
    assert "magma" in hits[0].text
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_collection_filter_returns_k_from_that_collection(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "a", 10, seed=1)
    write_corpus(tmp_path / "b", 10, seed=2)
    _ingest(catalog, embedder, chunker, tmp_path / "a", "alpha")
    _ingest(catalog, embedder, chunker, tmp_path / "b", "beta")
    query = embedder.embed_query("tides and the moon")
    hits = catalog.search(query, k=8, collection="beta")
    assert len(hits) == 8
    assert {h.collection for h in hits} == {"beta"}
    with pytest.raises(CollectionNotFound):
        catalog.require_collection("gamma")


def test_delete_removes_chunks_and_vectors(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 3)
    _ingest(catalog, embedder, chunker, tmp_path / "docs")
    document = catalog.store.documents()[0]
    catalog.delete_document(document.id)
    assert len(catalog.reader.state.dense) == catalog.store.chunk_count()
    assert all(
        h.document_id != document.id for h in catalog.search(embedder.embed_query("heart"), k=50)
    )
    with pytest.raises(DocumentNotFound):
        catalog.delete_document(document.id)
    with pytest.raises(CollectionNotFound):
        catalog.delete_document(catalog.store.documents()[0].id, collection="nope")


def test_stale_index_is_caught_up_from_stored_embeddings(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "first", 4, seed=1)
    write_corpus(tmp_path / "second", 4, seed=2)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "first")
    saved = tmp_path / "saved-index"
    shutil.copytree(data_dir / "index", saved)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "second")
        catalog.delete_document(catalog.store.documents()[0].id)
        expected = catalog.store.chunk_ids().tolist()
    # Put the old index back, as if the process died before saving the new one.
    shutil.rmtree(data_dir / "index")
    shutil.copytree(saved, data_dir / "index")
    with _open(data_dir, embedder, readonly=True) as catalog:
        assert catalog.stats().vectors_in_index_file != len(expected)
        assert sorted(catalog.reader.state.dense.ids().tolist()) == expected
        assert sorted(catalog.reader.state.lexical.ids().tolist()) == expected
    with _open(data_dir, embedder) as catalog:
        stats = catalog.stats()
        assert stats.vectors_in_index_file == stats.chunks == len(expected)
        assert stats.index_file_change_seq == stats.store_change_seq


def test_unreadable_index_is_rebuilt(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 3)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "docs")
        before = [h.chunk_id for h in catalog.search(embedder.embed_query("bees"), k=5)]
    for path in (data_dir / "index").glob("snapshot-*/vectors.faiss"):
        path.write_bytes(b"not a faiss index")
    with _open(data_dir, embedder) as catalog:
        assert [h.chunk_id for h in catalog.search(embedder.embed_query("bees"), k=5)] == before


def test_model_change_is_refused_with_the_fix(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 2)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "docs")
    with pytest.raises(ModelMismatch, match="ragsvc rebuild --reembed"):
        Catalog.open(data_dir, model_id="another/model", dimension=384)


def test_writers_beside_each_other_and_readers_follow_them(
    catalog: Catalog, data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "a", 4, seed=1)
    write_corpus(tmp_path / "b", 4, seed=2)
    catalog.reader  # noqa: B018 (loaded before the other writer commits)
    with _open(data_dir, embedder) as other, _open(data_dir, embedder, readonly=True) as reader:
        reader.reader  # noqa: B018
        _ingest(other, embedder, chunker, tmp_path / "a", "alpha")
        _ingest(catalog, embedder, chunker, tmp_path / "b", "beta")
        expected = catalog.store.chunk_ids().tolist()
        for follower in (catalog, other, reader):
            follower.refresh()
            assert sorted(follower.reader.state.dense.ids().tolist()) == expected
        hits = reader.retrieve(k=3, text="bees waggle dance", mode="lexical")
        assert hits and "waggle" in hits[0].text
        other.delete_document(other.store.documents()[0].id)
        reader.refresh()
        assert len(reader.reader.state.dense) == reader.store.chunk_count()


def test_missing_store_and_newer_schema(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(StoreMissing):
        _open(tmp_path / "nothing", embedder, readonly=True)
    with pytest.raises(StoreMissing):
        Catalog.open(tmp_path / "nothing")
    _open(tmp_path / "d", embedder).close()
    with sqlite3.connect(tmp_path / "d" / DATABASE_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade ragsvc"):
        _open(tmp_path / "d", embedder)


@pytest.mark.parametrize("index_type", ["hnsw", "ivf", "ivf_sq8"])
def test_approximate_indexes_rebuild_and_delete(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path, index_type: str
) -> None:
    write_corpus(tmp_path / "docs", 30)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "docs")
        query = embedder.embed_query("glaciers carve valleys")
        exact = [h.chunk_id for h in catalog.search(query, k=5)]
        catalog.rebuild(index_type)  # type: ignore[arg-type]
        assert catalog.index_type == index_type
        approximate = [h.chunk_id for h in catalog.search(query, k=5)]
        assert len(set(exact) & set(approximate)) >= 3
        deleted = catalog.store.documents()[0].id
        catalog.delete_document(deleted)
        assert len(catalog.reader.state.dense) == catalog.store.chunk_count()
        assert all(h.document_id != deleted for h in catalog.search(query, k=50))
    with _open(data_dir, embedder, index_type=index_type) as catalog:
        assert catalog.index_type == index_type
        assert len(catalog.reader.state.dense) == catalog.store.chunk_count()


def test_rebuild_flat_gives_the_same_top_10(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 40)
    queries = [
        "heart and blood",
        "volcano",
        "photosynthesis sugar",
        "compilers",
        "moon tides",
        "bees dance",
        "glaciers",
        "vaccines immune",
    ]
    vectors = np.stack([embedder.embed_query(q) for q in queries])
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "docs")
        before = [
            [(h.chunk_id, round(h.score, 5)) for h in catalog.search(v, k=10)] for v in vectors
        ]
        catalog.rebuild("flat")
        after = [
            [(h.chunk_id, round(h.score, 5)) for h in catalog.search(v, k=10)] for v in vectors
        ]
    assert after == before


def test_a_streamed_ivf_build_equals_one_trained_on_every_vector_held_at_once(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 150)
    # Two lists probed one at a time: what a search finds depends on the trained centroids,
    # and they are trained on a sample of 128 of the 150 vectors.
    params = VectorParams(ivf_nlist=2, ivf_nprobe=1)
    with _open(data_dir, embedder) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "docs")
        store = catalog.store
        lexical = LexicalSettings(Analyzer(), 1.2, 0.75)
        model, dimension = embedder.model_id, embedder.dimension
        streamed = recovery.build(store, model, dimension, "ivf", lexical, params, batch=7)
        with store.snapshot() as conn:
            everything = list(store.chunk_data(model, dimension, None, conn))
    ids = np.concatenate([d.ids for d in everything])
    vectors = np.concatenate([d.vectors for d in everything])
    assert len(ids) > 128 and streamed.dense.spec == "IVF2,Flat nprobe=1"
    at_once = FaissIndex.create("ivf", dimension, vectors, params)
    at_once.add(ids, vectors)
    queries = np.stack([embedder.embed_query(q) for q in ("glaciers", "heart", "compilers")])
    assert len(streamed.dense) == len(ids) == len(streamed.lexical)
    got_and_want = zip(streamed.dense.search(queries, 10), at_once.search(queries, 10), strict=True)
    for got, want in got_and_want:
        assert np.array_equal(got, want)


def test_auto_moves_to_ivf_when_the_store_outgrows_exact_search(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    params = VectorParams(auto_threshold=40, auto_compress_threshold=90)
    write_corpus(tmp_path / "small", 20)
    write_corpus(tmp_path / "more", 40, seed=3)
    write_corpus(tmp_path / "most", 40, seed=5)
    with _open(data_dir, embedder, index_type="auto", vector_params=params) as catalog:
        _ingest(catalog, embedder, chunker, tmp_path / "small")
        assert catalog.index_type == "flat" and len(catalog.reader.state.dense) < 40
        query = embedder.embed_query("glaciers carve valleys")
        _ingest(catalog, embedder, chunker, tmp_path / "more")
        assert len(catalog.reader.state.dense) >= 40
        assert catalog.index_type == "flat"  # the write did not wait for a rebuild
        catalog.maybe_save()  # what the server's follower thread does
        assert catalog.index_type == "ivf"  # rebuilt aside and swapped in
        assert catalog.reader.state.dense.supports_remove
        hits = catalog.search(query, k=5)
        assert len(hits) == 5
        deleted = catalog.store.documents()[0].id
        catalog.delete_document(deleted)
        assert catalog.index_type == "ivf"  # deleting in place: no rebuild back
        assert len(catalog.reader.state.dense) == catalog.store.chunk_count()
    with _open(data_dir, embedder, index_type="auto", vector_params=params) as catalog:
        assert catalog.index_type == "ivf"  # the snapshot says so
        _ingest(catalog, embedder, chunker, tmp_path / "most")
        assert len(catalog.reader.state.dense) >= 90
        catalog.maybe_save()
        assert catalog.index_type == "ivf_sq8"  # the vectors as 8-bit codes
        assert ",SQ8 " in catalog.reader.state.dense.spec
        assert [h.chunk_id for h in catalog.search(query, k=5)]
        catalog.delete_document(catalog.store.documents()[0].id)
        assert catalog.index_type == "ivf_sq8"  # above half the threshold: kept
