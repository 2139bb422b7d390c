"""`ragsvc eval retrieval`, `eval tune` and `eval answers`: quality measured on labelled data,
each in a data folder of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from indexes import Catalog
from indexes.fusion import MODES
from ingest import (
    Embedder,
)
from ingest.sources import count_lines
from ragsvc.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    CommandError,
    compact_json,
    progress,
    read_json,
    table,
)
from ragsvc.factory import make_query_embedder, open_catalog
from ragsvc.retrieval.reranker import load_reranker
from ragsvc.settings import Settings


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
        with progress(args, count_lines(corpus), "doc") as bar:
            added, unchanged = evaluation.ingest_corpus(
                catalog, settings, corpus, on_document=lambda outcome: bar.update(1)
            )
        print(f"{added} added, {unchanged} already there; {len(queries)} queries", file=sys.stderr)
        yield _BeirRun(catalog, query_embedder, queries, qrels, eval_dir)


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
    print(table(["family", "setting", "nDCG@10", "recall@100", ""], rows))
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
    baseline = read_json(args.baseline) if args.baseline else None
    with _beir_run(settings, args) as run:
        catalog, query_embedder, queries, qrels, eval_dir = run
        modes = list(MODES) if args.mode == "all" else [args.mode]
        with progress(args, len(queries) * len(modes), "query") as bar:
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
    output.write_text(compact_json(report))
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
    print(table(["mode", *names], rows))
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
    output.write_text(compact_json(report))
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
    print(table(["metric", "value [95% interval]"], rows))
    print(f"\nreport: {output}")
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
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
    evaluate.set_defaults(handler=cmd_eval)
