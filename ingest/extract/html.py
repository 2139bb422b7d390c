"""HTML: visible text only. Scripts, styles, templates and the head are dropped; block
elements become line breaks so that paragraphs survive for the chunker."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ingest.extract.base import Extracted, clean_title
from ingest.extract.text import decode_text, require_text

_INVISIBLE = {"script", "style", "head", "template", "noscript", "svg", "iframe", "object"}
_BLOCK = {
    "address",
    "article",
    "aside",
    "blockquote",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
    "br",
    "td",
    "th",
    "caption",
    "details",
    "summary",
}
_HTML_SIGN = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.I)
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)*")


def looks_like_html(text: str) -> bool:
    return _HTML_SIGN.search(text[:4096]) is not None


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._hidden_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag == "body":
            self._hidden_depth = 0  # an unclosed <head> must not hide the whole page
        elif tag in _INVISIBLE:
            self._hidden_depth += 1
        elif tag in _BLOCK:
            self.parts.append(
                "\n\n" if tag in {"p", "div", "section", "article"} or tag.startswith("h") else "\n"
            )

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _INVISIBLE:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK:
            self.parts.append(
                "\n\n" if tag in {"p", "div", "section", "article"} or tag.startswith("h") else "\n"
            )

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if not self._hidden_depth:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    return _parse(source)[0]


def _parse(source: str) -> tuple[str, str | None]:
    """(visible text, `<title>`)."""
    parser = _VisibleText()
    parser.feed(source)
    parser.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n")]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return text, clean_title("".join(parser.title))


class HtmlExtractor:
    media_type = "text/html"

    def extract(self, data: bytes) -> Extracted:
        return self.from_text(decode_text(data))

    def from_text(self, text: str) -> Extracted:
        visible, title = _parse(text)
        return Extracted(self.media_type, require_text(visible), title=title)
