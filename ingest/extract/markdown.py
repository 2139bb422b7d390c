"""Markdown: the text a reader sees, without markup (heading hashes, emphasis, link targets,
code fences, HTML tags). Headings and paragraphs keep their line breaks for the chunker."""

from __future__ import annotations

import re

from ingest.extract.base import Extracted
from ingest.extract.text import decode_text, require_text

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_CODE = re.compile(r"`+([^`]*)`+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")

# Content sniffing for files without a telling name: any two of these mark Markdown.
_MARKDOWN_SIGNS = (
    re.compile(r"^#{1,6}\s+\S", re.M),
    re.compile(r"^\s*```", re.M),
    re.compile(r"\[[^\]]+\]\([^)]+\)"),
    re.compile(r"^\s*[-*+]\s+\S", re.M),
    re.compile(r"\*\*[^*\n]+\*\*"),
)


def looks_like_markdown(text: str) -> bool:
    sample = text[:20000]
    return sum(1 for sign in _MARKDOWN_SIGNS if sign.search(sample)) >= 2


def markdown_to_text(source: str) -> str:
    lines: list[str] = []
    for line in source.split("\n"):
        if _FENCE.match(line) or (_SETEXT.match(line) and lines and lines[-1].strip()):
            continue
        if _REFERENCE_DEFINITION.match(line) or _TABLE_RULE.match(line):
            continue
        heading = _HEADING.match(line)
        if heading:
            line = heading.group(1)
        line = _QUOTE.sub("", line)
        line = _IMAGE.sub(r"\1", line)
        line = _LINK.sub(r"\1", line)
        line = _STRONG.sub(r"\2", line)
        line = _EMPHASIS.sub(r"\2", line)
        line = _CODE.sub(r"\1", line)
        line = _TAG.sub("", line)
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n")


class MarkdownExtractor:
    media_type = "text/markdown"

    def extract(self, data: bytes) -> Extracted:
        return self.from_text(decode_text(data))

    def from_text(self, text: str) -> Extracted:
        return Extracted(self.media_type, require_text(markdown_to_text(text)))
