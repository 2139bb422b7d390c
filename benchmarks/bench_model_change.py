"""A model change on a serving store: `ragsvc rebuild --reembed --gate` against a running
server, with searches at a steady pace throughout.

    python benchmarks/bench_model_change.py CORPUS_DIR [--weak-noise 0.5] [--noise 0]

CORPUS_DIR is a BEIR folder (SciFact); it is both the store's corpus and the gate's labelled
set (its `--split`). Builds a fresh store, serves it, and times four phases with searches
every `--search-interval` seconds: before; a re-embed with a deliberately weak model (the
packaged model's weights with Gaussian noise of `--weak-noise` standard deviations) that
the gate must refuse; a re-embed with a model that is not worse (`--noise`, default 0: the
same weights in another folder, so another model id), until the server serves it; after.
Prints one table; the search latencies during the rebuilds are the ones to hold against the
during-ingestion bound of `bench_serving.py` (p95 ≤ 150 ms), with zero errors.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402
from benchmarks.stores import (  # noqa: E402
    SEARCH_HEADERS,
    Searcher,
    Server,
    beir_queries,
    build,
    machine,
)
from ragsvc.settings import Settings  # noqa: E402
from tests.support.models import perturbed_model  # noqa: E402


def rebuild(store: Path, model: Path, gate: Path, split: str) -> tuple[int, str, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragsvc",
            "--data-dir",
            str(store),
            "rebuild",
            "--reembed",
            "--embedding-model",
            str(model),
            "--gate",
            str(gate),
            "--split",
            split,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stdout, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--noise", type=float, default=0.0, help="the new model's noise")
    parser.add_argument("--weak-noise", type=float, default=0.5, help="0: no refused run")
    parser.add_argument("--search-interval", type=float, default=0.1)
    parser.add_argument("--quiet-seconds", type=float, default=20.0)
    args = parser.parse_args()
    queries = beir_queries(args.corpus_dir)
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-model-change-") as folder:
        work = Path(folder)
        store = work / "store"
        figures = build(store, args.corpus_dir / "corpus.jsonl", Settings())
        weak = perturbed_model(work / "weak", args.weak_noise) if args.weak_noise else None
        new = perturbed_model(work / "new", args.noise)
        server = Server(store, work / "server.log").start()
        rows = []
        notes = []
        try:
            old_model = server.ready()["model"]
            with Searcher(server.url, queries, args.search_interval) as searcher:
                time.sleep(args.quiet_seconds)
            rows.append(searcher.row("before", args.quiet_seconds))
            if weak is not None:
                with Searcher(server.url, queries, args.search_interval) as searcher:
                    code, out, seconds = rebuild(store, weak, args.corpus_dir, args.split)
                rows.append(searcher.row(f"gate refusing a weak model (exit {code})", seconds))
                notes.append(out.strip())
                assert server.ready()["model"] == old_model, "the weak model was let in"
            with Searcher(server.url, queries, args.search_interval) as searcher:
                code, out, seconds = rebuild(store, new, args.corpus_dir, args.split)
                waited = time.perf_counter()
                while server.ready()["model"] != str(new):
                    time.sleep(0.2)
                followed = time.perf_counter() - waited
            rows.append(searcher.row(f"gate passing, re-embed, switch (exit {code})", seconds))
            notes.append(out.strip())
            notes.append(
                f"the server served the new model {followed:.1f} s after the rebuild ended"
            )
            with Searcher(server.url, queries, args.search_interval) as searcher:
                time.sleep(args.quiet_seconds)
            rows.append(searcher.row("after, on the new model", args.quiet_seconds))
        finally:
            server.stop()
    print(f"store: {figures['documents']:.0f} documents, {figures['chunks']:.0f} chunks\n")
    table(SEARCH_HEADERS, rows)
    for note in notes:
        print(note + "\n")


if __name__ == "__main__":
    main()
