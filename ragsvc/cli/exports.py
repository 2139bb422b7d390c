"""`ragsvc export` (a portable collection; fine-tuning and evaluation data from rated
answers) and `ragsvc log` (the interaction log)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from indexes import Catalog
from indexes.catalog import DATABASE_NAME
from ragsvc.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    CommandError,
    human_bytes,
    parse_date,
    print_listing,
    progress,
    table,
)
from ragsvc.factory import open_catalog
from ragsvc.settings import Settings


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.evaluation.feedback_set import export_eval
    from ragsvc.interactions import finetune
    from ragsvc.interactions.log import FeedbackUnavailable

    if args.export_command == "validate":
        if not args.file.is_file():
            raise CommandError(f"no such file: {args.file}")
        valid, defects = finetune.validate_file(args.file, args.max_tokens)
        for line, reason in defects:
            print(f"line {line}: {reason}")
        print(f"{valid} valid record(s), {len(defects)} defect(s) in {args.file}")
        return EXIT_FAILURES if defects else EXIT_OK
    if not settings.data_path.joinpath(DATABASE_NAME).exists():
        raise CommandError(f"no store in {settings.data_path}")
    try:
        with open_catalog(settings, readonly=True) as catalog:
            if args.export_command == "collection":
                return _export_collection(settings, catalog, args)
            if args.export_command == "eval":
                summary = export_eval(catalog, settings.data_path, args.out, since=args.since)
                print(
                    f"{summary['queries']} question(s) ({summary['test']} test, "
                    f"{summary['train']} train) over {summary['documents']} document(s) "
                    f"written to {args.out}; {summary['dropped']} rated answer(s) left out "
                    "(repeated questions, or cited documents deleted since)"
                )
                if not summary["queries"]:
                    print("no answer is rated up yet: nothing to evaluate", file=sys.stderr)
                    return EXIT_FAILURES
                print(f"run: ragsvc eval retrieval --beir {args.out}")
                return EXIT_OK
            report = finetune.export_finetune(
                catalog,
                settings.data_path,
                args.out,
                min_rating=args.min_rating,
                since=args.since,
                max_tokens=args.max_tokens,
            )
    except FeedbackUnavailable as error:
        raise CommandError(str(error)) from None
    summary = report.as_dict()
    written = summary["written"]
    print(
        f"{sum(written.values())} record(s) written to {args.out}: "
        + ", ".join(f"{n} {name}" for name, n in written.items())
    )
    if summary["dropped_by_reason"]:
        print(
            "dropped: " + ", ".join(f"{n} {why}" for why, n in summary["dropped_by_reason"].items())
        )
    print(f"report: {args.out / 'report.json'}")
    return EXIT_OK


def _export_collection(settings: Settings, catalog: Catalog, args: argparse.Namespace) -> int:
    from ragsvc.archive.collection import export_collection

    bar = progress(args, 0, "doc")
    try:
        report = export_collection(
            catalog,
            args.name,
            args.out,
            chunk_max_tokens=settings.chunk_max_tokens,
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            on_document=lambda done, total: _advance(bar, done, total),
        )
    finally:
        bar.close()
    print(
        f"exported collection {report.collection}: {report.documents} documents, "
        f"{report.chunks} chunks with their {catalog.model_id} embeddings, to {report.path} "
        f"({human_bytes(report.archive_bytes)}); the store keeps no original files, so the "
        "archive holds the chunks"
    )
    return EXIT_OK


def _advance(bar: Any, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.interactions.log import tail

    if args.n < 1:
        raise CommandError("-n must be at least 1")
    if settings.interaction_log == "off":
        raise CommandError("the interaction log is off (setting interaction_log)")
    records = tail(settings.data_path, settings.interaction_log, args.n)
    if print_listing(records, args.json, "no queries logged yet"):
        return EXIT_OK
    rows = [
        [
            r.at[:19],
            r.request_id[:8],
            f"{r.backend or ''}{'/' + r.model if r.model else ''}",
            "" if r.confidence is None else f"{r.confidence:.2f}",
            f"{r.total_ms or 0:.0f}",
            "error: " + r.error if r.error else ("cached " if r.cached else "") + r.question[:60],
        ]
        for r in records
    ]
    print(table(["at", "request", "backend", "conf", "ms", "question"], rows))
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    export = commands.add_parser(
        "export", help="a collection, or fine-tuning and evaluation data from rated answers"
    )
    export_commands = export.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    finetune = export_commands.add_parser(
        "finetune",
        help="chat-format JSONL from rated answers, split into train, validation and test",
        description="Write the answers rated up (or corrected) as chat records: the retrieved "
        "passages, the question, and the answer or its correction; PII redacted, duplicates "
        "and near duplicates dropped, every record validated, split by question.",
    )
    finetune.add_argument("--out", type=Path, required=True, metavar="DIR")
    finetune.add_argument(
        "--min-rating",
        choices=["up", "any"],
        default="up",
        help="up: answers rated up or corrected (default); any: every rated answer",
    )
    finetune.add_argument("--since", type=parse_date, help="only questions asked on or after DATE")
    finetune.add_argument("--max-tokens", type=int, default=4096, help="per record (default 4096)")
    check = export_commands.add_parser(
        "validate", help="check a chat-format JSONL file, reporting each defect with its line"
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--max-tokens", type=int, default=4096, help="per record (default 4096)")
    portable = export_commands.add_parser(
        "collection",
        help="one collection's documents, chunks and embeddings, for `ragsvc import`",
        description="Write the collection's documents, their chunks (text, pages, offsets, "
        "locations, metadata), the chunks' embeddings with the model id, and the settings they "
        "were made with, as one archive with checksums.",
    )
    portable.add_argument("name", metavar="NAME", help="the collection")
    portable.add_argument("--out", type=Path, required=True, metavar="FILE")
    portable.add_argument("--no-progress", action="store_true", help="no progress bar")
    eval_set = export_commands.add_parser(
        "eval",
        help="the questions rated up as a BEIR-style set for `ragsvc eval retrieval`",
    )
    eval_set.add_argument("--out", type=Path, required=True, metavar="DIR")
    eval_set.add_argument("--since", type=parse_date, help="only questions asked on or after DATE")
    log = commands.add_parser("log", help="the interaction log of /query")
    log_commands = log.add_subparsers(dest="log_command", required=True, metavar="LOG_COMMAND")
    tail = log_commands.add_parser("tail", help="the last queries, oldest first")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    export.set_defaults(handler=cmd_export)
    log.set_defaults(handler=cmd_log)
