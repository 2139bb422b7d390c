"""Shared fixtures: the real embedding model (loaded once per session), data folders and the
shared datasets, which tests skip on, with a message, where they are absent."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from indexes import Catalog
from ingest import Chunker, Embedder
from ragsvc.api.server_process import ServerProcess
from ragsvc.factory import make_embedder
from ragsvc.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
# One ONNX export of the model for the whole session, shared by every data folder and by the
# server processes the tests start (they inherit the environment).
os.environ.setdefault(
    "RAGSVC_MODEL_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"ragsvc-test-models-{os.getuid()}")
)


def dataset(*parts: str) -> Path:
    """A path under ../shared/datasets, or a skip that says what is missing."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found: {path} (clone with ../shared beside the project)")
    return path


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


class RecordingEmbedder:
    """An `Embedder` that delegates to the real model and keeps every text it embedded."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.special_tokens = inner.special_tokens
        self.embedded: list[str] = []

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._inner.token_offsets(text)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._inner.embed_query(text)


def run_ragsvc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `ragsvc` command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "ragsvc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def write_corpus(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """`count` small text documents with distinct, topical content."""
    topics = [
        "The heart pumps blood through arteries and veins to every organ.",
        "Volcanoes erupt when magma rises through cracks in the crust.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
        "Compilers translate source code into machine instructions.",
        "Tides follow the pull of the moon on the oceans.",
        "Bees communicate the location of flowers with a waggle dance.",
        "Glaciers carve valleys as they slowly slide downhill.",
        "Vaccines train the immune system to recognise a pathogen.",
    ]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        sentences = [topics[int(i)] for i in rng.integers(0, len(topics), size=12)]
        body = (
            f"Document {number}.\n\n" + " ".join(sentences[:6]) + "\n\n" + " ".join(sentences[6:])
        )
        path = folder / f"doc-{number:04d}.txt"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


class Server(ServerProcess):
    """A `ragsvc serve` child process on a free loopback port, logging at info level."""

    def __init__(self, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, log, {"RAGSVC_LOG_LEVEL": "info", **(env or {})}, cwd=ROOT)


def wait_jobs(
    client: httpx.Client, job_ids: list[str], timeout: float = 300
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [client.get(f"/jobs/{job_id}").json() for job_id in job_ids]
        if all(j["state"] in ("ready", "failed") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.25)
