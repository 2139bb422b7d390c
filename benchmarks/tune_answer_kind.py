"""How much a sentence holding the kind of thing asked should rank higher (`KIND_WEIGHT`),
chosen on one half of a SQuAD-format set's paragraphs and reported on the other.

    python benchmarks/tune_answer_kind.py ../shared/datasets/xquad_en/xquad.en.json \
        [--weights 0,0.05,0.1,0.15,0.2] [--eval-dir /tmp/eval-kind]

Every paragraph is indexed (a fresh store in `--eval-dir`), every question is retrieved once
as `/query` retrieves it, and answered with each weight. Questions of paragraphs with an even
index in their article choose; those with an odd index report. Printed: the share of answers
holding a gold answer, and of cited passages holding one, per weight and half, over all
questions and over those whose kind `answer_kind` recognises.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402
from ragsvc.answering import extractive  # noqa: E402
from ragsvc.answering.sentences import answer_kind  # noqa: E402
from ragsvc.evaluation import answers as evaluation  # noqa: E402
from ragsvc.factory import make_query_embedder, open_catalog  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--weights", default="0,0.05,0.1,0.15,0.2")
    parser.add_argument("--eval-dir", type=Path, default=Path("/tmp/eval-kind"))
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    shutil.rmtree(args.eval_dir, ignore_errors=True)
    settings = msgspec.structs.replace(Settings(), data_dir=str(args.eval_dir))
    articles = evaluation.load_squad(args.squad)
    embedder = make_query_embedder(settings)
    backend = extractive.ExtractiveBackend(
        embedder,
        min_confidence=settings.answer_min_confidence,
        sentence_vectors=settings.answer_sentence_vectors,
        rerank=settings.answer_rerank_sentences,
    )
    counts: dict[tuple[float, str, str], list[int]] = {}
    with open_catalog(settings, embedder) as catalog:
        evaluation.ingest_articles(catalog, settings, articles)
        for article in articles:
            for question in article.questions:
                passages = evaluation.question_passages(
                    catalog, embedder, settings, question.text, args.k
                )
                half = "choose" if question.paragraph % 2 == 0 else "report"
                kinds = ["all"] + (["kind"] if answer_kind(question.text) else [])
                for weight in weights:
                    extractive.KIND_WEIGHT = weight
                    answer = backend.answer(question.text, passages)
                    right = answer.answerable and evaluation.contains_gold(
                        answer.text, question.answers
                    )
                    cited = any(
                        evaluation.contains_gold(p.text, question.answers)
                        for p in passages
                        if p.number in answer.citations
                    )
                    for kind in kinds:
                        tally = counts.setdefault((weight, half, kind), [0, 0, 0])
                        tally[0] += 1
                        tally[1] += right
                        tally[2] += cited
    rows = []
    for weight in weights:
        row = [f"{weight:g}"]
        for half in ("choose", "report"):
            for kind in ("all", "kind"):
                n, right, cited = counts.get((weight, half, kind), [0, 0, 0])
                row.append(f"{right / max(n, 1):.4f} / {cited / max(n, 1):.4f} ({n})")
        rows.append(row)
    table(
        ["weight", "choose: all", "choose: kind asked", "report: all", "report: kind asked"],
        rows,
    )
    print("cells: answer holds gold / cited passage holds gold (questions)")


if __name__ == "__main__":
    main()
