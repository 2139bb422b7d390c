"""`ragsvc rebuild` and `ragsvc stats`: the vector index rebuilt from the store, and what the
data folder holds."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import msgspec

from indexes.vectors import INDEX_CHOICES
from ingest import (
    reembed,
)
from ragsvc.cli.common import (
    EXIT_OK,
    AuditedCommand,
    human_bytes,
    lower_priority,
    table,
)
from ragsvc.factory import make_embedder, open_catalog
from ragsvc.settings import Settings


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    lower_priority(settings)
    if args.reembed:
        embedder = make_embedder(settings)
        with (
            open_catalog(settings, embedder, allow_model_change=True) as catalog,
            AuditedCommand(settings, "rebuild", f"index, re-embedded with {embedder.model_id}"),
        ):
            count = reembed(
                catalog,
                embedder,
                index_type=args.index_type,
                on_batch=lambda done, total: print(
                    f"embedded {done}/{total} texts", file=sys.stderr
                ),
            )
            stats = catalog.stats()
        print(f"re-embedded {count} texts with {embedder.model_id}")
    else:
        with (
            open_catalog(settings) as catalog,
            AuditedCommand(settings, "rebuild", f"index ({args.index_type or 'as set'})"),
        ):
            catalog.rebuild(args.index_type)
            stats = catalog.stats()
    print(
        f"rebuilt {stats.index_spec} index with {stats.vectors_in_memory} vectors "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return EXIT_OK


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    with open_catalog(settings, readonly=True) as catalog:
        stats = catalog.stats()
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(stats)).decode())
        return EXIT_OK
    in_sync = (
        stats.vectors_in_index_file == stats.chunks
        and stats.index_file_change_seq == stats.store_change_seq
    )
    rows = [
        ["data dir", stats.data_dir],
        ["model", f"{stats.model_id} (dimension {stats.dimension})"],
        ["index", f"{stats.index_type} ({stats.index_spec})"],
        ["documents", str(stats.documents)],
        ["chunks (SQLite)", str(stats.chunks)],
        ["vectors (index file)", str(stats.vectors_in_index_file)],
        ["index file in sync", "yes" if in_sync else "no (caught up on next open)"],
        ["disk", human_bytes(stats.disk_bytes)],
    ]
    print(table(["", ""], rows, header=False))
    if stats.collections:
        print()
        print(
            table(
                ["collection", "documents", "chunks"],
                [[c.name, str(c.documents), str(c.chunks)] for c in stats.collections],
            )
        )
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild the vector index from the store",
        description="Build a new index from stored embeddings beside the old one and swap it "
        "in atomically. --reembed first embeds every chunk with the configured model.",
    )
    rebuild.add_argument("--index-type", choices=INDEX_CHOICES)
    rebuild.add_argument("--reembed", action="store_true", help="re-embed with embedding_model")

    stats = commands.add_parser("stats", help="documents, chunks, vectors, index and model")
    stats.add_argument("--json", action="store_true", help="print JSON")
    rebuild.set_defaults(handler=cmd_rebuild)
    stats.set_defaults(handler=cmd_stats)
