"""Answers on PDFs against answers on the same clean text: a SQuAD-format set typeset into
PDFs that look like uploads, answered through `/query`'s path, side by side.

    python benchmarks/bench_pdf_answers.py ../shared/datasets/xquad_en/xquad.en.json \
        [--half report] [--eval-dir /tmp/eval-pdf-answers] [-k 5]

Paragraphs are split once, as `ragsvc eval answers --holdout-level paragraph` splits them:
one answering paragraph in five is left out, so its questions are unanswerable while the rest
of its article stays indexed. The kept paragraphs are indexed twice in one fresh store:

- `clean`: each paragraph a text document, titled with its article (as `eval answers` does);
- `pdf`: four articles to a PDF (`typeset.py`: running header and footer with page numbers,
  one or two justified and hyphenated columns or a ragged one, paragraphs broken across
  pages, a table), the last PDF scanned (pages as images only) and read by OCR.

Questions are split by paragraph, once, by a hash of the article's title and the paragraph's
index: one half, `choose`, is what any setting of the answerer is chosen on; the other,
`report`, is what is reported. Every question is retrieved in its collection and answered with
the abstention threshold at 0, so that each has a candidate answer and its confidence;
answers under `answer_min_confidence` count as abstentions, as `/query` gives them.

Figures (each for clean text and PDFs): the share of answerable questions whose retrieved
passages hold a gold answer, whose cited passages do, and whose answer text does; the AUROC of
confidence between answerable and unanswerable questions, and between right and wrong
candidate answers (an unanswerable question's candidate is wrong); the expected calibration
error of confidence as the chance the candidate is right (ten equal bins); and the mean
confidence of wrong and of right candidates. Per-question records go to
`EVAL_DIR/records.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402
from benchmarks.typeset import STYLES, scanned, typeset  # noqa: E402
from ingest import Chunker, IngestPipeline, load_embedder  # noqa: E402
from ingest.cleaning import readable  # noqa: E402
from ingest.extract.base import ExtractionLimits  # noqa: E402
from ingest.extract.pdf import PdfExtractor  # noqa: E402
from ingest.sources import BytesSource, TextSource  # noqa: E402
from ragsvc.answering.extractive import ExtractiveBackend  # noqa: E402
from ragsvc.evaluation import answers as evaluation  # noqa: E402
from ragsvc.evaluation.ranking_metrics import auroc  # noqa: E402
from ragsvc.factory import make_query_embedder, open_catalog  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

ARTICLES_PER_PDF = 4
BINS = 10


def pdf_volumes(articles: list[evaluation.Article]) -> dict[str, bytes]:
    """The kept paragraphs, four articles to a PDF; the last PDF scanned."""
    volumes: dict[str, bytes] = {}
    groups = [articles[i : i + ARTICLES_PER_PDF] for i in range(0, len(articles), ARTICLES_PER_PDF)]
    for number, group in enumerate(groups, start=1):
        content = [(a.title, [p for p in a.paragraphs if p]) for a in group]
        pdf = typeset(f"Volume {number}", content, STYLES[(number - 1) % len(STYLES)])
        if number == len(groups):
            pdf = scanned(pdf)
        volumes[f"volume-{number:02d}.pdf"] = pdf
    return volumes


def ingest(settings: Settings, catalog: Any, indexed: list[evaluation.Article]) -> None:
    embedder = load_embedder(settings.embedder_config)
    chunker = Chunker(
        embedder,
        max_tokens=settings.chunk_max_tokens or None,
        overlap=settings.chunk_overlap_tokens,
    )
    texts = [
        TextSource(f"{article.title} #{number}", paragraph, {"title": article.title})
        for article in indexed
        for number, paragraph in enumerate(article.paragraphs, start=1)
        if paragraph
    ]
    started = time.perf_counter()
    IngestPipeline(catalog, embedder, chunker).run(texts, collection="clean")
    print(
        f"clean: {len(texts)} paragraphs in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )
    started = time.perf_counter()
    volumes = pdf_volumes(indexed)
    reader = PdfExtractor(ExtractionLimits(ocr=True))
    report = IngestPipeline(
        catalog, embedder, chunker, extractor=lambda data, name: reader.extract(data)
    ).run([BytesSource(name, data) for name, data in volumes.items()], collection="pdf")
    if report.failures:
        raise SystemExit(f"PDFs failed: {report.failures}")
    print(
        f"pdf: {len(volumes)} PDFs typeset and read in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def answer_all(
    settings: Settings,
    catalog: Any,
    embedder: Any,
    indexed: list[evaluation.Article],
    left_out: list[evaluation.Article],
    k: int,
) -> list[dict[str, Any]]:
    backend = ExtractiveBackend(
        embedder,
        min_confidence=0.0,
        sentence_vectors=settings.answer_sentence_vectors,
        rerank=settings.answer_rerank_sentences,
    )
    records = []
    for collection in ("clean", "pdf"):
        for answerable, articles in ((True, indexed), (False, left_out)):
            for article in articles:
                for question in article.questions:
                    passages = evaluation.question_passages(
                        catalog, embedder, settings, question.text, k, collection
                    )
                    answer = backend.answer(question.text, passages)
                    evidence = backend.explain(question.text, passages)
                    # Passages are judged as they are shown: hyphenation and line ends undone.
                    shown = {p.number: readable(p.text) for p in passages}
                    cited = [shown[n] for n in answer.citations if n in shown]
                    gold = question.answers
                    records.append(
                        {
                            "collection": collection,
                            "id": question.id,
                            "half": half_of(question),
                            "answerable": answerable,
                            "confidence": answer.confidence,
                            "abstained": answer.confidence < settings.answer_min_confidence,
                            "right": answerable and evaluation.contains_gold(answer.text, gold),
                            "cited": answerable
                            and any(evaluation.contains_gold(text, gold) for text in cited),
                            "retrieved": answerable
                            and any(
                                evaluation.contains_gold(text, gold) for text in shown.values()
                            ),
                            "answer": answer.text,
                            "evidence": None if evidence is None else list(evidence),
                        }
                    )
        print(f"{collection}: answered", file=sys.stderr)
    return records


def half_of(question: evaluation.Question) -> str:
    """`choose` or `report`, the same for every question of one paragraph."""
    key = f"{question.article}#{question.paragraph}".encode()
    return "choose" if zlib.crc32(key) % 2 == 0 else "report"


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray) -> float:
    """The mean gap between confidence and the share right, over ten equal bins, weighted
    by the bins' sizes."""
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    error = 0.0
    for b in range(BINS):
        inside = bins == b
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(error)


def figures(records: list[dict[str, Any]]) -> dict[str, float]:
    answerable = [r for r in records if r["answerable"]]
    count = max(len(answerable), 1)
    confidence = np.array([r["confidence"] for r in records])
    right = np.array([r["right"] for r in records], dtype=bool)
    return {
        "answerable questions": len(answerable),
        "unanswerable questions": len(records) - len(answerable),
        "retrieved hold gold": sum(r["retrieved"] for r in answerable) / count,
        "cited hold gold": sum(r["cited"] and not r["abstained"] for r in answerable) / count,
        "answer holds gold": sum(r["right"] and not r["abstained"] for r in answerable) / count,
        "AUROC answerable vs not": auroc(
            [r["confidence"] for r in answerable],
            [r["confidence"] for r in records if not r["answerable"]],
        ),
        "AUROC right vs wrong": auroc(list(confidence[right]), list(confidence[~right])),
        "expected calibration error": expected_calibration_error(confidence, right),
        "mean confidence, wrong": float(confidence[~right].mean()) if (~right).any() else 0.0,
        "mean confidence, right": float(confidence[right].mean()) if right.any() else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--eval-dir", type=Path, default=Path("/tmp/eval-pdf-answers"))
    parser.add_argument("--half", choices=("choose", "report", "both"), default="report")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--holdout", type=float, default=0.2)
    args = parser.parse_args()
    shutil.rmtree(args.eval_dir, ignore_errors=True)
    settings = msgspec.structs.replace(Settings(), data_dir=str(args.eval_dir))
    indexed, left_out = evaluation.split_paragraphs(evaluation.load_squad(args.squad), args.holdout)
    embedder = make_query_embedder(settings)
    with open_catalog(settings, embedder) as catalog:
        ingest(settings, catalog, indexed)
        records = answer_all(settings, catalog, embedder, indexed, left_out, args.k)
    (args.eval_dir / "records.json").write_text(json.dumps(records))
    halves = ("choose", "report") if args.half == "both" else (args.half,)
    for half in halves:
        columns = {
            collection: figures(
                [r for r in records if r["collection"] == collection and r["half"] == half]
            )
            for collection in ("clean", "pdf")
        }
        print(f"\n{half} half ({args.squad.name}, k = {args.k})\n")
        rows = []
        for name in columns["clean"]:
            clean, pdf = columns["clean"][name], columns["pdf"][name]
            if isinstance(clean, int):
                rows.append([name, str(clean), str(pdf), ""])
            else:
                rows.append([name, f"{clean:.4f}", f"{pdf:.4f}", f"{pdf - clean:+.4f}"])
        table(["figure", "clean text", "PDFs", "PDFs - clean"], rows)


if __name__ == "__main__":
    main()
