"""What a quotable answer sentence is, and what kind of thing a question asks for.

The extractive answerer quotes sentences, so it must not quote what only looks like one in a
PDF: a heading ("Proposed Design Changes"), a running header that escaped extraction, a
caption on its own ("Figure 2: ..."), a table-of-contents line with dot leaders, a line of a
back-of-book index ("harbour, 12, 45, 67"), or a fragment with no end and few words.
`quotable` says which; CJK text, where words are not spaced, is judged by length alone.

`answer_kind` reads what a question asks for (a duration for "how long", a time for "when" or
"what year", a quantity for "how many" or "how much") and gives the pattern of a sentence
that holds one, so that among sentences about the question the one holding the answer wins.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CAPTION = re.compile(
    r"^\W*(?:fig(?:ure)?|table|chart|exhibit|plate|abb(?:ildung)?|tab(?:elle)?)\.?\s*"
    r"[\dIVX]+[a-z]?\s*[:.\-\u2013]",
    re.IGNORECASE,
)
_LEADERS = re.compile(r"(?:\.\s?){4,}|\u2026{2,}|_{4,}|(?:-\s?){5,}")
_ENDS = re.compile(r"[.!?:;\"'\u201d\u2019)\]\u3002\uff01\uff1f]\s*$")
_TABLE_CELL = " | "
MIN_WORDS = 3
UNENDED_WORDS = 8
"""A line without an end needs this many words to be taken for a sentence."""

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundred|thousand|million|billion|dozen|several|few|half"
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_KINDS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r"\bhow long\b", re.IGNORECASE),
        re.compile(
            rf"\b(?:\d+|{_NUMBER_WORDS}|a|an)[\s-]+(?:\w+[\s-]+)?"
            r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?|centur(?:y|ies))\b",
            re.IGNORECASE,
        ),
    ),
    (
        re.compile(
            r"\bwhen\b|\bwhat (?:year|date|month|day|century|decade|time)\b|"
            r"\bin which (?:year|month|century|decade)\b",
            re.IGNORECASE,
        ),
        re.compile(
            rf"\b(?:1\d{{3}}|20\d{{2}})s?\b|\b(?:{_MONTHS})\b\.?|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b|"
            r"\b(?:century|centuries|decade|dynasty|era|age|period|reign)\b",
            re.IGNORECASE,
        ),
    ),
    (
        re.compile(
            r"\bhow (?:many|much|large|big|far|high|tall|old|deep|wide|heavy)\b|"
            r"\bwhat (?:percentage|percent|proportion|share|number|amount|fraction)\b",
            re.IGNORECASE,
        ),
        re.compile(rf"\d|\b(?:{_NUMBER_WORDS}|percent)\b", re.IGNORECASE),
    ),
)


def quotable(sentence: str) -> bool:
    """Whether `sentence` reads as a sentence worth quoting as an answer."""
    text = sentence.strip()
    if _CJK.search(text):
        return len(text) >= 8 and not _LEADERS.search(text)
    if _CAPTION.match(text) or _LEADERS.search(text):
        return False
    words = _WORD.findall(text)
    alphabetic = [w for w in words if w.isalpha()]
    if _TABLE_CELL in text:  # a table row: quotable where it holds a label and a value
        return bool(alphabetic) and len(words) > len(alphabetic)
    if len(alphabetic) < MIN_WORDS or sum(w.isdigit() for w in words) > len(alphabetic):
        return False
    lower = sum(w[0].islower() for w in alphabetic)
    if not _ENDS.search(text):
        # A heading or a fragment: few words, or hardly any in lower case.
        return len(alphabetic) >= UNENDED_WORDS and lower >= 0.3 * len(alphabetic)
    return lower >= 1


def answer_kind(question: str) -> re.Pattern[str] | None:
    """The pattern of a sentence holding what `question` asks for, if it asks for a kind of
    thing a pattern can see."""
    for asks, holds in _KINDS:
        if asks.search(question):
            return holds
    return None
