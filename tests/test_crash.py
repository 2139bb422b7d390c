"""A process killed with SIGKILL mid-ingest leaves every document complete or absent."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexes import Catalog
from indexes.catalog import DATABASE_NAME
from ingest import Chunker, Embedder, IngestPipeline, file_sources
from ingest.extract import extract
from tests.support.data import ROOT, write_corpus

DOCUMENTS = 240
CHUNK_TOKENS = 64
OVERLAP = 16


def _stored_documents(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_mid_ingest_leaves_no_half_document(
    tmp_path: Path, embedder: Embedder, seed: int
) -> None:
    rng = random.Random(seed)
    folder = tmp_path / "docs"
    write_corpus(folder, DOCUMENTS, seed=seed)
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "RAGSVC_CHUNK_MAX_TOKENS": str(CHUNK_TOKENS),
        "RAGSVC_CHUNK_OVERLAP_TOKENS": str(OVERLAP),
        "RAGSVC_INGEST_POOL_CHUNKS": "24",
        "RAGSVC_INDEX_SAVE_INTERVAL": "0.3",
    }
    log = tmp_path / "ingest.log"
    with open(log, "wb") as stderr:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragsvc",
                "--data-dir",
                str(data_dir),
                "ingest",
                str(folder),
                "--no-progress",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 180
        while _stored_documents(data_dir / DATABASE_NAME) == 0:
            assert child.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "ingest never committed a document"
            time.sleep(0.05)
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "ingest finished before it could be killed"

    chunker = Chunker(embedder, max_tokens=CHUNK_TOKENS, overlap=OVERLAP)
    with Catalog.open(
        data_dir, model_id=embedder.model_id, dimension=embedder.dimension
    ) as catalog:
        documents = catalog.store.documents(limit=10_000)
        assert 0 < len(documents) < DOCUMENTS, f"killed after {delay:.2f} s"
        for document in documents:
            stored = catalog.store.document_chunks(document.id)
            assert document.status == "ready"
            assert [c.ordinal for c in stored] == list(range(document.chunk_count))
            source = folder / Path(document.source_name).name
            expected = chunker.chunk(extract(source.read_bytes(), source.name))
            assert [c.text for c in stored] == [c.text for c in expected]
        stats = catalog.stats()
        assert stats.vectors_in_memory == stats.chunks
        hits = catalog.search(embedder.embed_query("how do bees find flowers"), k=5)
        assert len(hits) == 5 and "bees" in hits[0].text.lower()

        # Ingesting again completes the corpus without re-adding what survived.
        report = IngestPipeline(catalog, embedder, chunker, pool_chunks=64).run(
            file_sources([folder]), collection="default"
        )
        assert report.count("unchanged") == len(documents)
        assert report.count("added") == DOCUMENTS - len(documents)
        assert catalog.stats().vectors_in_memory == catalog.stats().chunks
