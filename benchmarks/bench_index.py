"""Vector indexes at size: build time, memory, one-query latency and recall, per kind.

    python benchmarks/bench_index.py BEIR_DIR [--n 100000,1000000] [--dim 384]
        [--kinds flat,hnsw,ivf,auto,ivf-sq8,ivf-pq,ivf-pq-refine] [--nprobe 8,16,32,64]
        [--queries 300]

Vectors with the structure of real ones: the BEIR corpus (title and text) is embedded with the
default model in a child process (so this one never holds torch), and the collection of `n`
vectors is made of those embeddings, each mixed with another (weight 0.6 to 1) and perturbed
by Gaussian noise, then normalised: topics, near-duplicates and the space between them, not
uniform noise. Queries are the corpus's real test queries, embedded the same way. Truth is
exact inner-product search (FAISS flat) over the same vectors; recall@10 is the share of the
exact top 10 an index returns. Vectors are generated block by block from a seed, so the only
copy in memory is the one inside the index being measured. Each index is built in a process of
its own: `resident MB` is what that process holds once the index is built (the index, the
corpus embeddings, the queries and Python), `index MB` how much it grew while building.
Latency is one query at a time, after a warm-up, as the service searches. `auto` is what
`index_type = "auto"` builds at that size; `ivf-sq8`, `ivf-pq` and `ivf-pq-refine` are compressed
kinds (`COMPRESSED`) measured as candidates; `milvus` is a Milvus FLAT collection on milvus-lite
(its server runs in the measuring process; any child process it starts is counted in too).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import msgspec
import numpy as np

from indexes.vectors import FaissIndex, VectorParams, resolve
from indexes.vectors.faiss_index import ivf_lists, ivf_probes
from ragsvc.evaluation.ranking_metrics import percentile

BLOCK = 100_000
NOISE = 0.35

EMBED = r"""
import json, sys
import numpy as np
from ingest import EmbedderConfig, load_embedder
corpus, queries, qrels, out, limit = sys.argv[1:6]
embedder = load_embedder(EmbedderConfig(batch_size=32))
docs = [json.loads(line) for line in open(corpus, encoding="utf-8")][: int(limit) or None]
texts = [(d.get("title", "") + "\n" + d.get("text", "")).strip() for d in docs]
wanted = {line.split("\t")[0] for line in list(open(qrels, encoding="utf-8"))[1:]}
asked = [json.loads(line) for line in open(queries, encoding="utf-8")]
asked = [q["text"] for q in asked if q["_id"] in wanted]
np.save(out + "/base.npy", embedder.embed_documents(texts))
np.save(out + "/queries.npy", np.stack([embedder.embed_query(q) for q in asked]))
"""


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status("VmRSS")


def children_rss_mb() -> float:
    """Resident MB of this process's children (milvus-lite runs its server as one)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                continue
    return total


def peak_mb() -> float:
    """The most this process has held resident (with the corpus vectors and queries)."""
    return _status("VmHWM")


def blocks(base: np.ndarray, n: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of the collection, BLOCK at a time, the same for the same seed."""
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        rng = np.random.default_rng([seed, start])
        first = base[rng.integers(0, len(base), size)]
        second = base[rng.integers(0, len(base), size)]
        weight = rng.uniform(0.6, 1.0, (size, 1)).astype(np.float32)
        noise = rng.standard_normal((size, base.shape[1]), dtype=np.float32)
        vectors = weight * first + (1 - weight) * second
        vectors += NOISE / np.sqrt(base.shape[1]) * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield np.arange(start, start + size, dtype=np.int64), vectors.astype(np.float32)


def training_sample(base: np.ndarray, n: int, nlist: int) -> np.ndarray:
    size = min(n, nlist * 64)
    parts = [v for _, v in blocks(base, size, seed=99)]
    return np.concatenate(parts)


def timed_queries(index: Any, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    for query in queries[:20]:
        index.search(query[None, :], k)
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query[None, :], k)
        latencies.append(time.perf_counter() - started)
        found.append(ids[0])
    return latencies, np.stack(found)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [
        len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits))


def build(
    base: np.ndarray, n: int, kind: str, dim: int, params: VectorParams
) -> tuple[Any, float, float]:
    """The index of `kind` over the n vectors: (index, seconds, resident MB it added)."""
    gc.collect()
    before = rss_mb()
    began = time.perf_counter()
    if kind == "milvus":
        from indexes.vectors.milvus_index import MilvusIndex

        folder = tempfile.mkdtemp(prefix="bench-milvus-")
        milvus = MilvusIndex(f"{folder}/vectors.db", "bench", dim)
        before = rss_mb() + children_rss_mb()  # milvus-lite's server is a child process
        for ids, vectors in blocks(base, n, seed=1):
            milvus.add(ids, vectors)
        milvus.flush()
        return milvus, time.perf_counter() - began, rss_mb() + children_rss_mb() - before
    if kind in COMPRESSED:
        return compressed(base, n, kind, dim), time.perf_counter() - began, rss_mb() - before
    concrete = resolve(kind, n, params) if kind == "auto" else kind  # type: ignore[arg-type]
    training = training_sample(base, n, ivf_lists(n)) if concrete == "ivf" else None
    # nlist as the service derives it from all n vectors, though trained on a sample.
    sized = msgspec.structs.replace(params, ivf_nlist=params.ivf_nlist or ivf_lists(n))
    index = FaissIndex.create(concrete, dim, training, sized)  # type: ignore[arg-type]
    del training
    for ids, vectors in blocks(base, n, seed=1):
        index.add(ids, vectors)
    return index, time.perf_counter() - began, rss_mb() - before


COMPRESSED = {
    "ivf-sq8": "one byte per dimension (IVF, scalar quantizer)",
    "ivf-pq": "48 bytes a vector (IVF, product quantizer: 48 sub-vectors, 8 bits each)",
    "ivf-pq-refine": "ivf-pq, its best 4·k rescored from the float32 vectors (here in RAM)",
}
"""Compressed kinds the service does not build yet, measured as FAISS builds them, with the
service's nlist and nprobe: candidates for stores whose float vectors outgrow memory."""


class Compressed:
    """A FAISS IVF index over compressed codes, with the `FaissIndex` calls `measure` makes."""

    def __init__(self, index: Any, kind: str) -> None:
        self.index, self.index_type = index, kind
        self.ivf: Any = faiss.extract_index_ivf(index)
        self.nprobe = int(self.ivf.nprobe)

    @property
    def spec(self) -> str:
        codes = {"ivf-sq8": "SQ8", "ivf-pq": "PQ48", "ivf-pq-refine": "PQ48,RFlat"}[self.index_type]
        return f"IVF{self.ivf.nlist},{codes} nprobe={self.nprobe}"

    def tune(self, nprobe: int) -> None:
        self.ivf.nprobe = self.nprobe = nprobe

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(queries, k)
        return scores, ids


def compressed(base: np.ndarray, n: int, kind: str, dim: int) -> Compressed:
    nlist = ivf_lists(n)
    training = training_sample(base, n, nlist)
    quantizer = faiss.IndexFlatIP(dim)
    ivf: Any
    if kind == "ivf-sq8":
        sq8 = faiss.ScalarQuantizer.QT_8bit
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, sq8, faiss.METRIC_INNER_PRODUCT)
    else:
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = ivf_probes(nlist)
    index: Any = ivf
    if kind == "ivf-pq-refine":
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = 4
    index.train(training)
    for ids, vectors in blocks(base, n, seed=1):
        assert ids[0] == index.ntotal  # sequential ids: the refine index numbers them itself
        index.add(vectors)
    return Compressed(index, kind)


COLUMNS = ("kind", "spec", "build_s", "resident_mb", "index_mb", "p50_ms", "p99_ms", "recall@10")
HEADERS = ["kind", "spec", "build s", "resident MB", "index MB", "p50 ms", "p99 ms", "recall@10"]


def measure(folder: Path, n: int, kind: str, dim: int, sweep: list[int]) -> None:
    """One kind at one size, in this (child) process: a JSON line per setting measured."""
    base = np.load(folder / "base.npy")
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    params = VectorParams()
    index, seconds, memory = build(base, n, kind, dim, params)
    gc.collect()
    resident = rss_mb() + children_rss_mb()
    probes: list[int | None] = [None]
    if kind in ("ivf", *COMPRESSED) and index.index_type != "flat":
        probes = sorted({*sweep, index.nprobe})  # the sweep and the default
    for nprobe in probes:
        if nprobe is not None:
            index.tune(nprobe=nprobe)
        latencies, found = timed_queries(index, queries, 10)
        row = {
            "n": n,
            "kind": kind,
            "spec": index.spec,
            "build_s": round(seconds, 1),
            "resident_mb": round(resident),
            "index_mb": round(memory),
            "peak_mb": round(peak_mb()),
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "recall@10": round(recall_at(found, truth), 4),
        }
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "beir", type=Path, nargs="?", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/"
    )
    parser.add_argument("--n", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--kinds", default="flat,hnsw,ivf,auto")
    parser.add_argument("--nprobe", default="8,16,32,64", help="IVF probes to sweep")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--limit", type=int, default=0, help="embed only the first N documents")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sweep = [int(p) for p in args.nprobe.split(",")]
        measure(args.child, int(args.n), args.kinds, args.dim, sweep)
        return
    if args.beir is None:
        parser.error("a BEIR folder is needed")
    params = VectorParams()
    kinds = args.kinds.split(",")

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", EMBED, str(args.beir / "corpus.jsonl"),
             str(args.beir / "queries.jsonl"), str(args.beir / "qrels" / "test.tsv"), folder,
             str(args.limit)],
            check=True,
        )  # fmt: skip
        base = np.load(f"{folder}/base.npy")
        queries = np.load(f"{folder}/queries.npy")[: args.queries]
    assert base.shape[1] == args.dim, f"the model's vectors have {base.shape[1]} dimensions"
    print(
        f"{len(base)} corpus vectors and {len(queries)} queries embedded in "
        f"{time.perf_counter() - started:.0f} s; {platform.processor() or platform.machine()}, "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n"
    )
    results: list[dict[str, object]] = []
    for n in [int(x) for x in args.n.split(",")]:
        nlist = ivf_lists(n)
        exact, _, _ = build(base, n, "flat", args.dim, params)
        faiss.omp_set_num_threads(faiss.omp_get_max_threads())
        _, truth = exact.search(queries, 10)
        del exact
        gc.collect()
        rows: list[list[str]] = []
        with tempfile.TemporaryDirectory() as folder:
            np.save(f"{folder}/base.npy", base)
            np.save(f"{folder}/queries.npy", queries)
            np.save(f"{folder}/truth.npy", truth)
            for kind in kinds:
                # Each index in a process of its own: its resident memory is its own.
                child = subprocess.run(
                    [sys.executable, __file__, "--child", folder, "--n", str(n),
                     "--kinds", kind, "--dim", str(args.dim), "--nprobe", args.nprobe],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                for line in child.stdout.splitlines():
                    row = json.loads(line)
                    results.append(row)
                    rows.append([str(row[c]) for c in COLUMNS])
                    print("  ", line, flush=True)
        print(f"\nn = {n:,} vectors of {args.dim} dimensions (IVF nlist {nlist}, default nprobe "
              f"{ivf_probes(nlist)}; auto threshold {params.auto_threshold:,})")  # fmt: skip
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print("| " + " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
