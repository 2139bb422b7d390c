"""Answers from an LLM: prompt, call (with retries and a circuit breaker), check citations,
measure confidence, and fall back to the extractive answerer when the LLM cannot answer.

Citations are checked: every [n] must name a passage that was in the prompt, and the passage
must share support with the sentence citing it (half of the sentence's content words, or an
embedding similarity of at least 0.5). Other citations are dropped and counted.

Confidence, in [0, 1], is a weighted sum of four signals:

    0.45 · retrieval   logistic of the best passage's similarity (0.5 at 0.40)
    0.15 · margin      how far the best passage is ahead of the second (full at 0.10)
    0.25 · support     share of the answer's citations that survived the check
    0.15 · agreement   the mean of two agreements: between readers (1 when the LLM cites the
                       passage holding the sentence the extractive scorer ranks best) and
                       between retrievers (1 when dense and lexical retrieval both found the
                       first cited passage; counted only when retrieval was hybrid)

An answer of NOT_FOUND, or one below `min_confidence`, is returned as `answerable: false`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jsonschema

from indexes.reader import StageTimer, no_stage
from ingest import Embedder
from ingest.chunking import sentence_spans
from ragsvc.answering.base import NOT_FOUND, Answer, Passage
from ragsvc.answering.cache import ResponseCache
from ragsvc.answering.chat import (
    BackendError,
    BackendUnavailable,
    BadResponse,
    ChatClient,
    ChatRequest,
    CircuitBreaker,
    CircuitOpen,
    Completion,
    RetryPolicy,
    with_retries,
)
from ragsvc.answering.conversation import Turn
from ragsvc.answering.extractive import ExtractiveBackend, content_words
from ragsvc.answering.prompts import Template, frame_turn, pack_context

_CITATION = re.compile(r"\s*\[(\d+)\]")
NOT_FOUND_MARK = "NOT_FOUND"
MAX_CONDENSED_CHARS = 1000
"""A condensed question longer than this is taken for a failure (the no-LLM form is used)."""
SUPPORT_WORD_SHARE = 0.5
SUPPORT_SIMILARITY = 0.5


class SchemaMismatch(BackendError):
    """The backend's reply is not JSON matching the requested response schema."""


def _logistic(value: float, midpoint: float = 0.40, steepness: float = 12.0) -> float:
    return 1.0 / (1.0 + math.exp(-steepness * (value - midpoint)))


class GenerativeBackend:
    """An `LLMBackend` over a `ChatClient`."""

    def __init__(
        self,
        client: ChatClient,
        template: Template,
        embedder: Embedder,
        fallback: ExtractiveBackend,
        *,
        context_tokens: int = 3000,
        max_answer_tokens: int = 512,
        temperature: float = 0.0,
        min_confidence: float = 0.5,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        condenser: Template | None = None,
        cache_size: int = 1024,
    ) -> None:
        self.client = client
        self.name = client.name
        self.model: str | None = client.model
        self.template = template
        self.embedder = embedder
        self.fallback = fallback
        self.context_tokens = context_tokens
        self.max_answer_tokens = max_answer_tokens
        self.temperature = temperature
        self.min_confidence = min_confidence
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.calls = 0
        """Requests sent to the LLM server (each retry is one), and those that failed."""
        self.errors = 0
        self.stage: StageTimer = no_stage
        """Wraps each call to the LLM server (the service's traces)."""
        self.condenser = condenser
        self.condensed: ResponseCache[str] = ResponseCache(cache_size if temperature == 0 else 0)

    # -- follow-ups --------------------------------------------------------------------------

    def condense(self, question: str, history: Sequence[Turn]) -> str | None:
        """`question` rewritten to stand alone after `history` by the `condense` template, or
        None when the backend has none or the LLM fails (the caller then makes it without)."""
        if self.condenser is None or not history:
            return None
        conversation = "\n".join(frame_turn(turn.role, turn.content) for turn in history)
        system, user = self.condenser.render(conversation=conversation, question=question)
        key = hashlib.sha256(
            json.dumps([self.name, self.model, self.condenser.label, user]).encode()
        ).hexdigest()
        cached = self.condensed.get(key)
        if cached is not None:
            return cached
        request = ChatRequest(system=system, user=user, temperature=0.0, max_tokens=128)
        try:
            completion = self.breaker.call(
                lambda: with_retries(lambda: self._complete(request), self.retry)
            )
        except BackendError:
            return None
        lines = [line.strip().strip('"') for line in completion.text.splitlines() if line.strip()]
        if not lines or len(lines[0]) > MAX_CONDENSED_CHARS:
            return None
        self.condensed.put(key, lines[0])
        return lines[0]

    def _complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        with self.stage("llm"):
            try:
                return self.client.complete(request)
            except BackendError:
                self.errors += 1
                raise

    # -- prompt ------------------------------------------------------------------------------

    def prompt(
        self,
        question: str,
        passages: list[Passage],
        response_schema: dict[str, Any] | None = None,
    ) -> tuple[ChatRequest, list[Passage]]:
        context, used = pack_context(
            passages, self.context_tokens, lambda text: len(self.embedder.token_offsets(text))
        )
        system, user = self.template.render(context=context, question=question)
        request = ChatRequest(
            system=system,
            user=user,
            json_schema=response_schema,
            temperature=self.temperature,
            max_tokens=self.max_answer_tokens,
        )
        return request, used

    def cache_key(
        self, question: str, passages: list[Passage], response_schema: dict[str, Any] | None
    ) -> str | None:
        if self.temperature != 0:
            return None
        request, _ = self.prompt(question, passages, response_schema)
        material = json.dumps(
            [
                self.name,
                self.model,
                self.template.label,
                request.system,
                request.user,
                response_schema,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()

    # -- answering ---------------------------------------------------------------------------

    def answer(
        self,
        question: str,
        passages: list[Passage],
        *,
        response_schema: dict[str, Any] | None = None,
    ) -> Answer:
        if not passages:
            return Answer(NOT_FOUND, [], 0.0, False, self.name, self.model, self.template.label)
        request, used = self.prompt(question, passages, response_schema)
        try:
            completion = self.breaker.call(
                lambda: with_retries(lambda: self._complete(request), self.retry)
            )
        except BackendError as error:
            if response_schema is not None:
                raise
            return self._fall_back(question, passages, error)
        if response_schema is not None:
            return self._structured(completion, response_schema, used)
        return self._finish(question, used, completion)

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str | Answer]:
        if not passages:
            yield NOT_FOUND
            yield Answer(NOT_FOUND, [], 0.0, False, self.name, self.model, self.template.label)
            return
        request, used = self.prompt(question, passages)
        pieces: list[str] = []
        for attempt in range(self.retry.attempts):
            try:
                self.breaker.before()
                self.calls += 1
                upstream = self.client.stream(request)
                try:
                    for piece in upstream:
                        pieces.append(piece)
                        yield piece
                finally:
                    close = getattr(upstream, "close", None)
                    if close is not None:
                        close()  # a client that went away cancels the upstream request
                self.breaker.record_success()
                break
            except (BackendUnavailable, BadResponse) as error:
                self.errors += 1
                self.breaker.record_failure()
                if pieces:
                    raise  # tokens already went out: report, don't answer twice
                if isinstance(error, BadResponse) or attempt + 1 >= self.retry.attempts:
                    answer = self._fall_back(question, passages, error)
                    yield answer.text
                    yield answer
                    return
                self._sleep(self.retry.delay(attempt, error))
            except (CircuitOpen, BackendError) as error:
                answer = self._fall_back(question, passages, error)
                yield answer.text
                yield answer
                return
        yield self._finish(question, used, Completion("".join(pieces)))

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _fall_back(self, question: str, passages: list[Passage], error: Exception) -> Answer:
        answer = self.fallback.answer(question, passages)
        reason = f"{self.name} failed ({error}); answered by the extractive backend"
        return Answer(
            answer.text,
            answer.citations,
            answer.confidence,
            answer.answerable,
            answer.backend,
            None,
            None,
            0,
            reason,
        )

    def _structured(
        self, completion: Completion, schema: dict[str, Any], used: list[Passage]
    ) -> Answer:
        text = completion.text.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SchemaMismatch(f"{self.name} did not reply with JSON: {error}") from None
        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise SchemaMismatch(
                f"{self.name}'s reply does not match response_schema at {where}: {error.message}"
            ) from None
        confidence = round(0.45 * _logistic(used[0].similarity), 4) if used else 0.0
        return Answer(
            completion.text,
            [],
            confidence,
            True,
            self.name,
            self.model,
            self.template.label,
            data=data,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    def _finish(self, question: str, used: list[Passage], completion: Completion) -> Answer:
        text = completion.text.strip()
        label = self.template.label
        tokens = (completion.prompt_tokens, completion.completion_tokens)

        def answer(text: str, cited: list[int], confidence: float, dropped: int = 0) -> Answer:
            return Answer(
                text,
                cited,
                confidence,
                bool(cited) and text != NOT_FOUND,
                self.name,
                self.model,
                label,
                citations_dropped=dropped,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
            )

        if not text or text.startswith(NOT_FOUND_MARK):
            return answer(NOT_FOUND, [], round(0.2 * _logistic(used[0].similarity), 4))
        checked, citations, dropped = self.check_citations(text, used)
        confidence = self.confidence(question, used, citations, dropped)
        if confidence < self.min_confidence or not citations:
            return answer(NOT_FOUND, [], confidence, dropped)
        return answer(checked, citations, confidence, dropped)

    # -- citations and confidence ------------------------------------------------------------

    def check_citations(self, text: str, passages: list[Passage]) -> tuple[str, list[int], int]:
        """(text with unsupported citations removed, kept passage numbers, dropped count)."""
        by_number = {p.number: p for p in passages}
        kept: list[int] = []
        dropped = 0
        sentences: list[str] = []
        for start, end in sentence_spans(text):
            sentence = text[start:end]
            claim = _CITATION.sub("", sentence).strip()
            markers = []
            for match in _CITATION.finditer(sentence):
                number = int(match.group(1))
                passage = by_number.get(number)
                if passage is None or not self.supports(claim, passage):
                    dropped += 1
                    continue
                if number not in markers:
                    markers.append(number)
                if number not in kept:
                    kept.append(number)
            cites = "".join(f" [{n}]" for n in markers)
            end_mark = claim[-1] if claim and claim[-1] in ".!?" else ""
            sentences.append(claim[: len(claim) - len(end_mark)] + cites + end_mark)
        return " ".join(s for s in sentences if s), kept, dropped

    def supports(self, claim: str, passage: Passage) -> bool:
        words = content_words(claim)
        if not words:
            return True
        if len(words & content_words(passage.text)) >= SUPPORT_WORD_SHARE * len(words):
            return True
        vectors = self.embedder.embed_documents([claim, passage.text])
        return float(vectors[0] @ vectors[1]) >= SUPPORT_SIMILARITY

    def confidence(
        self, question: str, passages: list[Passage], cited: list[int], dropped: int
    ) -> float:
        scores = sorted((p.similarity for p in passages), reverse=True)
        retrieval = _logistic(scores[0])
        margin = min(1.0, (scores[0] - scores[1]) / 0.10) if len(scores) > 1 else 1.0
        total = len(cited) + dropped
        support = len(cited) / total if total else 0.0
        best = self.fallback.best_passage(question, passages)
        signals = [1.0 if best is not None and best in cited else 0.0]
        if any(p.retrievers > 1 for p in passages):  # hybrid retrieval: the retrievers can agree
            first = next((p for p in passages if p.number in cited[:1]), None)
            signals.append(1.0 if first is not None and first.retrievers > 1 else 0.0)
        agreement = sum(signals) / len(signals)
        value = 0.45 * retrieval + 0.15 * max(0.0, margin) + 0.25 * support + 0.15 * agreement
        return round(min(1.0, max(0.0, value)), 4)
