"""`vector_backend = "milvus"` through the catalog, on milvus-lite files the tests create: the
Milvus collection follows the store, filters are Milvus expressions, a killed writer's
collection is reconciled on open, a lost one is rebuilt from stored embeddings, and switching
backend either way gives the same results. Also through the real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from indexes import Catalog, SearchFilter
from indexes.vectors import FaissIndex, MilvusIndex, VectorParams
from ingest import Chunker, IngestPipeline
from ingest.sources import TextSource
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.milvus import MILVUS_MISSING

pytestmark = pytest.mark.skipif(
    MILVUS_MISSING is not None, reason=f"{MILVUS_MISSING} has no wheel for this platform"
)
MILVUS = VectorParams(backend="milvus")
TOPICS = {
    "volcano": "magma erupts from the volcano and lava flows down its slopes",
    "harbour": "ships moor in the harbour while the tide rises against the quay",
    "ledger": "the accountant balances the ledger and audits every invoice",
    "orchard": "apples ripen in the orchard and the harvest begins in autumn",
    "comet": "a comet's tail points away from the sun as it passes the planets",
}


def _open(folder: Path, params: VectorParams = MILVUS, save_interval: float = 30.0) -> Catalog:
    embedder = HashingEmbedder()
    return Catalog.open(
        folder,
        model_id=embedder.model_id,
        dimension=embedder.dimension,
        vector_params=params,
        save_interval=save_interval,
    )


def _ingest(catalog: Catalog, names: list[str], collection: str = "default") -> None:
    embedder = HashingEmbedder()
    pipeline = IngestPipeline(catalog, embedder, Chunker(embedder, overlap=4))  # type: ignore[arg-type]
    sources = [TextSource(f"{n}.txt", (TOPICS[n] + ". ") * 12) for n in names]
    report = pipeline.run(sources, collection=collection)
    assert not report.failures
    catalog.refresh()


def _agrees(catalog: Catalog) -> None:
    """The served vectors are exactly the store's chunks."""
    held = catalog.reader.state.dense.ids()
    assert held.tolist() == catalog.store.chunk_ids().tolist()


def _top(catalog: Catalog, text: str, collection: str | None = None) -> list[str]:
    vector = HashingEmbedder().embed_query(text)
    return [h.source_name for h in catalog.search(vector, k=3, collection=collection)]


def test_milvus_collection_follows_the_store_with_filters_inside_milvus(tmp_path: Path) -> None:
    with _open(tmp_path) as catalog:
        _ingest(catalog, ["volcano", "harbour", "ledger"])
        _ingest(catalog, ["orchard", "comet"], collection="other")
        dense = catalog.reader.state.dense
        assert isinstance(dense, MilvusIndex)
        assert (tmp_path / "milvus.db").exists()  # the default: milvus-lite in the data dir
        assert catalog.stats().index_spec.startswith("Milvus FLAT ragsvc_")
        _agrees(catalog)
        assert _top(catalog, "lava and magma")[0] == "volcano.txt"
        # A collection filter is a Milvus expression over the owner fields, not an id list.
        mask = catalog.reader._mask(
            catalog.reader.state,
            SearchFilter(collection="other"),
            catalog.store.collection_id("other"),
        )
        assert mask.expression.startswith("(collection in [")
        assert set(_top(catalog, "lava and magma", collection="other")) <= {
            "orchard.txt",
            "comet.txt",
        }
        ledger = next(d for d in catalog.store.documents() if d.source_name == "ledger.txt")
        catalog.delete_document(ledger.id)
        _agrees(catalog)
        assert "ledger.txt" not in _top(catalog, "the accountant audits the ledger")
    with _open(tmp_path) as reopened:  # from the snapshot, which names the collection
        _agrees(reopened)
        assert _top(reopened, "ships in the harbour")[0] == "harbour.txt"


@pytest.mark.slow
def test_a_killed_writer_leaves_milvus_to_be_reconciled_on_open(tmp_path: Path) -> None:
    """The process saves a snapshot, then adds and deletes without saving again and is killed:
    the collection holds changes the snapshot does not. Opening makes the two agree."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from pathlib import Path
        from tests.test_milvus_backend import _ingest, _open
        catalog = _open(Path({str(tmp_path)!r}), save_interval=3600)
        _ingest(catalog, ["volcano", "harbour", "ledger"])
        catalog.save()
        _ingest(catalog, ["orchard", "comet"])
        ledger = next(d for d in catalog.store.documents() if d.source_name == "ledger.txt")
        catalog.delete_document(ledger.id)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["vector_backend"] == "milvus"
    with _open(tmp_path) as catalog:
        _agrees(catalog)
        names = {d.source_name for d in catalog.store.documents()}
        assert names == {"volcano.txt", "harbour.txt", "orchard.txt", "comet.txt"}
        assert _top(catalog, "apples and the harvest")[0] == "orchard.txt"
        assert "ledger.txt" not in _top(catalog, "the accountant audits the ledger")


def test_a_lost_collection_is_rebuilt_from_stored_embeddings(tmp_path: Path) -> None:
    with _open(tmp_path) as catalog:
        _ingest(catalog, ["volcano", "harbour", "comet"])
        before = _top(catalog, "a comet near the sun")
        collection = catalog.reader.state.dense
        assert isinstance(collection, MilvusIndex)
        name = collection.collection
    lost = MilvusIndex(str(tmp_path / "milvus.db"), name, HashingEmbedder.dimension)
    lost.discard()  # as if the Milvus cluster lost it
    with _open(tmp_path) as catalog:
        _agrees(catalog)
        assert _top(catalog, "a comet near the sun") == before
        rebuilt = catalog.reader.state.dense
        assert isinstance(rebuilt, MilvusIndex) and rebuilt.collection != name


def test_switching_backend_builds_from_stored_embeddings_either_way(tmp_path: Path) -> None:
    with _open(tmp_path, VectorParams()) as catalog:
        _ingest(catalog, list(TOPICS))
        on_faiss = {t: _top(catalog, t) for t in TOPICS.values()}
        assert isinstance(catalog.reader.state.dense, FaissIndex)
    with _open(tmp_path) as catalog:  # to Milvus: built from the store, nothing re-embedded
        assert isinstance(catalog.reader.state.dense, MilvusIndex)
        _agrees(catalog)
        built = catalog.reader.state.build_id
    with _open(tmp_path) as catalog:  # the Milvus build replaced the FAISS snapshot: reopened
        assert catalog.reader.state.build_id == built
        assert json.loads((tmp_path / "index" / "manifest.json").read_text())["vector_backend"] == (
            "milvus"
        )
        assert {t: _top(catalog, t) for t in TOPICS.values()} == on_faiss
        name = catalog.reader.state.dense.collection  # type: ignore[union-attr]
        catalog.rebuild("flat")  # aside, swapped in, the replaced collection dropped
        assert catalog.reader.state.dense.collection != name  # type: ignore[union-attr]
        from pymilvus import MilvusClient

        client = MilvusClient(str(tmp_path / "milvus.db"))
        assert name not in client.list_collections()
        client.close()
    with _open(tmp_path, VectorParams()) as catalog:  # and back
        assert isinstance(catalog.reader.state.dense, FaissIndex)
        assert {t: _top(catalog, t) for t in TOPICS.values()} == on_faiss


@pytest.mark.slow
def test_ingest_and_search_on_milvus_print_no_alarms_on_success(tmp_path: Path) -> None:
    from tests.support.processes import run_ragsvc

    note = tmp_path / "note.txt"
    note.write_text("The lighthouse keeper logs the weather every morning.")
    data = str(tmp_path / "data")
    milvus = {"RAGSVC_VECTOR_BACKEND": "milvus"}
    ingest = run_ragsvc("--data-dir", data, "ingest", str(note), "--no-progress", env=milvus)
    assert ingest.returncode == 0, ingest.stderr
    assert "ERROR" not in ingest.stderr and "Traceback" not in ingest.stderr, ingest.stderr
    found = run_ragsvc("--data-dir", data, "search", "weather", env=milvus)
    assert found.returncode == 0 and "note.txt" in found.stdout, found.stderr
    assert "mvccTs" not in found.stderr and "ERROR" not in found.stderr, found.stderr
