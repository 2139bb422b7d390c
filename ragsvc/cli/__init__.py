"""The `ragsvc` command line: ingest, search, rebuild, stats, delete, serve, eval, log, keys,
audit.

Exit codes: 0 success; 1 the command ran but some documents failed; 2 the request was refused
(bad arguments or settings, a missing path, an unknown collection or document, a busy or
mismatched store) and nothing was changed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from indexes import Catalog, IndexesError, SearchFilter, StoreMissing
from indexes.catalog import DATABASE_NAME
from indexes.fusion import MODES
from indexes.vectors import INDEX_CHOICES
from ingest import (
    DocumentOutcome,
    Embedder,
    EmbedderUnavailable,
    IngestPipeline,
    InputNotFound,
    file_sources,
    jsonl_sources,
    load_embedder,
    load_query_embedder,
    reembed,
)
from ingest.embed import show_export_progress
from ingest.ray_engine import RayIngestPipeline
from ingest.sources import FileSource, Source, count_lines
from ragsvc import factory as ingestion
from ragsvc.answering.prompts import TemplateError
from ragsvc.api.json_limits import parse_metadata
from ragsvc.errors import BadRequest
from ragsvc.factory import Engine
from ragsvc.retrieval.reranker import RerankerUnavailable, load_reranker
from ragsvc.retrieval.retriever import retrieve
from ragsvc.security.audit import AuditEntry, AuditLog
from ragsvc.security.keys import SCOPES, KeyStore
from ragsvc.settings import Settings, SettingsError, load_settings
from ragsvc.telemetry.logs import configure_logging

EXIT_OK, EXIT_FAILURES, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(Exception):
    """A refusal with a message for the user (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragsvc",
        description="Retrieval-augmented generation over your documents, on an embedded "
        "SQLite + FAISS index.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or $RAGSVC_CONFIG)")
    parser.add_argument("--data-dir", help="data folder (setting data_dir, default ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Serve the HTTP API (OpenAPI at /schema) under uvicorn.",
    )
    serve.add_argument("--host", help="bind address (setting host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (setting port, default 8000)")

    evaluate = commands.add_parser("eval", help="measure retrieval or answer quality")
    eval_commands = evaluate.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    retrieval = eval_commands.add_parser(
        "retrieval",
        help="nDCG, recall, MRR and latency on a BEIR dataset",
        description="Ingest (or reuse) a BEIR corpus in its own data folder, run the split's "
        "queries and report nDCG@k, recall@k, recall@100, MRR@k and latency per mode.",
    )
    retrieval.add_argument("--beir", type=Path, required=True, metavar="DIR")
    retrieval.add_argument("--split", default="test")
    retrieval.add_argument("--mode", choices=[*MODES, "all"], default="all")
    retrieval.add_argument("--k", type=int, default=10)
    retrieval.add_argument("--eval-dir", type=Path, help="default: ./eval-data/<DIR name>")
    retrieval.add_argument("--output", type=Path, help="JSON report (default: in --eval-dir)")
    retrieval.add_argument("--baseline", type=Path, help="fail when below this report")
    retrieval.add_argument("--tolerance", type=float, default=0.01)
    retrieval.add_argument("--no-progress", action="store_true", help="no progress bars")
    tune = eval_commands.add_parser(
        "tune",
        help="choose retrieval settings on a labelled split",
        description="Ingest (or reuse) a BEIR corpus in its own data folder and choose BM25, "
        "feedback, fusion and document-ranking settings on the split's labelled queries (a "
        "training split, or your own queries and qrels), one family at a time, on nDCG@10. "
        "Prints every candidate's figures and writes the chosen settings as TOML.",
    )
    tune.add_argument("--beir", type=Path, required=True, metavar="DIR")
    tune.add_argument("--split", default="train")
    tune.add_argument("--eval-dir", type=Path, help="default: ./eval-data/<DIR name>")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.add_argument(
        "--output", type=Path, help="TOML of the chosen settings (default: in --eval-dir)"
    )
    answers = eval_commands.add_parser(
        "answers",
        help="answer quality and confidence AUROC on SQuAD-format data",
        description="Index the paragraphs of most articles, leave some articles out (their "
        "questions become unanswerable), answer every question through /query's path.",
    )
    answers.add_argument("--squad", type=Path, required=True, metavar="FILE")
    answers.add_argument(
        "--holdout", type=float, default=0.2, help="share of articles (or paragraphs) left out"
    )
    answers.add_argument(
        "--holdout-level",
        choices=["article", "paragraph"],
        default="article",
        help="leave out whole articles, or only the paragraphs that answer (near misses stay)",
    )
    answers.add_argument("--k", type=int, default=5)
    answers.add_argument("--eval-dir", type=Path, help="default: ./eval-data/<FILE stem>")
    answers.add_argument("--output", type=Path, help="JSON report (default: in --eval-dir)")

    log = commands.add_parser("log", help="the interaction log of /query")
    log_commands = log.add_subparsers(dest="log_command", required=True, metavar="LOG_COMMAND")
    tail = log_commands.add_parser("tail", help="the last queries, oldest first")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")

    keys = commands.add_parser(
        "keys",
        help="API keys: create, list, revoke",
        description="Once a key exists, every route but /health needs one (Authorization: "
        "Bearer KEY or X-API-Key: KEY). Without keys the server serves loopback only.",
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = key_commands.add_parser("create", help="a new key, shown once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scope", choices=SCOPES, required=True, help="read < write < admin")
    create.add_argument(
        "--collection",
        action="append",
        dest="collections",
        metavar="C",
        help="limit the key to this collection (repeat for several; default: all)",
    )
    create.add_argument(
        "--rate", type=float, help="requests per second (default: setting key_rate_limit; 0: none)"
    )
    create.add_argument(
        "--upload-quota",
        type=int,
        metavar="BYTES",
        help="bytes uploaded per UTC day (default: setting key_upload_bytes_per_day; 0: none)",
    )
    key_list = key_commands.add_parser("list", help="keys, without their secrets")
    key_list.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = key_commands.add_parser("revoke", help="revoke a key (from its next request)")
    revoke.add_argument("key_id", metavar="KEY_ID")

    audit = commands.add_parser("audit", help="the audit log of writes and key changes")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="WHAT")
    audit_tail = audit_commands.add_parser("tail", help="the latest entries, oldest first")
    audit_tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    audit_tail.add_argument("--json", action="store_true", help="one JSON object per line")

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

    export = commands.add_parser(
        "export", help="fine-tuning and evaluation data from rated answers"
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
    finetune.add_argument("--since", type=_date, help="only questions asked on or after DATE")
    finetune.add_argument("--max-tokens", type=int, default=4096, help="per record (default 4096)")
    check = export_commands.add_parser(
        "validate", help="check a chat-format JSONL file, reporting each defect with its line"
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--max-tokens", type=int, default=4096, help="per record (default 4096)")
    eval_set = export_commands.add_parser(
        "eval",
        help="the questions rated up as a BEIR-style set for `ragsvc eval retrieval`",
    )
    eval_set.add_argument("--out", type=Path, required=True, metavar="DIR")
    eval_set.add_argument("--since", type=_date, help="only questions asked on or after DATE")

    delete = commands.add_parser("delete", help="delete a document, its chunks and vectors")
    delete.add_argument("document_id", type=int, metavar="DOC_ID")
    delete.add_argument("--collection", help="refuse unless the document is in this collection")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {
            "data_dir": args.data_dir,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }
        settings = load_settings(args.config, overrides=overrides)
        _configure_logging(settings)
        handler = {
            "ingest": cmd_ingest,
            "search": cmd_search,
            "rebuild": cmd_rebuild,
            "stats": cmd_stats,
            "delete": cmd_delete,
            "sync": cmd_sync,
            "serve": cmd_serve,
            "log": cmd_log,
            "eval": cmd_eval,
            "export": cmd_export,
            "keys": cmd_keys,
            "audit": cmd_audit,
        }[args.command]
        return handler(settings, args)
    except (
        CommandError,
        SettingsError,
        IndexesError,
        EmbedderUnavailable,
        InputNotFound,
        TemplateError,
        RerankerUnavailable,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "debug":
        # pypdf logs every repair it makes to a malformed file; failures are reported anyway.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
    show_export_progress(settings.log_level)


def make_embedder(settings: Settings) -> Embedder:
    """The document embedder of these settings (loaded once per process)."""
    return load_embedder(settings.embedder_config)


def make_query_embedder(settings: Settings) -> Embedder:
    """The query embedder of these settings: ONNX Runtime where it can be."""
    return load_query_embedder(settings.embedder_config)


def lower_priority(settings: Settings) -> None:
    """Beside a running server, heavy commands yield the CPU to its queries (setting
    `worker_nice`); alone, they run at full speed."""
    from ragsvc.jobs.worker import worker_is_running

    if settings.worker_nice and worker_is_running(settings.data_path):
        os.nice(settings.worker_nice)


def open_catalog(settings: Settings, embedder: Embedder | None = None, **options: Any) -> Catalog:
    return Catalog.open(
        settings.data_path,
        model_id=embedder.model_id if embedder else None,
        dimension=embedder.dimension if embedder else None,
        index_type=settings.index_type,
        save_interval=settings.index_save_interval,
        lexical_k1=settings.lexical_k1,
        lexical_b=settings.lexical_b,
        vector_params=settings.vector_params,
        **options,
    )


def make_pipeline(
    settings: Settings, catalog: Catalog, embedder: Embedder, engine: Engine | None = None
) -> IngestPipeline | RayIngestPipeline:
    try:
        return ingestion.make_pipeline(settings, catalog, embedder, engine=engine)
    except ValueError as error:
        raise CommandError(f"invalid chunk settings: {error}") from None


# -- commands ------------------------------------------------------------------------------


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    collection = args.collection or settings.default_collection
    try:
        metadata = parse_metadata(args.metadata)
    except BadRequest as error:
        raise CommandError(f"--metadata: {error}") from None
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
    with open_catalog(settings, embedder) as catalog:
        pipeline = make_pipeline(settings, catalog, embedder, args.engine)
        try:
            report = _run_with_progress(pipeline, sources, total, collection, metadata, args)
        finally:
            pipeline.close()
        if report.chunks_stored:
            catalog.refresh()  # load and catch up the indexes, so the snapshot saved covers it

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
            _table(["document", "note"], [[o.name, o.reason or ""] for o in noted]),
            file=sys.stderr,
        )
    if failures:
        print(f"\n{len(failures)} document(s) failed:", file=sys.stderr)
        print(
            _table(["document", "reason"], [[f.name, f.reason or ""] for f in failures]),
            file=sys.stderr,
        )
        return EXIT_FAILURES
    return EXIT_OK


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
    with _progress(args, total, "doc") as bar:

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
        pages = _pages(hit.page_start, hit.page_end)
        print(
            f"{rank:>2}. {hit.score:.3f}  doc {hit.document_id} {hit.source_name}{pages}  "
            f"chunk {hit.ordinal} [{hit.collection}]"
        )
        snippet = " ".join(hit.text.split())
        print(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
    return EXIT_OK


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    lower_priority(settings)
    if args.reembed:
        embedder = make_embedder(settings)
        with open_catalog(settings, embedder, allow_model_change=True) as catalog:
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
        with open_catalog(settings) as catalog:
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
        ["disk", _human_bytes(stats.disk_bytes)],
    ]
    print(_table(["", ""], rows, header=False))
    if stats.collections:
        print()
        print(
            _table(
                ["collection", "documents", "chunks"],
                [[c.name, str(c.documents), str(c.chunks)] for c in stats.collections],
            )
        )
    return EXIT_OK


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from ragsvc.answering.prompts import load_templates
    from ragsvc.api.app import create_app
    from ragsvc.api.auth import BindRefused, check_bind

    keys = KeyStore.open(settings.data_path)
    try:
        check_bind(settings.host, keys)
    except BindRefused as error:
        raise CommandError(str(error)) from None
    finally:
        keys.close()
    # Check templates and load the query model before binding, so a bad configuration fails
    # here. The server never loads the document model: its worker process does.
    configure_logging(settings.log_level, settings.log_format, process="server")
    load_templates(settings.templates_path)
    embedder = make_query_embedder(settings)
    app = create_app(settings, embedder=embedder, reranker=load_reranker(settings.reranker))
    print(f"serving on http://{settings.host}:{settings.port} (data in {settings.data_path})")
    # Again: loading the model's libraries may have changed the root logger's level.
    configure_logging(settings.log_level, settings.log_format, process="server")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through the service's handler
        access_log=False,  # the request middleware logs every request, with its id
        timeout_graceful_shutdown=10,
    )
    return EXIT_OK


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    if args.eval_command == "retrieval":
        return _eval_retrieval(settings, args)
    if args.eval_command == "tune":
        return _eval_tune(settings, args)
    return _eval_answers(settings, args)


class _BeirRun(NamedTuple):
    catalog: Catalog
    embedder: Embedder
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    eval_dir: Path


@contextmanager
def _beir_run(settings: Settings, args: argparse.Namespace) -> Iterator[_BeirRun]:
    """The split's queries and the corpus ingested (or found) in the evaluation's folder."""
    from ragsvc.evaluation import ranking as evaluation

    corpus = args.beir / "corpus.jsonl"
    if not corpus.is_file() or not (args.beir / "qrels" / f"{args.split}.tsv").is_file():
        raise CommandError(f"{args.beir} is not a BEIR folder with split {args.split!r}")
    eval_dir = args.eval_dir or Path("eval-data") / args.beir.resolve().name
    queries, qrels = evaluation.load_beir(args.beir, args.split)
    if not queries:
        raise CommandError(f"split {args.split!r} of {args.beir} has no judged queries")
    query_embedder = make_query_embedder(settings)
    eval_settings = msgspec.structs.replace(settings, data_dir=str(eval_dir))
    with open_catalog(eval_settings, query_embedder) as catalog:
        print(f"ingesting {corpus} into {eval_dir} (known documents are skipped)", file=sys.stderr)
        with _progress(args, count_lines(corpus), "doc") as bar:
            added, unchanged = evaluation.ingest_corpus(
                catalog, settings, corpus, on_document=lambda outcome: bar.update(1)
            )
        print(f"{added} added, {unchanged} already there; {len(queries)} queries", file=sys.stderr)
        yield _BeirRun(catalog, query_embedder, queries, qrels, eval_dir)


def _progress(args: argparse.Namespace, total: int, unit: str) -> Any:
    """A progress bar on standard error, shown only on a terminal and without
    `--no-progress`, as `ingest` shows one."""
    from tqdm import tqdm

    quiet = getattr(args, "no_progress", False) or not sys.stderr.isatty()
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True)


def _eval_tune(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.evaluation import ranking as evaluation
    from ragsvc.evaluation.tuning import Tuner, as_toml

    with _beir_run(settings, args) as run:
        catalog, query_embedder, queries, qrels, eval_dir = run
        tuner = Tuner(
            catalog,
            query_embedder,
            settings,
            queries,
            qrels,
            evaluation.COLLECTION,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
        chosen = tuner.tune()
    rows = [
        [t.family, t.setting, f"{t.ndcg:.4f}", f"{t.recall100:.4f}", "chosen" if t.chosen else ""]
        for t in tuner.trials
    ]
    print(_table(["family", "setting", "nDCG@10", "recall@100", ""], rows))
    output = args.output or eval_dir / f"tuned-{args.split}.toml"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(as_toml(chosen, f"{args.beir.resolve().name} {args.split}"))
    print(f"\nchosen on {len(queries)} {args.split} queries:")
    print(output.read_text().rstrip())
    print(f"\nwritten to {output}; use it as a config file (--config) or copy its lines")
    return EXIT_OK


def _eval_retrieval(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.evaluation import ranking as evaluation

    if args.k < 1:
        raise CommandError("--k must be at least 1")
    baseline = _read_json(args.baseline) if args.baseline else None
    with _beir_run(settings, args) as run:
        catalog, query_embedder, queries, qrels, eval_dir = run
        modes = list(MODES) if args.mode == "all" else [args.mode]
        with _progress(args, len(queries) * len(modes), "query") as bar:
            results = evaluation.evaluate(
                catalog,
                query_embedder,
                settings,
                queries,
                qrels,
                modes,
                args.k,
                load_reranker(settings.reranker),
                on_query=lambda: bar.update(1),
            )
        stats = catalog.stats()
    report = {
        "dataset": args.beir.resolve().name,
        "split": args.split,
        "queries": len(queries),
        "documents": stats.documents,
        "chunks": stats.chunks,
        "k": args.k,
        "model": query_embedder.model_id,
        "precision": settings.embedding_precision,
        "fusion": {
            "method": settings.fusion,
            "rrf_k": settings.fusion_rrf_k,
            "dense_weight": settings.fusion_dense_weight,
            "normalisation": settings.fusion_normalisation,
            "candidates": settings.fusion_candidates,
            "document_share": settings.eval_document_share,
        },
        "modes": results,
        "query_ids": list(queries),
    }
    output = args.output or eval_dir / f"retrieval-{args.split}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(_compact_json(report))
    names = [n for n, v in next(iter(results.values())).items() if isinstance(v, int | float)]
    rows = []
    for mode, metrics in results.items():
        cells = []
        for name in names:
            interval = metrics["interval95"].get(name)
            cells.append(
                f"{metrics[name]} [{interval[0]}, {interval[1]}]"
                if interval
                else str(metrics[name])
            )
        rows.append([mode, *cells])
    print(_table(["mode", *names], rows))
    print(f"\n[low, high]: 95% bootstrap intervals over the {len(queries)} queries")
    print(f"report: {output}")
    if baseline is not None:
        failures = evaluation.regressions(report, baseline, args.tolerance)
        if failures:
            print("\nregression against " + str(args.baseline) + ":", file=sys.stderr)
            for failure in failures:
                print(f"  {failure}", file=sys.stderr)
            return EXIT_FAILURES
        print(f"no regression against {args.baseline} (tolerance {args.tolerance})")
    return EXIT_OK


def _compact_json(report: Any) -> str:
    """JSON with one line per list of numbers (per-query values), indented elsewhere."""
    import re

    text = json.dumps(report, indent=2)
    return re.sub(r"\[[\d.,\s\-e\"a-z0-9_]*\]", lambda m: " ".join(m.group(0).split()), text) + "\n"


def _eval_answers(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.answering import build_backends
    from ragsvc.evaluation import answers as evaluation
    from ragsvc.retrieval.query_encoder import QueryEncoder

    if not args.squad.is_file():
        raise CommandError(f"no such file: {args.squad}")
    try:
        articles = evaluation.load_squad(args.squad)
        if args.holdout_level == "paragraph":
            indexed, left_out = evaluation.split_paragraphs(articles, args.holdout)
        else:
            indexed, left_out = evaluation.split_articles(articles, args.holdout)
    except (KeyError, ValueError, TypeError) as error:
        raise CommandError(f"{args.squad} is not SQuAD-format data: {error}") from None
    eval_dir = args.eval_dir or Path("eval-data") / args.squad.stem
    query_embedder = QueryEncoder(make_query_embedder(settings), cache_size=16)
    backend = build_backends(settings, query_embedder)[settings.answer_backend]
    eval_settings = msgspec.structs.replace(settings, data_dir=str(eval_dir))
    with open_catalog(eval_settings, query_embedder) as catalog:
        documents = evaluation.ingest_articles(catalog, settings, indexed)
        print(
            f"{documents} paragraphs of {len(indexed)} articles indexed; "
            f"{sum(len(a.questions) for a in left_out)} questions made unanswerable "
            f"({args.holdout_level} level)",
            file=sys.stderr,
        )
        results = evaluation.evaluate(
            catalog, query_embedder, settings, backend, indexed, left_out, args.k
        )
    query_embedder.close()
    report = {
        "dataset": args.squad.name,
        "backend": backend.name,
        "retrieval_mode": settings.retrieval_mode,
        "k": args.k,
        "holdout": args.holdout,
        "holdout_level": args.holdout_level,
        "left_out_articles": [a.title for a in left_out] if args.holdout_level == "article" else [],
        "min_confidence": settings.answer_min_confidence,
        **results,
    }
    output = args.output or eval_dir / "answers.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(_compact_json(report))
    intervals = results["interval95"]
    rows = [
        [
            name,
            f"{value} [{intervals[name][0]}, {intervals[name][1]}]"
            if name in intervals
            else str(value),
        ]
        for name, value in results.items()
        if name != "interval95"
    ]
    print(_table(["metric", "value [95% interval]"], rows))
    print(f"\nreport: {output}")
    return EXIT_OK


def _date(text: str) -> str:
    """A date or time as the interaction log writes them (UTC ISO 8601), for comparing."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (2026-12-31)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"no such file: {path}") from None
    except json.JSONDecodeError as error:
        raise CommandError(f"{path} is not valid JSON: {error}") from None


def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc.interactions.log import tail

    if args.n < 1:
        raise CommandError("-n must be at least 1")
    if settings.interaction_log == "off":
        raise CommandError("the interaction log is off (setting interaction_log)")
    records = tail(settings.data_path, settings.interaction_log, args.n)
    if args.json:
        for record in records:
            print(msgspec.json.encode(record).decode())
        return EXIT_OK
    if not records:
        print("no queries logged yet")
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
    print(_table(["at", "request", "backend", "conf", "ms", "question"], rows))
    return EXIT_OK


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    keys = KeyStore.open(settings.data_path)
    audit = AuditLog.open(settings.data_path)
    try:
        if args.keys_command == "create":
            try:
                secret = keys.create(
                    args.name,
                    args.scope,
                    args.collections,
                    rate_limit=args.rate,
                    upload_quota=args.upload_quota,
                )
            except ValueError as error:
                raise CommandError(str(error)) from None
            key_id = secret.split("_")[1]
            collections = ", ".join(args.collections or []) or "every collection"
            audit.record(
                AuditEntry("cli", "key.create", f"key {key_id} ({args.scope}, {collections})",
                           _cli_client(), "ok")
            )  # fmt: skip
            print(f"created {args.scope} key {key_id} for {args.name} ({collections}); shown once:")
            print(secret)
        elif args.keys_command == "list":
            listed = keys.list()
            if args.json:
                for key in listed:
                    print(msgspec.json.encode(key).decode())
            elif not listed:
                print("no keys: the server serves loopback only, to anyone on this machine")
            else:
                rows = [
                    [
                        key.id,
                        key.name,
                        key.scope,
                        ", ".join(key.collections) or "(all)",
                        time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_at)),
                        "revoked" if key.revoked_at is not None else "active",
                    ]
                    for key in listed
                ]
                print(_table(["id", "name", "scope", "collections", "created", "state"], rows))
        else:
            try:
                key = keys.revoke(args.key_id)
            except IndexesError as error:
                audit.record(
                    AuditEntry("cli", "key.revoke", f"key {args.key_id}", _cli_client(),
                               f"404: {error}")
                )  # fmt: skip
                raise
            audit.record(AuditEntry("cli", "key.revoke", f"key {key.id}", _cli_client(), "ok"))
            print(f"revoked key {key.id} ({key.name})")
    finally:
        keys.close()
        audit.close()
    return EXIT_OK


def _cli_client() -> str:
    """Where a command came from: the user and machine it ran as."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CommandError("-n must be at least 1")
    audit = AuditLog.open(settings.data_path)
    try:
        entries = audit.tail(args.n)
    finally:
        audit.close()
    if args.json:
        for entry in entries:
            print(msgspec.json.encode(entry).decode())
        return EXIT_OK
    if not entries:
        print("nothing audited yet")
        return EXIT_OK
    rows = [
        [e.at[:19], e.actor, e.action, e.target[:60], e.client, e.outcome[:60]] for e in entries
    ]
    print(_table(["at", "actor", "action", "target", "client", "outcome"], rows))
    return EXIT_OK


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    from ragsvc import sync

    folder: Path = args.folder
    if not folder.is_dir():
        raise InputNotFound(f"no such folder: {folder}")
    collection = args.collection or settings.default_collection
    embedder: Embedder | None = make_embedder(settings) if args.watch else None

    def once() -> int:
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
                        return _print_sync(report)
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
        return _print_sync(report)

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


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    with open_catalog(settings) as catalog:
        if args.collection:
            catalog.require_collection(args.collection)
        document = catalog.store.document(args.document_id)
        catalog.delete_document(args.document_id, args.collection)
        catalog.refresh()  # the saved index snapshot follows
    print(f"deleted document {document.id} ({document.source_name}, {document.chunk_count} chunks)")
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------


def _pages(start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    return f" p.{start}" if start == end else f" pp.{start}-{end}"


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def _table(headers: list[str], rows: list[list[str]], *, header: bool = True) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = []
    if header:
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
