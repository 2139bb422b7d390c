"""Text as a reader should see it: PDF line-end hyphenation and wrapped lines undone.

Stored chunk text stays exactly as extracted, so that offsets point into it; `readable` is
applied where text is shown or quoted (extractive answers, snippets, prompt passages).

- A word broken at a line end is joined: "perfor-\\nmance" becomes "performance". The hyphen
  stays where it is part of the word: after a capital or a digit ("F-\\nscore" is
  "F-score"), before one, or after a prefix that is written with one ("self-\\naware").
- A single line break inside a paragraph becomes a space; blank lines (paragraph breaks)
  stay, as one blank line.
"""

from __future__ import annotations

import re

_BROKEN_WORD = re.compile(r"(\w+)-[^\S\n]*\n[^\S\n]*(?=(\w+))")
_LINE_BREAK = re.compile(r"[^\S\n]*\n[^\S\n]*")
_PARAGRAPH_BREAK = re.compile(r"\s*\n[^\S\n]*\n\s*")
_SPACES = re.compile(r"[^\S\n]{2,}")
HYPHENATED_PREFIXES = frozenset(
    [
        "self",
        "non",
        "well",
        "cross",
        "semi",
        "multi",
        "half",
        "ex",
        "co",
        "all",
        "high",
        "low",
        "long",
        "short",
        "real",
        "full",
        "open",
        "state",
        "end",
        "top",
        "first",
        "second",
        "third",
        "one",
        "two",
        "three",
    ]
)


def _join(match: re.Match[str]) -> str:
    left, right = match.group(1), match.group(2)
    keep = (
        not left.isalpha()
        or not right[:1].islower()
        or any(c.isupper() for c in left)
        or len(left) < 2
        or left.lower() in HYPHENATED_PREFIXES
    )
    return f"{left}-" if keep else left


def readable(text: str) -> str:
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    cleaned = []
    for paragraph in paragraphs:
        paragraph = _BROKEN_WORD.sub(_join, paragraph)
        paragraph = _LINE_BREAK.sub(" ", paragraph)
        cleaned.append(_SPACES.sub(" ", paragraph))
    return "\n\n".join(p for p in cleaned if p)
