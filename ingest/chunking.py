"""Token-aware chunking with the embedding model's own tokenizer.

The text is tokenized once, with character offsets. It is cut into units at the widest
boundary that keeps a unit within the token budget: paragraphs (a blank line, or a page
break), then sentences, then lines, and only as a last resort windows of tokens (cut where a
word starts). Units are packed greedily into chunks of at most `budget` tokens, the model's
maximum sequence length less its special tokens. A new chunk repeats the previous chunk's
trailing units up to `overlap` tokens, so overlap is made of whole sentences or paragraphs.

Every chunk keeps its character span in the extracted text and, for paged documents, the
first and last page it covers; token counts are exact, counted from the same tokenization.
A document with sections (a heading's part, a slide, a block of table rows) is chunked one
section at a time, so a chunk never mixes two and carries its section's location.

A chunk also knows its document: its `context` is the document's title and the section's
heading path (at most `CONTEXT_TOKENS` tokens), which is embedded and indexed with the chunk
(`NewChunk.embedded_text`) but is not part of its text or offsets. The context's tokens come
out of the chunk's budget, so context and text together still fit the model. A chunk whose
text already begins with the title (the first chunk of most documents) does not repeat it.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import numpy as np

from indexes import NewChunk
from indexes.rows import embedded_text
from ingest.extract.base import Extracted

_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_CLOSING = "\"'”’)]"  # noqa: RUF001 (closing quotes)
# A sentence ends after its stop and any closing quote or bracket, before whitespace.
_CLOSE = re.escape(_CLOSING)
_SENTENCE_END = re.compile(
    rf"(?:(?<=[.!?])|(?<=[.!?][{_CLOSE}])|(?<=[.!?][{_CLOSE}]{{2}}))\s+|(?<=[。！？])"  # noqa: RUF001 (CJK stops)
)
# Words after which a full stop is part of the word, not the end of a sentence; the second
# set only before a number ("No. 5", "Fig. 2"), as "no." also ends sentences. "Inc." and
# "etc." are left out: they end sentences as often as not.
_ABBREVIATION_TEXT = """
al approx ca capt cf col dr e.g gen gov hon i.e jr lt mr mrs ms mt prof rev sen sgt sr st vs
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
_NUMBER_ABBREVIATION_TEXT = """
eq fig figs no nos pp vol vols jan feb mar apr jun jul aug sep sept oct nov dec
"""
_NUMBER_ABBREVIATIONS = frozenset(_NUMBER_ABBREVIATION_TEXT.split())
_WORD_BEFORE = re.compile(r"([\w.]+)\.$")
_LINE = re.compile(r"\n")
# A line that opens a list item, and a table row as extractors write it ("a | b | c").
_LIST_ITEM = re.compile(r"[^\S\n]*(?:[-*\u2022\u2013]\s|\d{1,3}[.)]\s|\([a-z0-9]{1,3}\)\s)")
_TABLE_CELL = " | "
_WRAP_AFTER = frozenset("(['\"\u2018\u201c")
_WORD_BOUNDARY_SEARCH = 16
CONTEXT_TOKENS = 32
"""The most tokens of title and heading path a chunk carries."""
_ROWS = re.compile(r",? rows? \d+(?:-\d+)?$")


class _SentenceBreaks:
    """Where sentences end: after ".", "!" or "?" (and up to two closing quotes or brackets,
    which stay with the sentence) and whitespace, or after a CJK full stop; except where the
    full stop belongs to the word before it: an initial ("Paul T. Stallsworth", "Y. pestis"),
    a known abbreviation ("et al. 1998", "c. 1455", "Rev. Paul", "Sep. 15"), or any stop
    when a lower-case word follows, as that does not start a sentence ("e.g. the", "approx.
    ten", "Alas ! said he")."""

    def finditer(self, text: str, start: int, end: int) -> Iterator[re.Match[str]]:
        for match in _SENTENCE_END.finditer(text, start, end):
            if not self._inside_sentence(text, start, match):
                yield match

    @staticmethod
    def _inside_sentence(text: str, start: int, match: re.Match[str]) -> bool:
        stop = match.start()
        while stop > start and text[stop - 1] in _CLOSING:
            stop -= 1
        if stop == start:
            return False
        following = text[match.end() : match.end() + 1]
        if following.islower():
            return True  # "Alas ! said he", "e.g. the": no sentence starts in lower case
        if text[stop - 1] != ".":
            return False
        word = _WORD_BEFORE.search(text, max(start, stop - 12), stop)
        if word is None:
            return False
        token = word.group(1).lower()
        if len(token) == 1 and token.isalpha():
            return True
        return token in _ABBREVIATIONS or (following.isdigit() and token in _NUMBER_ABBREVIATIONS)


_SENTENCE = _SentenceBreaks()


class Tokenizes(Protocol):
    max_tokens: int
    special_tokens: int

    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...


class _Unit(NamedTuple):
    start: int
    end: int
    tokens: int


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class Chunker:
    def __init__(
        self, tokenizer: Tokenizes, *, max_tokens: int | None = None, overlap: int = 32
    ) -> None:
        model_limit = tokenizer.max_tokens
        limit = min(max_tokens, model_limit) if max_tokens else model_limit
        self.budget = limit - tokenizer.special_tokens
        if self.budget < 8:
            raise ValueError(f"chunk size {limit} leaves fewer than 8 tokens for text")
        if not 0 <= overlap < self.budget:
            raise ValueError(f"chunk overlap must be between 0 and {self.budget - 1} tokens")
        self.overlap = overlap
        self._tokenizer = tokenizer

    def chunk(self, extracted: Extracted, title: str | None = None) -> list[NewChunk]:
        """The chunks of `extracted`; `title` (else the extracted one) goes into each chunk's
        context."""
        text = extracted.text
        title = " ".join((title or extracted.title or "").split())
        offsets = self._tokenizer.token_offsets(text)
        if not offsets:
            return []
        starts = np.fromiter((s for s, _ in offsets), dtype=np.int64, count=len(offsets))
        ends = np.fromiter((e for _, e in offsets), dtype=np.int64, count=len(offsets))

        def count(start: int, end: int) -> int:
            return int(np.searchsorted(starts, end) - np.searchsorted(starts, start))

        pages = extracted.page_starts
        spans: list[tuple[int, int, str | None]] = [(0, len(text), None)]
        if extracted.sections:
            bounds = [s.start for s in extracted.sections[1:]] + [len(text)]
            spans = [(0, extracted.sections[0].start, None)] + [
                (section.start, bound, section.location)
                for section, bound in zip(extracted.sections, bounds, strict=True)
            ]
        chunks: list[NewChunk] = []
        for span_start, span_end, location in spans:
            heading = _ROWS.sub("", location or "").strip()
            context = self._context("\n".join(part for part in (title, heading) if part))
            budget = self.budget - (len(self._tokenizer.token_offsets(context)) if context else 0)
            units = self._units(text, span_start, span_end, count, starts, ends, 0, budget)
            for group in self._pack(units, budget):
                start, end = group[0].start, group[-1].end
                piece = text[start:end]
                own = context
                if title and piece.startswith(title):
                    own = heading and self._context(heading)  # the text names its document
                chunks.append(
                    NewChunk(
                        ordinal=len(chunks),
                        text=piece,
                        char_start=start,
                        char_end=end,
                        token_count=count(start, end),
                        text_hash=text_hash(embedded_text(own, piece)),
                        page_start=bisect_right(pages, start) if pages else None,
                        page_end=bisect_right(pages, end - 1) if pages else None,
                        location=location,
                        context=own or None,
                    )
                )
        return chunks

    def _context(self, context: str) -> str:
        """`context` cut to `CONTEXT_TOKENS` tokens, or a quarter of the budget (where a token
        starts)."""
        limit = min(CONTEXT_TOKENS, self.budget // 4)
        offsets = self._tokenizer.token_offsets(context)
        if len(offsets) <= limit:
            return context
        return context[: offsets[limit][0]].rstrip() if limit else ""

    def _units(
        self,
        text: str,
        start: int,
        end: int,
        count: Callable[[int, int], int],
        starts: np.ndarray,
        ends: np.ndarray,
        level: int,
        budget: int,
    ) -> list[_Unit]:
        separators = (_PARAGRAPH, _SENTENCE, _LINE)
        units: list[_Unit] = []
        for piece_start, piece_end in _split(text, start, end, separators[level]):
            tokens = count(piece_start, piece_end)
            if tokens == 0:
                continue
            if tokens <= budget:
                units.append(_Unit(piece_start, piece_end, tokens))
            elif level + 1 < len(separators):
                units.extend(
                    self._units(
                        text, piece_start, piece_end, count, starts, ends, level + 1, budget
                    )
                )
            else:
                units.extend(self._windows(piece_start, piece_end, starts, ends, budget))
        return units

    def _windows(
        self, start: int, end: int, starts: np.ndarray, ends: np.ndarray, budget: int
    ) -> list[_Unit]:
        first = int(np.searchsorted(starts, start))
        last = int(np.searchsorted(starts, end))
        units: list[_Unit] = []
        while first < last:
            cut = min(first + budget, last)
            if cut < last:
                # Prefer to cut where whitespace precedes a token, so no word is split.
                for candidate in range(cut, max(first + 1, cut - _WORD_BOUNDARY_SEARCH), -1):
                    if starts[candidate] > ends[candidate - 1]:
                        cut = candidate
                        break
            units.append(_Unit(int(starts[first]), int(ends[cut - 1]), cut - first))
            first = cut
        return units

    def _pack(self, units: list[_Unit], budget: int) -> list[list[_Unit]]:
        groups: list[list[_Unit]] = []
        current: list[_Unit] = []
        tokens = 0
        for unit in units:
            if current and tokens + unit.tokens > budget:
                groups.append(current)
                carried: list[_Unit] = []
                carried_tokens = 0
                for previous in reversed(current[1:]):
                    if carried_tokens + previous.tokens > self.overlap:
                        break
                    carried.insert(0, previous)
                    carried_tokens += previous.tokens
                while carried and carried_tokens + unit.tokens > budget:
                    carried_tokens -= carried.pop(0).tokens
                current, tokens = carried, carried_tokens
            current.append(unit)
            tokens += unit.tokens
        if current:
            groups.append(current)
        return groups


def _split(
    text: str, start: int, end: int, separator: re.Pattern[str] | _SentenceBreaks
) -> list[tuple[int, int]]:
    """Spans of text[start:end] between separator matches, with whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    position = start
    for match in separator.finditer(text, start, end):
        if match.end() == match.start() and match.start() in (start, end):
            continue
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, end))
    trimmed = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            trimmed.append((a, b))
    return trimmed


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`. Paragraph breaks end them too, and so do
    line breaks, except those that only wrap a sentence onto the next line (PDF text comes
    in the page's lines: "We used an HMM-based\nNE tagger whose ... in F-\nscore.")."""
    spans: list[tuple[int, int]] = []
    for paragraph_start, paragraph_end in _split(text, 0, len(text), _PARAGRAPH):
        for start, end in _split(text, paragraph_start, paragraph_end, _SENTENCE):
            position = start
            for match in _LINE.finditer(text, start, end):
                if not _wraps(text, match.start(), start, end):
                    spans.extend(_split(text, position, match.start(), _PARAGRAPH))
                    position = match.end()
            spans.extend(_split(text, position, end, _PARAGRAPH))
    return spans


def _wraps(text: str, newline: int, start: int, end: int) -> bool:
    """Whether the line break at `newline` continues a sentence rather than ending a line
    of its own (a list item, a table row)."""
    line_start = text.rfind("\n", start, newline)
    before = text[line_start + 1 if line_start >= 0 else start : newline].rstrip()
    after_end = text.find("\n", newline + 1, end)
    after = text[newline + 1 : after_end if after_end >= 0 else end]
    if not before or not after.strip() or _TABLE_CELL in before or _TABLE_CELL in after:
        return False
    if _LIST_ITEM.match(after):
        return False
    # The stops inside the sentence were judged already (an initial, "e.g."): a line that
    # ends at one, or after a quote, still wraps when the next goes on with a word.
    first = after.lstrip()[0]
    return first.isalnum() or first in _WRAP_AFTER
