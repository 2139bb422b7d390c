"""One contract for every vector index, run against each kind on the same clustered vectors:
ids in, the same ids out, scores that are inner products, removal, filters that return k
whenever k match, and a round trip (through the serialized form, or reopening Milvus). The
kinds: FAISS flat, HNSW and IVF, and Milvus (milvus-lite, started by the test). Also: `auto`
by size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexes.vectors import FaissIndex, VectorIndex, VectorParams, resolve
from tests.support.milvus import MILVUS_MISSING

DIMENSION = 48
COUNT = 3000


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 30 centres, like embeddings of documents on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIMENSION))
    vectors = centres[rng.integers(0, 30, count)] + 0.35 * rng.standard_normal((count, DIMENSION))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


VECTORS = clustered(COUNT)
IDS = np.arange(COUNT, dtype=np.int64) * 7 + 11  # chunk ids are sparse, never 0-based rows
QUERIES = clustered(20, seed=1)

Make = Callable[[Path], Any]
KINDS: dict[str, Make] = {
    "flat": lambda folder: FaissIndex.create("flat", DIMENSION),
    "hnsw": lambda folder: FaissIndex.create("hnsw", DIMENSION),
    "ivf": lambda folder: FaissIndex.create("ivf", DIMENSION, VECTORS, VectorParams(ivf_nprobe=8)),
    "ivf_sq8": lambda folder: FaissIndex.create(
        "ivf_sq8", DIMENSION, VECTORS, VectorParams(ivf_nprobe=8)
    ),
}


def _milvus(folder: Path) -> Any:
    from indexes.vectors.milvus_index import MilvusIndex

    return MilvusIndex(str(folder / "vectors.db"), "chunks", DIMENSION)


KINDS["milvus"] = _milvus


@pytest.fixture(
    params=[
        *sorted(set(KINDS) - {"milvus"}),
        pytest.param(
            "milvus",
            marks=pytest.mark.skipif(
                MILVUS_MISSING is not None,
                reason=f"{MILVUS_MISSING} is not installed (it has no wheel for this platform)",
            ),
        ),
    ]
)
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    built = KINDS[request.param](tmp_path)
    built.add(IDS, VECTORS)
    yield built
    close = getattr(built, "close", None)
    if close is not None:
        close()


def exact(queries: np.ndarray, k: int, ids: np.ndarray = IDS) -> np.ndarray:
    rows = np.isin(IDS, ids)
    scores = queries @ VECTORS[rows].T
    return IDS[rows][np.argsort(-scores, axis=1)[:, :k]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def test_ids_and_scores(index: VectorIndex) -> None:
    assert len(index) == COUNT and index.dimension == DIMENSION
    assert np.array_equal(np.sort(index.ids()), IDS)
    scores, ids = index.search(QUERIES, 10)
    assert scores.shape == ids.shape == (len(QUERIES), 10)
    by_id = dict(zip(IDS.tolist(), VECTORS, strict=True))
    # 8-bit codes score a decoded vector: near the cosine, not equal to it.
    tolerance = 0.01 if index.index_type == "ivf_sq8" else 1e-4
    for query, row_scores, row_ids in zip(QUERIES, scores, ids, strict=True):
        assert list(row_scores) == sorted(row_scores, reverse=True)
        for score, chunk_id in zip(row_scores, row_ids, strict=True):
            assert score == pytest.approx(float(by_id[int(chunk_id)] @ query), abs=tolerance)
    assert recall(ids, exact(QUERIES, 10)) >= 0.9


def test_removed_ids_are_gone(index: VectorIndex) -> None:
    _, before = index.search(QUERIES, 5)
    removed = np.unique(before[:, :2])
    index.remove(removed)
    assert len(index) == COUNT - len(removed)
    assert not np.isin(index.ids(), removed).any()
    _, after = index.search(QUERIES, 10)
    assert not np.isin(after, removed).any()
    index.remove(removed)  # removing again changes nothing
    assert len(index) == COUNT - len(removed)


@pytest.mark.parametrize("share", [0.5, 0.02, 0.002])
def test_filters_return_k_whenever_k_match(index: VectorIndex, share: float) -> None:
    rng = np.random.default_rng(2)
    allowed = np.sort(rng.choice(IDS, max(1, int(COUNT * share)), replace=False))
    k = 10
    _, ids = index.search(QUERIES, k, allowed)
    for row in ids:
        found = row[row >= 0]
        assert len(found) == min(k, len(allowed)), row
        assert np.isin(found, allowed).all()
    assert recall(ids, exact(QUERIES, min(k, len(allowed)), allowed)) >= 0.9


def test_bitmap_filters_match_id_filters(index: VectorIndex) -> None:
    allowed = IDS[::37]
    bitmap = np.zeros(int(IDS.max()) // 8 + 1, dtype=np.uint8)
    np.bitwise_or.at(bitmap, allowed >> 3, (1 << (allowed & 7)).astype(np.uint8))
    by_ids = index.search(QUERIES, 5, allowed)[1]
    by_bits = index.search_bitmap(QUERIES, 5, bitmap)[1]  # type: ignore[attr-defined]
    assert np.array_equal(by_ids, by_bits)


def test_round_trip(index: VectorIndex, tmp_path: Path) -> None:
    if isinstance(index, FaissIndex):
        path = tmp_path / "vectors.faiss"
        path.write_bytes(index.serialize())
        loaded: Any = FaissIndex.load(path, index.index_type)
    else:  # Milvus keeps the vectors itself: open the same collection again
        from indexes.vectors.milvus_index import MilvusIndex

        loaded = MilvusIndex(index.uri, index.collection, DIMENSION, create=False)  # type: ignore[attr-defined]
    assert loaded.spec == index.spec and len(loaded) == len(index)
    assert np.array_equal(loaded.search(QUERIES, 10)[1], index.search(QUERIES, 10)[1])


def test_ivf_removes_in_place_and_hnsw_keeps_tombstones() -> None:
    ivf, hnsw = KINDS["ivf"](Path()), KINDS["hnsw"](Path())
    for built in (ivf, hnsw):
        built.add(IDS, VECTORS)
        built.remove(IDS[:10])
    assert ivf.supports_remove and len(ivf.tombstones) == 0
    assert not hnsw.supports_remove and len(hnsw.tombstones) == 10


def test_auto_is_exact_when_small_and_ivf_from_the_threshold() -> None:
    params = VectorParams(auto_threshold=1000, auto_compress_threshold=5000)
    assert resolve("auto", 999, params) == "flat"
    assert resolve("auto", 1000, params) == "ivf"
    assert resolve("auto", 4999, params) == "ivf"
    assert resolve("auto", 5000, params) == "ivf_sq8"
    assert VectorParams().auto_compress_threshold == 4_000_000
    assert resolve("hnsw", 10, params) == "hnsw"
