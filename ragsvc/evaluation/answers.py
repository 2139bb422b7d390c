"""`ragsvc eval answers`: answer quality on SQuAD-format data, through `/query`'s path.

Every kept paragraph is indexed as a document, titled with its article. What is left out, one
in `1 / holdout` by title order, makes its questions unanswerable:

- `article` level: whole articles, so an unanswerable question is about a subject the index
  does not hold (easy to spot);
- `paragraph` level: only the paragraph that answers, while the rest of its article stays
  indexed, so the question finds near misses about the same subject, as in real use.

The collection is made to hold exactly the kept paragraphs (others, from an earlier run of the
other level, are deleted). Every question is retrieved and answered exactly as `/query` does.
Reported, each with a 95% interval (Wilson for shares, bootstrap over questions for the
AUROC): the share of answerable questions whose answer text, and whose cited chunks, contain a
gold answer; the share whose retrieved chunks do (retrieval's ceiling); the AUROC of
`confidence` between answerable and unanswerable questions; and how often each kind is
abstained on.
"""

from __future__ import annotations

import json
import re
import string
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from indexes import Catalog, SearchFilter
from ingest import Embedder
from ingest.sources import TextSource
from ragsvc.answering.base import LLMBackend, Passage
from ragsvc.evaluation.ranking_metrics import auroc, percentile
from ragsvc.evaluation.statistics import SEED, Interval, wilson_interval
from ragsvc.factory import make_embedder, make_pipeline
from ragsvc.retrieval.retriever import context_depth, context_hits, retrieve
from ragsvc.retrieval.retriever import passages as to_passages
from ragsvc.settings import Settings

COLLECTION = "squad"
AUROC_RESAMPLES = 500
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


class Question(msgspec.Struct, frozen=True):
    id: str
    text: str
    answers: list[str]
    article: str
    paragraph: int = 0
    """Index of the paragraph that answers it, in its article."""


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
        for number, paragraph in enumerate(article["paragraphs"]):
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text")]
                if answers:
                    questions.append(
                        Question(str(qa["id"]), qa["question"], answers, title, number)
                    )
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


def split_paragraphs(
    articles: list[Article], holdout: float
) -> tuple[list[Article], list[Article]]:
    """(indexed, left out): every round(1 / holdout)-th paragraph that has questions (by
    article title, then position) is left out; its article's other paragraphs stay. Left-out
    paragraphs keep their index, so that documents are named alike at both levels."""
    if not 0 < holdout < 1:
        raise ValueError("holdout must be between 0 and 1")
    step = max(2, round(1 / holdout))
    kept, left = [], []
    counter = 0
    for article in sorted(articles, key=lambda a: a.title):
        asked = sorted({q.paragraph for q in article.questions})
        out = set()
        for number in asked:
            counter += 1
            if counter % step == 0:
                out.add(number)
        kept.append(
            Article(
                article.title,
                [p if i not in out else "" for i, p in enumerate(article.paragraphs)],
                [q for q in article.questions if q.paragraph not in out],
            )
        )
        left.append(
            Article(
                article.title,
                [p if i in out else "" for i, p in enumerate(article.paragraphs)],
                [q for q in article.questions if q.paragraph in out],
            )
        )
    return kept, [a for a in left if a.questions]


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, without punctuation, articles and extra
    whitespace (so "the Scottish Government." holds "Scottish Government")."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_gold(text: str, answers: list[str]) -> bool:
    haystack = normalise(text)
    return any(gold and gold in haystack for gold in map(normalise, answers))


def ingest_articles(catalog: Catalog, settings: Settings, articles: list[Article]) -> int:
    pipeline = make_pipeline(settings, catalog, make_embedder(settings), engine="local")
    sources = [
        TextSource(f"{article.title} #{number}", paragraph, {"title": article.title})
        for article in articles
        for number, paragraph in enumerate(article.paragraphs, start=1)
        if paragraph
    ]
    try:
        report = pipeline.run(sources, collection=COLLECTION)
    finally:
        pipeline.close()
    wanted = {source.name for source in sources}
    extra = [d.id for d in catalog.all_documents([COLLECTION]) if d.source_name not in wanted]
    for document_id in extra:  # held out at this level, indexed by an earlier run
        catalog.delete_document(document_id)
    return report.count("added") + report.count("unchanged")


def question_passages(
    catalog: Catalog,
    embedder: Embedder,
    settings: Settings,
    question: str,
    k: int,
    collection: str = COLLECTION,
) -> list[Passage]:
    """The passages `/query` would answer `question` from, in `collection`."""
    hits = retrieve(
        catalog,
        embedder,
        settings,
        question,
        k=context_depth(settings, k),
        filters=SearchFilter(collection=collection),
        need_vector=True,
    ).hits
    return to_passages(catalog, context_hits(catalog, settings, hits, k))


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
                passages = question_passages(catalog, embedder, settings, question.text, k)
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
    figures = {
        "answer_contains_gold": wilson_interval(counts["answer"], answerable_total),
        "cited_chunks_contain_gold": wilson_interval(counts["cited"], answerable_total),
        f"retrieved_top{k}_contain_gold": wilson_interval(counts["retrieved"], answerable_total),
        "confidence_auroc": auroc_interval(confidences[True], confidences[False]),
        "abstention_rate_answerable": wilson_interval(counts["abstained"], answerable_total),
        "abstention_rate_unanswerable": wilson_interval(abstained_unanswerable, unanswerable_total),
    }
    return {
        "answerable_questions": answerable_total,
        "unanswerable_questions": unanswerable_total,
        **{name: round(interval.value, 4) for name, interval in figures.items()},
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
        "interval95": {name: interval.rounded()[1:] for name, interval in figures.items()},
    }


def auroc_interval(positives: list[float], negatives: list[float]) -> Interval:
    """The AUROC with a 95% interval from resampling each class (percentile bootstrap)."""
    value = auroc(positives, negatives)
    if not positives or not negatives:
        return Interval(value, value, value)
    rng = np.random.default_rng(SEED)
    pos, neg = np.asarray(positives), np.asarray(negatives)
    samples = [
        auroc(
            list(pos[rng.integers(0, len(pos), len(pos))]),
            list(neg[rng.integers(0, len(neg), len(neg))]),
        )
        for _ in range(AUROC_RESAMPLES)
    ]
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(value, float(low), float(high))
