"""`ragsvc rebuild` and `ragsvc stats`: the vector index rebuilt from the store, and what the
data folder holds."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from indexes.vectors import INDEX_CHOICES
from ingest.reembed import count_missing, embed_missing, reembed
from ragsvc.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    AuditedCommand,
    CommandError,
    human_bytes,
    lower_priority,
    progress,
    table,
)
from ragsvc.evaluation.gate import gate
from ragsvc.factory import make_embedder, open_catalog, store_settings
from ragsvc.settings import Settings


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    lower_priority(settings)
    if args.reembed:
        return _reembed(settings, args, started)
    if args.embedding_model or args.gate:
        raise CommandError("--embedding-model and --gate go with --reembed")
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


def _reembed(settings: Settings, args: argparse.Namespace, started: float) -> int:
    """Re-embed beside the serving model, gate, switch (see `ingest.reembed`)."""
    serving = store_settings(settings).embedding_model
    name = args.embedding_model or settings.embedding_model
    if Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())  # the server may run elsewhere
    embedder = make_embedder(settings, model=name)
    with (
        open_catalog(settings) as catalog,
        AuditedCommand(settings, "rebuild", f"re-embed with {embedder.model_id}") as audit,
    ):
        if embedder.model_id == catalog.model_id:
            count = embed_missing(catalog, embedder)
            catalog.rebuild(args.index_type)
            print(f"the store already serves {embedder.model_id}: {count} texts embedded")
            return EXIT_OK
        print(f"re-embedding from {catalog.model_id} to {embedder.model_id}", file=sys.stderr)
        if args.gate is not None:
            try:
                result = gate(
                    settings,
                    serving,
                    name,
                    args.gate,
                    split=args.split,
                    tolerance=args.tolerance,
                    on_step=lambda text: print(text, file=sys.stderr, flush=True),
                )
            except ValueError as error:
                raise CommandError(str(error)) from None
            print(result.summary())
            if not result.passed:
                dropped = catalog.drop_embeddings(embedder.model_id)
                for failure in result.failures:
                    print(f"  worse: {failure}")
                print(
                    f"not switched: {result.new_model} is worse than {result.old_model} on the "
                    f"gate set; the store keeps serving {catalog.model_id} ({dropped} stored "
                    "embeddings of the new model dropped)"
                )
                audit.outcome = "refused by the gate: " + "; ".join(result.failures)
                return EXIT_FAILURES
        todo = count_missing(catalog, embedder.model_id)
        print(
            f"{todo} texts to embed with {embedder.model_id}; the server keeps answering with "
            f"{catalog.model_id} until the new index is complete",
            file=sys.stderr,
        )
        with progress(args, todo, "text") as bar:
            count = reembed(
                catalog,
                embedder,
                name,
                index_type=args.index_type,
                on_batch=bar.update,
                on_step=lambda text: bar.set_description(text),
            )
        stats = catalog.stats()
    print(
        f"re-embedded {count} texts with {embedder.model_id} and switched the store to it: "
        f"{stats.index_spec} index with {stats.vectors_in_memory} vectors in "
        f"{time.perf_counter() - started:.1f} s"
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
        "in atomically. --reembed embeds every chunk with another model (--embedding-model, "
        "default embedding_model) beside the serving one, builds its index aside and switches "
        "the store to it when complete; a running server follows. With --gate, both models "
        "are evaluated on a labelled set first and the switch happens only if the new one is "
        "not worse. An interrupted re-embed resumes where it stopped.",
    )
    rebuild.add_argument("--index-type", choices=INDEX_CHOICES)
    rebuild.add_argument(
        "--reembed",
        action="store_true",
        help="embed every chunk with another model beside the serving one, then switch",
    )
    rebuild.add_argument(
        "--embedding-model",
        metavar="MODEL",
        help="the model to re-embed with, a name or folder (default: embedding_model)",
    )
    rebuild.add_argument(
        "--gate",
        type=Path,
        metavar="BEIR_DIR",
        help="switch only if the new model is not worse on this labelled set",
    )
    rebuild.add_argument("--split", default="test", help="the gate's split (default test)")
    rebuild.add_argument(
        "--tolerance", type=float, default=0.01, help="the gate's tolerance (default 0.01)"
    )
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")

    stats = commands.add_parser("stats", help="documents, chunks, vectors, index and model")
    stats.add_argument("--json", action="store_true", help="print JSON")
    rebuild.set_defaults(handler=cmd_rebuild)
    stats.set_defaults(handler=cmd_stats)
