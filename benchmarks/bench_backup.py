"""Backup and restore of a store: `ragsvc backup` while the server serves, the archive against
the data directory, `ragsvc restore`, and the restored directory's first open.

    python benchmarks/bench_backup.py CORPUS_DIR [--search-interval 0.1]

CORPUS_DIR is a BEIR folder (SciFact). Builds a fresh store from its corpus, serves it, takes
a backup over the CLI while searches run every `--search-interval` seconds, then restores it
into a fresh directory and opens it as `ragsvc serve` would. Prints one table.
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
from indexes import Catalog, snapshot  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402


def ragsvc(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "ragsvc", *args], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"ragsvc {' '.join(args)} failed: {result.stderr}")
    return time.perf_counter() - started, result.stdout.strip()


def size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else (path.stat().st_size)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--search-interval", type=float, default=0.1)
    args = parser.parse_args()
    queries = beir_queries(args.corpus_dir)
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as folder:
        work = Path(folder)
        store, archive, restored = work / "store", work / "store.tgz", work / "restored"
        figures = build(store, args.corpus_dir / "corpus.jsonl", Settings())
        server = Server(store, work / "server.log").start()
        try:
            data_bytes = size(store) - size(store / "models")  # the query export: derived
            with Searcher(server.url, queries, args.search_interval) as searcher:
                backup_seconds, backup_out = ragsvc(
                    "--data-dir", str(store), "backup", "--out", str(archive), "--quiet"
                )
        finally:
            server.stop()
        verify_seconds, _ = ragsvc("verify", str(archive))
        restore_seconds, restore_out = ragsvc("restore", str(archive), "--data-dir", str(restored))
        built = snapshot.read_manifest(restored / "index")
        started = time.perf_counter()
        with Catalog.open(restored) as catalog:
            catalog.reader  # noqa: B018 (what `ragsvc serve` loads before it answers)
            chunks, vectors = catalog.stats().chunks, len(catalog.reader.state.dense)
        open_seconds = time.perf_counter() - started
        opened = snapshot.read_manifest(restored / "index")
        reused = built is not None and opened is not None and built.build_id == opened.build_id
        archive_bytes = size(archive)
    print(f"store: {figures['documents']:.0f} documents, {figures['chunks']:.0f} chunks\n")
    mb = 1024 * 1024
    table(
        ["step", "seconds", "figure"],
        [
            ["backup (server serving)", f"{backup_seconds:.1f}", backup_out],
            [
                "archive / data directory",
                "",
                f"{archive_bytes / mb:.1f} MB / {data_bytes / mb:.1f} MB "
                f"({archive_bytes / data_bytes:.2f})",
            ],
            ["verify", f"{verify_seconds:.1f}", "every member against its checksum"],
            ["restore", f"{restore_seconds:.1f}", restore_out],
            [
                "first open of the restored store",
                f"{open_seconds:.2f}",
                f"{chunks} chunks, {vectors} vectors; snapshot reused: {reused}",
            ],
        ],
    )
    table(SEARCH_HEADERS, [searcher.row("searches during the backup", backup_seconds)])


if __name__ == "__main__":
    main()
