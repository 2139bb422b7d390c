"""The offline answerer: quotes the retrieved sentences that best answer the question.

Every sentence of the retrieved passages is scored by the cosine similarity of its embedding
to the question's, plus a share for the question's content words it contains. The best
sentence (and a second one that scores nearly as well) is the answer, cited as [n], with
line-end hyphenation and wrapped lines undone (`ingest.cleaning.readable`).

Where sentence vectors come from (`sentence_vectors`):

- `stored`: with the passages. They were pooled at ingestion from the token embeddings of the
  chunk's own forward pass (late chunking), so answering needs no model call but the
  question's, and that one is retrieval's (the query encoder caches it).
- `rerank`: stored vectors shortlist the `rerank` best sentences, and only those are embedded
  on their own and scored again: one small forward pass buys the precision of `encode`.
- `encode`: every sentence embedded here, one by one in a batch.

Passages without stored sentence vectors (widened by neighbours, or from an embedder that
cannot pool them) have their sentences embedded here in every mode.

Only quotable sentences compete (`sentences.quotable`: no heading, caption alone, contents or
index line, or fragment, where the passages hold a real sentence), and a sentence holding the
kind of thing asked (a duration for "how long", a time for "when", a quantity for "how many")
ranks `KIND_WEIGHT` higher.

Confidence is the chance the answer is right: a logistic function of the evidence
(`Evidence`: the best passage's retrieval score, the quoted sentence's score, its lead over
the best sentence of any other passage, and whether it holds the kind of thing asked),
fitted on questions over clean text and PDFs (`CALIBRATION`). Below `min_confidence` the
answer is "not found in the documents". In `stored` mode, evidence within `BORDERLINE` of
that threshold is measured again as `rerank` measures it, so that how stored vectors
approximate sentences does not decide whether to answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from ingest import Embedder
from ingest.chunking import sentence_spans
from ingest.cleaning import readable
from ragsvc.answering.base import NOT_FOUND, Answer, Passage
from ragsvc.answering.conversation import Turn
from ragsvc.answering.sentences import answer_kind, quotable
from ragsvc.errors import RagsvcError


class StructuredOutputUnsupported(RagsvcError, ValueError):
    """A response schema was asked of a backend that cannot produce JSON."""


_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORD_TEXT = """
a an and are as at be by did do does for from had has have how in is it its of on or that the
their there these this those to was were what when where which who whom whose why will with
would can could should may might into about than then them they he she his her we you your our
i me my not no yes
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
LEXICAL_WEIGHT = 0.3
SECOND_SENTENCE_MARGIN = 0.03
MAX_LEAD = 0.2
"""How far the best sentence's score may lead the best of any other passage, as evidence."""
# The midpoint was set for sentences embedded one by one; sentence vectors pooled inside their
# chunk score the same passages lower by this much on average (no relevance labels involved:
# `benchmarks/calibrate_extractive.py` on SciFact's train queries), so evidence from a stored
# sentence vector is raised by it.
STORED_SENTENCE_SHIFT = 0.019
# ... give or take this much (the standard deviation of that difference, same run). A decision
# that close to the threshold is made again, as `rerank` makes it: the shortlisted sentences
# embedded on their own, which is the evidence the midpoint was set for.
BORDERLINE = 0.02
# What holding the kind of thing asked (a duration for "how long") adds to a sentence's rank,
# not to the evidence: about the score gap between the sentence that answers and a topic
# sentence beside it.
KIND_WEIGHT = 0.05

SentenceVectors = Literal["stored", "rerank", "encode"]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1}


class Evidence(NamedTuple):
    """What the confidence in an answer is computed from."""

    passage: float
    """The best passage's retrieval similarity."""
    sentence: float
    """The quoted sentence's evidence (`Scored.evidence`), shifted up when it came from a
    stored vector."""
    lead: float
    """How far the quoted sentence's score leads the best sentence of any other passage
    (`MAX_LEAD` at most, and with one passage)."""
    kind: float
    """1 when the question asks for a kind of thing (`answer_kind`) and the sentence holds
    one, -1 when it asks and the sentence holds none, 0 when it asks for no kind."""


class Calibration(NamedTuple):
    """Confidence as a logistic function of the evidence: the chance the answer is right."""

    bias: float
    passage: float
    sentence: float
    lead: float
    kind: float

    def logit(self, evidence: Evidence) -> float:
        return (
            self.bias
            + self.passage * evidence.passage
            + self.sentence * evidence.sentence
            + self.lead * evidence.lead
            + self.kind * evidence.kind
        )

    def confidence(self, evidence: Evidence) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(evidence)))


CALIBRATION = Calibration(bias=-4.065, passage=-6.274, sentence=12.883, lead=7.139, kind=0.318)
"""Fitted by `benchmarks/fit_confidence.py` (logistic regression of "the answer holds a gold
answer") on the `choose` half of `benchmarks/bench_pdf_answers.py`'s XQuAD questions, clean
text and typeset PDFs together, unanswerable questions included. Given the sentence's
evidence, a passage that matches the question better than its best sentence does is a topic
match rather than an answer, hence the passage's negative weight."""


class Scored(NamedTuple):
    """The sentences of some passages scored for a question."""

    candidates: list[tuple[Passage, str]]
    """(passage, sentence), in passage order."""
    similarity: np.ndarray
    lexical: np.ndarray
    """The share of the question's content words each sentence holds."""
    stored: np.ndarray
    """Whether each similarity came from a stored (pooled in context) vector."""
    question_vector: np.ndarray
    kind: np.ndarray
    """Whether each sentence holds the kind of thing the question asks for (`answer_kind`)."""
    asked: bool = False
    """Whether the question asks for a kind of thing `answer_kind` can see."""

    @property
    def evidence(self) -> np.ndarray:
        """How well each sentence matches the question: what confidence is calibrated on."""
        return (1 - LEXICAL_WEIGHT) * self.similarity + LEXICAL_WEIGHT * self.lexical

    @property
    def scores(self) -> np.ndarray:
        """The evidence, with a share for holding the kind of thing asked: what ranks."""
        return self.evidence + KIND_WEIGHT * self.kind


class ExtractiveBackend:
    name = "extractive"
    model: str | None = None

    def __init__(
        self,
        embedder: Embedder,
        *,
        min_confidence: float = 0.3,
        sentence_vectors: SentenceVectors = "stored",
        rerank: int = 4,
    ) -> None:
        self.embedder = embedder
        self.min_confidence = min_confidence
        self.sentence_vectors = sentence_vectors
        self.rerank = max(1, rerank)
        """How many sentences the stored vectors shortlist in `rerank` mode."""

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str | Answer]:
        answer = self.answer(question, passages)
        yield answer.text
        yield answer

    def cache_key(
        self, question: str, passages: list[Passage], response_schema: dict[str, Any] | None
    ) -> str | None:
        return None  # answering is cheaper than a cache entry

    def condense(self, question: str, history: Sequence[Turn]) -> str | None:
        return None  # no rewrite without an LLM: the caller searches the no-LLM form

    def _rank(
        self, question: str, passages: list[Passage], mode: SentenceVectors | None = None
    ) -> Scored:
        """Every sentence of the passages worth scoring and its score for the question, with
        sentence vectors as `mode` (by default the backend's) says."""
        mode = mode or self.sentence_vectors
        scored = self._score(question, passages, use_stored=mode != "encode")
        return self._rerank(scored) if mode == "rerank" else scored

    def _score(self, question: str, passages: list[Passage], *, use_stored: bool) -> Scored:
        candidates: list[tuple[Passage, str]] = []
        vectors: list[np.ndarray | None] = []
        for passage in passages:
            if use_stored and passage.sentence_vectors is not None:
                for (start, end), vector in zip(
                    passage.sentence_spans.tolist(), passage.sentence_vectors, strict=True
                ):
                    candidates.append((passage, passage.text[start:end]))
                    vectors.append(vector)
            else:
                for start, end in sentence_spans(passage.text):
                    candidates.append((passage, passage.text[start:end]))
                    vectors.append(None)
        # Headings, captions, contents and index lines are never the answer, when there is
        # a sentence to quote instead.
        keep = [i for i, (_, sentence) in enumerate(candidates) if quotable(sentence)]
        if keep and len(keep) < len(candidates):
            candidates = [candidates[i] for i in keep]
            vectors = [vectors[i] for i in keep]
        if not candidates:
            empty = np.zeros(0)
            return Scored([], empty, empty, np.zeros(0, dtype=bool), empty, empty)
        stored = np.array([vector is not None for vector in vectors], dtype=bool)
        question_vector = self.embedder.embed_query(question)
        self._embed(candidates, vectors, [i for i, v in enumerate(vectors) if v is None])
        wanted = content_words(question)
        lexical = np.array(
            [
                len(wanted & content_words(sentence)) / len(wanted) if wanted else 0.0
                for _, sentence in candidates
            ]
        )
        similarity = np.stack([v for v in vectors if v is not None]) @ question_vector
        pattern = answer_kind(question)
        kind = np.array(
            [bool(pattern and pattern.search(sentence)) for _, sentence in candidates], dtype=bool
        )
        return Scored(
            candidates, similarity, lexical, stored, question_vector, kind, pattern is not None
        )

    def _rerank(self, scored: Scored) -> Scored:
        """The `rerank` best sentences by stored vectors embedded on their own and scored
        again, with the sentences that had no stored vector; the rest dropped."""
        if not scored.stored.any():
            return scored
        stored_order = [i for i in np.argsort(-scored.scores).tolist() if scored.stored[i]]
        shortlist = stored_order[: self.rerank]
        fresh = self.embedder.embed_documents([scored.candidates[i][1] for i in shortlist])
        similarity = scored.similarity.copy()
        similarity[shortlist] = fresh @ scored.question_vector
        keep = sorted(set(shortlist) | set(np.flatnonzero(~scored.stored).tolist()))
        return Scored(
            [scored.candidates[i] for i in keep],
            similarity[keep],
            scored.lexical[keep],
            np.zeros(len(keep), dtype=bool),
            scored.question_vector,
            scored.kind[keep],
            scored.asked,
        )

    def _embed(
        self,
        candidates: list[tuple[Passage, str]],
        vectors: list[np.ndarray | None],
        indices: list[int],
    ) -> None:
        """Fill `vectors[i]` for `indices` with the sentences embedded on their own."""
        if indices:
            fresh = self.embedder.embed_documents([candidates[i][1] for i in indices])
            for i, vector in zip(indices, fresh, strict=True):
                vectors[i] = vector

    def best_passage(self, question: str, passages: list[Passage]) -> int | None:
        """The number of the passage holding the best-scoring sentence."""
        scored = self._rank(question, passages)
        if not scored.candidates:
            return None
        return scored.candidates[int(np.argmax(scored.scores))][0].number

    @staticmethod
    def _choose(passages: list[Passage], scored: Scored) -> tuple[list[int], Evidence]:
        """The sentences to quote (the best, and a second nearly as good) and the evidence
        for the best."""
        scores = scored.scores
        order = np.argsort(-scores)
        best = int(order[0])
        chosen = [best]
        if len(order) > 1 and scores[best] - scores[order[1]] <= SECOND_SENTENCE_MARGIN:
            chosen.append(int(order[1]))
        sentence = float(scored.evidence[best])
        if scored.stored[best]:
            sentence += 2 * STORED_SENTENCE_SHIFT  # the shift is in units of the mean of two
        own = scored.candidates[best][0].number
        others = [float(scores[i]) for i, (p, _) in enumerate(scored.candidates) if p.number != own]
        lead = min(MAX_LEAD, float(scores[best]) - max(others)) if others else MAX_LEAD
        kind = 0.0 if not scored.asked else (1.0 if scored.kind[best] else -1.0)
        passage = max(p.similarity for p in passages)
        return chosen, Evidence(passage, sentence, lead, kind)

    def _borderline(self, evidence: Evidence) -> bool:
        """Whether stored vectors' evidence is too close to the abstention threshold for the
        decision to rest on it: within `BORDERLINE` (in units of the mean of passage and
        sentence evidence, as it was measured) of the threshold."""
        if not 0.0 < self.min_confidence < 1.0:
            return False
        threshold = math.log(self.min_confidence / (1.0 - self.min_confidence))
        band = BORDERLINE * 2 * CALIBRATION.sentence
        return abs(CALIBRATION.logit(evidence) - threshold) <= band

    def explain(self, question: str, passages: list[Passage]) -> Evidence | None:
        """The evidence the answer's confidence comes from (for calibrating it)."""
        scored = self._rank(question, passages)
        if not scored.candidates:
            return None
        chosen, evidence = self._choose(passages, scored)
        if scored.stored[chosen[0]] and self._borderline(evidence):
            chosen, evidence = self._choose(passages, self._rerank(scored))
        return evidence

    def answer(
        self,
        question: str,
        passages: list[Passage],
        *,
        response_schema: dict[str, Any] | None = None,
    ) -> Answer:
        if response_schema is not None:
            raise StructuredOutputUnsupported(
                "the extractive backend cannot produce structured output; choose an LLM backend"
            )
        scored = self._rank(question, passages)
        if not scored.candidates:
            return Answer(NOT_FOUND, [], 0.0, False, self.name)
        chosen, evidence = self._choose(passages, scored)
        if scored.stored[chosen[0]] and self._borderline(evidence):
            scored = self._rerank(scored)
            chosen, evidence = self._choose(passages, scored)
        confidence = round(CALIBRATION.confidence(evidence), 4)
        if confidence < self.min_confidence:
            return Answer(NOT_FOUND, [], confidence, False, self.name)
        parts = []
        citations: list[int] = []
        quotes: dict[int, str] = {}
        for index in chosen:
            passage, sentence = scored.candidates[index]
            quoted = readable(sentence)
            parts.append(f"{quoted} [{passage.number}]")
            quotes[passage.number] = (
                f"{quotes[passage.number]} {quoted}".strip() if passage.number in quotes else quoted
            )
            if passage.number not in citations:
                citations.append(passage.number)
        return Answer(" ".join(parts), citations, confidence, True, self.name, quotes=quotes)
