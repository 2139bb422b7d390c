"""`ragsvc backup`, `ragsvc restore`, `ragsvc import` and `ragsvc verify`: the knowledge kept
in one archive and moved between installations (the archives are `ragsvc.archive`'s)."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import msgspec

from indexes import snapshot
from indexes.catalog import INDEX_DIRECTORY
from indexes.schema import DATABASE_NAME
from ragsvc.archive.backup import backup
from ragsvc.archive.collection import import_collection, read_collection_archive
from ragsvc.archive.format import verify
from ragsvc.archive.restore import restore
from ragsvc.cli.common import EXIT_OK, AuditedCommand, CommandError, human_bytes, progress
from ragsvc.factory import make_embedder, open_catalog
from ragsvc.settings import Settings


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    with AuditedCommand(settings, "backup", f"data directory, to {args.out}"):
        bar = progress(args, 0, "B")
        try:
            report = backup(
                settings.data_path,
                args.out,
                on_step=None if args.quiet else _say,
                on_bytes=lambda n: bar.update(n),
            )
        finally:
            bar.close()
    if args.json:
        print(msgspec.json.encode(report).decode())
        return EXIT_OK
    index = "with the index snapshot" if report.index_included else "no index (rebuilt on open)"
    print(
        f"backed up {report.documents} documents, {report.chunks} chunks (change-log position "
        f"{report.change_seq}, {index}) to {report.path}: {human_bytes(report.archive_bytes)} "
        f"for {human_bytes(report.data_bytes)} of databases and index, in {report.seconds:.1f} s"
    )
    return EXIT_OK


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    target = Path(args.restore_dir or settings.data_path).expanduser()
    bar = progress(args, args.archive.stat().st_size if args.archive.is_file() else 0, "B")
    try:
        report = restore(args.archive, target, force=args.force, on_bytes=lambda n: bar.update(n))
    finally:
        bar.close()
    restored = msgspec.structs.replace(settings, data_dir=str(target))
    before = snapshot.read_manifest(target / INDEX_DIRECTORY)
    with open_catalog(restored) as catalog:
        catalog.reader  # noqa: B018 (catch the snapshot up from the change log now)
        stats = catalog.stats()
    after = snapshot.read_manifest(target / INDEX_DIRECTORY)
    how = (
        "index snapshot restored"
        if before is not None and after is not None and before.build_id == after.build_id
        else "index built from stored embeddings"
    )
    with AuditedCommand(restored, "restore", f"data directory, from {args.archive}"):
        pass
    if args.json:
        print(msgspec.json.encode(report).decode())
        return EXIT_OK
    print(
        f"restored {report.documents} documents, {report.chunks} chunks (backup of "
        f"{report.created_at}, model {report.model_id}) into {target} in "
        f"{report.seconds:.1f} s; {how}, {stats.vectors_in_memory} vectors"
    )
    return EXIT_OK


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.pipeline import embed_texts

    bar = progress(args, args.archive.stat().st_size if args.archive.is_file() else 0, "B")
    try:
        if not args.archive.is_file():
            raise CommandError(f"no such archive: {args.archive}")
        manifest = read_collection_archive(args.archive, on_bytes=lambda n: bar.update(n))
    finally:
        bar.close()
    embedder = None
    if args.reembed or not (settings.data_path / DATABASE_NAME).exists():
        embedder = make_embedder(settings)
    name = args.collection or manifest.collection
    with (
        open_catalog(settings, embedder) as catalog,
        AuditedCommand(settings, "import", f"collection {name}, from {args.archive}") as audit,
    ):
        embed = None
        if args.reembed and embedder is not None:
            embed = functools.partial(embed_texts, embedder)
        report = import_collection(
            catalog, args.archive, manifest, collection=args.collection, embed=embed
        )
        audit.target = f"collection {report.collection}: {report.documents} documents"
    print(
        f"imported {report.documents} documents, {report.chunks} chunks into collection "
        f"{report.collection}; {report.texts_embedded} texts embedded with {report.model_id}"
    )
    return EXIT_OK


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    manifest = verify(args.archive)
    print(
        f"{args.archive}: a whole {manifest.kind} archive of {len(manifest.members)} members, "
        f"{manifest.documents} documents, {manifest.chunks} chunks, model {manifest.model_id}"
    )
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    take = commands.add_parser(
        "backup",
        help="back the data directory up into one archive, while the server runs",
        description="Copy every database with SQLite's backup API, the current index "
        "snapshot and a manifest of checksums into one archive, consistent while the server "
        "serves and the worker writes. Jobs still queued are included.",
    )
    take.add_argument("--out", type=Path, required=True, metavar="FILE")
    take.add_argument("--json", action="store_true", help="print the report as JSON")
    take.add_argument("--quiet", action="store_true", help="no step-by-step lines")
    take.add_argument("--no-progress", action="store_true", help="no progress bar")
    take.set_defaults(handler=cmd_backup)

    back = commands.add_parser(
        "restore",
        help="restore a backup archive into a data directory",
        description="Check every member of the archive against its checksum, then restore "
        "it into an empty data directory (or, with --force, over the data one holds). A "
        "damaged archive is refused naming the first bad member, and nothing is written.",
    )
    back.add_argument("archive", type=Path, metavar="FILE")
    back.add_argument(
        "--data-dir", dest="restore_dir", metavar="DIR", help="where to restore (default: data_dir)"
    )
    back.add_argument("--force", action="store_true", help="replace the data in a non-empty DIR")
    back.add_argument("--json", action="store_true", help="print the report as JSON")
    back.add_argument("--no-progress", action="store_true", help="no progress bar")
    back.set_defaults(handler=cmd_restore)

    load = commands.add_parser(
        "import",
        help="load a collection exported with `ragsvc export collection`",
        description="Check the archive, then store its documents and chunks. With the "
        "store's model, its embeddings are used and nothing is embedded; an archive of "
        "another model is refused unless --reembed.",
    )
    load.add_argument("archive", type=Path, metavar="FILE")
    load.add_argument("--collection", metavar="NEW", help="import under this name")
    load.add_argument(
        "--reembed", action="store_true", help="embed the chunks with this store's model"
    )
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(handler=cmd_import)

    check = commands.add_parser(
        "verify", help="check a backup or collection archive against its checksums"
    )
    check.add_argument("archive", type=Path, metavar="FILE")
    check.set_defaults(handler=cmd_verify)
