"""Prompt templates: named, versioned TOML files with declared variables.

A template declares its variables; loading checks that the text uses exactly those, so a
missing or unknown variable stops the service at start-up rather than failing a query.
Passages are packed best first into a token budget and framed as untrusted data: each sits in
a `<passage>` element whose tags cannot be forged from inside the text, in any letter case,
and whose attributes are escaped.
"""

from __future__ import annotations

import html
import re
import string
import tomllib
from collections.abc import Callable
from pathlib import Path

import msgspec

from ingest.cleaning import readable
from ragsvc.answering.base import Passage
from ragsvc.errors import ConfigurationError

BUILTIN_DIRECTORY = Path(__file__).parent / "templates"


class TemplateError(ConfigurationError):
    """A template file is missing, malformed, or its variables do not match its text."""


class Template(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    version: int
    variables: list[str]
    system: str
    user: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> tuple[str, str]:
        if set(values) != set(self.variables):
            raise TemplateError(f"template {self.label} needs {sorted(self.variables)}")
        return self.system.strip().format(**values), self.user.strip().format(**values)


def _placeholders(text: str) -> set[str]:
    names = set()
    for _, field, _, _ in string.Formatter().parse(text):
        if field is not None:
            if not field.isidentifier():
                raise TemplateError(f"placeholder {{{field}}} is not a plain name")
            names.add(field)
    return names


def load_template(path: Path) -> Template:
    try:
        template = msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), Template)
    except FileNotFoundError:
        raise TemplateError(f"no template file {path}") from None
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
        raise TemplateError(f"{path}: {error}") from None
    used = _placeholders(template.system) | _placeholders(template.user)
    declared = set(template.variables)
    if used - declared:
        raise TemplateError(f"{path}: undeclared variables {sorted(used - declared)}")
    if declared - used:
        raise TemplateError(f"{path}: declared but unused variables {sorted(declared - used)}")
    return template


def load_templates(directory: Path | None = None) -> dict[str, Template]:
    """Built-in templates, then those in `directory` (which may override them by name)."""
    templates = {}
    for folder in (BUILTIN_DIRECTORY, directory):
        if folder is None:
            continue
        if not folder.is_dir():
            raise TemplateError(f"template folder {folder} does not exist")
        for path in sorted(folder.glob("*.toml")):
            template = load_template(path)
            templates[template.name] = template
    return templates


# A `<` that could open or close a passage element, in any letter case and spacing.
_FRAME_TAG = re.compile(r"<(?=\s*/?\s*passage)", re.IGNORECASE)
# What stands in for it: a look-alike that no markup reader takes for a tag.
_DEFUSED = "\u2039"  # SINGLE LEFT-POINTING ANGLE QUOTATION MARK


_TURN_TAG = re.compile(r"<(?=\s*/?\s*turn)", re.IGNORECASE)


def frame_turn(role: str, content: str) -> str:
    """A conversation turn as a `<turn>` element whose text cannot close it or open another."""
    text = _TURN_TAG.sub(_DEFUSED, content)
    return f'<turn role="{html.escape(role, quote=True)}">\n{text}\n</turn>'


def frame_passage(passage: Passage) -> str:
    """The passage as a `<passage>` element with escaped attributes, whose text can neither
    close it nor open another (`</PASSAGE >`, `< /passages>` ... are defused)."""
    pages = ""
    if passage.page_start is not None:
        pages = f' pages="{int(passage.page_start)}-{int(passage.page_end or passage.page_start)}"'
    if passage.location:
        pages += f' location="{html.escape(passage.location, quote=True)}"'
    source = html.escape(passage.source_name, quote=True)
    text = _FRAME_TAG.sub(_DEFUSED, readable(passage.text))
    return f'<passage number="{int(passage.number)}" source="{source}"{pages}>\n{text}\n</passage>'


def pack_context(
    passages: list[Passage], budget_tokens: int, count_tokens: Callable[[str], int]
) -> tuple[str, list[Passage]]:
    """Frame passages best first until the token budget is spent; returns (context, used)."""
    used: list[Passage] = []
    pieces: list[str] = []
    spent = 0
    for passage in passages:
        framed = frame_passage(passage)
        cost = count_tokens(framed)
        if used and spent + cost > budget_tokens:
            break
        used.append(passage)
        pieces.append(framed)
        spent += cost
    return "\n\n".join(pieces), used
