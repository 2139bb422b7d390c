"""`ragsvc eval answers`: answer quality on SQuAD-format data, through `/query`'s path.

Every paragraph of the kept articles is indexed as a document; one article in
`1 / holdout` (by title order) is left out, which makes its questions unanswerable. Every
question is then retrieved and answered exactly as `/query` does. Reported: the share of
answerable questions whose answer text, and whose cited chunks, contain a gold answer; the
share whose retrieved chunks do (retrieval's ceiling); the AUROC of `confidence` between
answerable and unanswerable questions; and how often each kind is abstained on.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import msgspec

from indexes import Catalog, SearchFilter
from ingest import Chunker, Embedder, IngestPipeline, load_embedder
from ingest.sources import TextSource
from ragsvc.answering.base import LLMBackend
from ragsvc.evaluation.metrics import auroc, percentile
from ragsvc.retrieval import context_depth, context_hits, retrieve
from ragsvc.retrieval import passages as to_passages
from ragsvc.settings import Settings

COLLECTION = "squad"
_SPACES = re.compile(r"\s+")


class Question(msgspec.Struct, frozen=True):
    id: str
    text: str
    answers: list[str]
    article: str


class Article(msgspec.Struct, frozen=True):
    title: str
    paragraphs: list[str]
    questions: list[Question]


def load_squad(path: Path) -> list[Article]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    articles = []
    for article in data:
        title = article["title"]
        paragraphs, questions = [], []
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text")]
                if answers:
                    questions.append(Question(str(qa["id"]), qa["question"], answers, title))
        articles.append(Article(title, paragraphs, questions))
    return articles


def split_articles(articles: list[Article], holdout: float) -> tuple[list[Article], list[Article]]:
    """(indexed, left out): every round(1 / holdout)-th article by title is left out."""
    if not 0 < holdout < 1:
        raise ValueError("holdout must be between 0 and 1")
    step = max(2, round(1 / holdout))
    ordered = sorted(articles, key=lambda a: a.title)
    left_out = [a for i, a in enumerate(ordered) if i % step == step - 1]
    return [a for a in ordered if a not in left_out], left_out


def normalise(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def contains_gold(text: str, answers: list[str]) -> bool:
    haystack = normalise(text)
    return any(normalise(answer) in haystack for answer in answers)


def ingest_articles(catalog: Catalog, settings: Settings, articles: list[Article]) -> int:
    embedder = load_embedder(settings.embedder_config)
    chunker = Chunker(
        embedder,
        max_tokens=settings.chunk_max_tokens or None,
        overlap=settings.chunk_overlap_tokens,
    )
    pipeline = IngestPipeline(catalog, embedder, chunker, pool_chunks=settings.ingest_pool_chunks)
    sources = [
        TextSource(f"{article.title} #{number}", paragraph, {"title": article.title})
        for article in articles
        for number, paragraph in enumerate(article.paragraphs, start=1)
    ]
    report = pipeline.run(sources, collection=COLLECTION)
    return report.count("added") + report.count("unchanged")


def evaluate(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    backend: LLMBackend,
    indexed: list[Article],
    left_out: list[Article],
    k: int,
) -> dict[str, Any]:
    counts = {"answer": 0, "cited": 0, "retrieved": 0, "abstained": 0}
    confidences: dict[bool, list[float]] = {True: [], False: []}
    abstained_unanswerable = 0
    latencies = []
    for answerable, articles in ((True, indexed), (False, left_out)):
        for article in articles:
            for question in article.questions:
                started = time.perf_counter()
                hits = retrieve(
                    catalog,
                    embedder,
                    settings,
                    question.text,
                    k=context_depth(settings, k),
                    filters=SearchFilter(collection=COLLECTION),
                    need_vector=True,
                ).hits
                passages = to_passages(catalog, context_hits(catalog, settings, hits, k))
                answer = backend.answer(question.text, passages)
                latencies.append((time.perf_counter() - started) * 1000)
                confidences[answerable].append(answer.confidence)
                if not answerable:
                    abstained_unanswerable += not answer.answerable
                    continue
                cited = [p for p in passages if p.number in answer.citations]
                counts["answer"] += answer.answerable and contains_gold(
                    answer.text, question.answers
                )
                counts["cited"] += any(contains_gold(p.text, question.answers) for p in cited)
                counts["retrieved"] += any(
                    contains_gold(p.text, question.answers) for p in passages
                )
                counts["abstained"] += not answer.answerable
    answerable_total = len(confidences[True])
    unanswerable_total = len(confidences[False])
    return {
        "answerable_questions": answerable_total,
        "unanswerable_questions": unanswerable_total,
        "answer_contains_gold": round(counts["answer"] / answerable_total, 4),
        "cited_chunks_contain_gold": round(counts["cited"] / answerable_total, 4),
        f"retrieved_top{k}_contain_gold": round(counts["retrieved"] / answerable_total, 4),
        "confidence_auroc": round(auroc(confidences[True], confidences[False]), 4),
        "abstention_rate_answerable": round(counts["abstained"] / answerable_total, 4),
        "abstention_rate_unanswerable": round(
            abstained_unanswerable / unanswerable_total if unanswerable_total else 0.0, 4
        ),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
    }
