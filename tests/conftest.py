"""Shared fixtures: the real embedding model (loaded once per session), data folders and the
shared datasets, which tests skip on, with a message, where they are absent."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexes import Catalog
from ingest import Chunker, Embedder
from ragsvc.factory import make_embedder
from ragsvc.settings import Settings

# One ONNX export of the model for the whole session, shared by every data folder and by the
# server processes the tests start (they inherit the environment).
os.environ.setdefault(
    "RAGSVC_MODEL_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"ragsvc-test-models-{os.getuid()}")
)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return make_embedder(Settings())


@pytest.fixture(scope="session")
def chunker(embedder: Embedder) -> Chunker:
    return Chunker(embedder, overlap=32)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def catalog(data_dir: Path, embedder: Embedder) -> Iterator[Catalog]:
    opened = Catalog.open(data_dir, model_id=embedder.model_id, dimension=embedder.dimension)
    yield opened
    opened.close()
