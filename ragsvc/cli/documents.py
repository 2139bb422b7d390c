"""`ragsvc ingest`, `search`, `delete` and `sync`: documents in and out of a collection."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from indexes import SearchFilter, StoreMissing
from indexes.catalog import DATABASE_NAME
from indexes.fusion import MODES
from ingest import (
    DocumentOutcome,
    Embedder,
    IngestPipeline,
    InputNotFound,
    file_sources,
    jsonl_sources,
)
from ingest.ray_engine import RayIngestPipeline
from ingest.sources import FileSource, Source, count_lines
from ragsvc.api.json_limits import parse_metadata
from ragsvc.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    AuditedCommand,
    CommandError,
    lower_priority,
    make_pipeline,
    pages,
    progress,
    table,
)
from ragsvc.errors import BadRequest
from ragsvc.factory import make_embedder, make_query_embedder, open_catalog
from ragsvc.retrieval.reranker import load_reranker
from ragsvc.retrieval.retriever import rank_score, retrieve
from ragsvc.settings import Settings


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    collection = args.collection or settings.default_collection
    try:
        metadata = parse_metadata(args.metadata)
    except BadRequest as error:
        raise CommandError(str(error).replace("metadata", "--metadata", 1)) from None
    sources: Any
    if args.jsonl:
        for path in args.paths:
            if not path.is_file():
                raise InputNotFound(f"no such file: {path}")
        total = sum(count_lines(p) for p in args.paths)
        sources = (record for path in args.paths for record in jsonl_sources(path))
    else:
        sources = file_sources(args.paths, recursive=args.recursive)
        total = len(sources)
        if not sources:
            raise CommandError("no files to ingest in the given folders (try --recursive)")

    if args.ray_address is not None:
        settings = msgspec.structs.replace(settings, ray_address=args.ray_address)
    lower_priority(settings)
    embedder = make_embedder(settings)
    target = f"{total} {'records' if args.jsonl else 'files'} into collection {collection}"
    with (
        AuditedCommand(settings, "ingest", target) as audit,
        open_catalog(settings, embedder) as catalog,
    ):
        pipeline = make_pipeline(settings, catalog, embedder, args.engine)
        try:
            report = _run_with_progress(pipeline, sources, total, collection, metadata, args)
        finally:
            pipeline.close()
        if report.chunks_stored:
            catalog.refresh()  # load and catch up the indexes, so the snapshot saved covers it
        audit.outcome = _outcome(report)

    failures = report.failures
    rate = report.chunks_stored / report.seconds if report.seconds else 0.0
    print(
        f"{report.count('added')} added, {report.count('replaced')} replaced, "
        f"{report.count('unchanged')} unchanged, {len(failures)} failed; "
        f"{report.chunks_stored} chunks stored, {report.texts_embedded} texts embedded "
        f"in {report.seconds:.1f} s ({rate:.1f} chunks/s)"
    )
    noted = [o for o in report.outcomes if o.status != "failed" and o.reason]
    if noted:
        print(f"\n{len(noted)} document(s) stored with a note:", file=sys.stderr)
        print(
            table(["document", "note"], [[o.name, o.reason or ""] for o in noted]),
            file=sys.stderr,
        )
    if failures:
        print(f"\n{len(failures)} document(s) failed:", file=sys.stderr)
        print(
            table(["document", "reason"], [[f.name, f.reason or ""] for f in failures]),
            file=sys.stderr,
        )
        return EXIT_FAILURES
    return EXIT_OK


def _outcome(report: Any) -> str:
    """A run's counts, as the audit log keeps them."""
    counts = ", ".join(
        f"{report.count(status)} {status}" for status in ("added", "replaced", "unchanged")
    )
    return f"ok: {counts}, {len(report.failures)} failed"


def _run_with_progress(
    pipeline: IngestPipeline | RayIngestPipeline,
    sources: Sequence[Source] | Any,
    total: int,
    collection: str,
    metadata: dict[str, Any],
    args: argparse.Namespace,
) -> Any:
    started = time.perf_counter()
    chunks = 0
    with progress(args, total, "doc") as bar:

        def on_document(outcome: DocumentOutcome) -> None:
            nonlocal chunks
            chunks += outcome.chunks
            elapsed = time.perf_counter() - started
            bar.set_postfix(chunks=chunks, chunks_s=f"{chunks / elapsed:.1f}", refresh=False)
            bar.update(1)

        return pipeline.run(
            sources, collection=collection, metadata=metadata, on_document=on_document
        )


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.k <= 1000:
        raise CommandError("-k must be between 1 and 1000")
    if not args.query.strip():
        raise CommandError("the query is empty")
    if not settings.data_path.joinpath(DATABASE_NAME).exists():
        # Said before the query model is prepared (a first export takes seconds).
        raise StoreMissing(f"no store in {settings.data_path}; run `ragsvc ingest` first")
    embedder = make_query_embedder(settings)
    reranker = load_reranker(settings.reranker)
    with open_catalog(settings, embedder, readonly=True) as catalog:
        hits = retrieve(
            catalog,
            embedder,
            settings,
            args.query,
            k=args.k,
            mode=args.mode,
            filters=SearchFilter(collection=args.collection),
            reranker=reranker,
        ).hits
    if args.json:
        print(msgspec.json.encode(hits).decode())
        return EXIT_OK
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        where = pages(hit.page_start, hit.page_end)
        print(
            f"{rank:>2}. {rank_score(hit):.3f}  doc {hit.document_id} {hit.source_name}{where}  "
            f"chunk {hit.ordinal} [{hit.collection}]"
        )
        snippet = " ".join(hit.text.split())
        print(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
    return EXIT_OK


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    target = f"document {args.document_id}"
    with open_catalog(settings) as catalog, AuditedCommand(settings, "delete", target) as audit:
        if args.collection:
            catalog.require_collection(args.collection)
        document = catalog.document(args.document_id)
        catalog.delete_document(args.document_id, args.collection)
        catalog.refresh()  # the saved index snapshot follows
        audit.target = f"document {document.id} ({document.source_name}) in {document.collection}"
    print(f"deleted document {document.id} ({document.source_name}, {document.chunk_count} chunks)")
    return EXIT_OK


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc import sync

    folder: Path = args.folder
    if not folder.is_dir():
        raise InputNotFound(f"no such folder: {folder}")
    collection = args.collection or settings.default_collection
    embedder: Embedder | None = make_embedder(settings) if args.watch else None

    def once() -> int:
        target = f"folder {folder} into collection {collection}"
        with AuditedCommand(settings, "sync", target) as audit:
            report = sync_once()
            audit.outcome = f"ok: {report.summary()}"
        return _print_sync(report)

    def sync_once() -> Any:
        nonlocal embedder
        unreadable = sync.Unreadable(settings.data_path / sync.UNREADABLE_FILE)
        if embedder is None:
            # Plan without the model: a sync with nothing to embed never loads it.
            if settings.data_path.joinpath(DATABASE_NAME).exists():
                with open_catalog(settings) as catalog:
                    todo = sync.plan(catalog, folder, collection, unreadable)
                    if not todo.to_embed:
                        report = sync.apply(catalog, todo, lambda sources: iter(()), unreadable)
                        if todo.delete:
                            catalog.refresh()  # the saved index snapshot follows the deletions
                        return report
            lower_priority(settings)
            embedder = make_embedder(settings)
        with open_catalog(settings, embedder) as catalog:
            todo = sync.plan(catalog, folder, collection, unreadable)
            pipeline = make_pipeline(settings, catalog, embedder)

            def ingest(sources: list[FileSource]) -> Iterator[tuple[str, str, str | None]]:
                report = _run_with_progress(pipeline, sources, len(sources), collection, {}, args)
                for outcome in report.outcomes:
                    yield outcome.name, outcome.status, outcome.reason

            try:
                report = sync.apply(catalog, todo, ingest, unreadable)
            finally:
                pipeline.close()
            if not todo.nothing_to_do:
                catalog.refresh()
        return report

    status = once()
    if not args.watch:
        return status
    from watchfiles import watch

    print(f"watching {folder} (Ctrl-C stops)", flush=True)
    first = True
    try:
        # The first wake-up (a change, or a second's timeout) comes once the watcher is
        # observing: a sync then catches what changed between the last sync and that moment.
        for changes in watch(
            folder, debounce=300, step=50, rust_timeout=1000, yield_on_timeout=True
        ):
            if changes or first:
                status = once()
                first = False
    except KeyboardInterrupt:
        pass
    return status


def _print_sync(report: Any) -> int:
    """The changes, then the summary; the exit status counts new failures only (a file still
    unreadable with the bytes that failed before is reported, not failed again)."""
    for change, name, reason in report.changes:
        if change == "unreadable":
            print(f"still unreadable (unchanged since the last try): {name}, {reason}")
        elif change != "unchanged":
            print(f"{change:9} {name}{f' ({reason})' if reason else ''}")
    print(report.summary(), flush=True)
    return EXIT_FAILURES if report.count("failed") else EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    ingest = commands.add_parser(
        "ingest",
        help="add files, folders or a JSONL corpus",
        description="Extract, chunk, embed and store documents. The same bytes again are "
        "skipped; a file with a known name and new bytes replaces the old version.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--collection", help="collection to add to (default: default_collection)")
    ingest.add_argument("--recursive", "-r", action="store_true", help="descend into subfolders")
    ingest.add_argument(
        "--jsonl",
        action="store_true",
        help='PATHs are JSONL files of {"_id", "title", "text"} records, one document each',
    )
    ingest.add_argument("--metadata", help="JSON object stored with every document")
    ingest.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="extract, chunk and embed here or on Ray (default: setting ingest_engine)",
    )
    ingest.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster (HOST:PORT, ray://HOST:10001, auto); default: setting ray_address, "
        "or a local Ray started for the run",
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    search = commands.add_parser("search", help="top chunks for a query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of chunks (1-1000, default 5)")
    search.add_argument("--collection")
    search.add_argument("--mode", choices=MODES, help="default: the retrieval_mode setting")
    search.add_argument("--json", action="store_true", help="print JSON")
    delete = commands.add_parser("delete", help="delete a document, its chunks and vectors")
    delete.add_argument("document_id", type=int, metavar="DOC_ID")
    delete.add_argument("--collection", help="refuse unless the document is in this collection")
    sync = commands.add_parser(
        "sync",
        help="make a collection hold exactly a folder's files",
        description="Add new files, replace changed ones and delete documents whose files are "
        "gone; each change is reported. Only documents named under the folder's name are "
        "touched. With --watch, keep syncing as the folder changes (Ctrl-C stops).",
    )
    sync.add_argument("folder", type=Path, metavar="DIR")
    sync.add_argument("--collection", help="collection (default: setting default_collection)")
    sync.add_argument("--watch", action="store_true", help="follow changes as they happen")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(handler=cmd_ingest)
    search.set_defaults(handler=cmd_search)
    delete.set_defaults(handler=cmd_delete)
    sync.set_defaults(handler=cmd_sync)
