"""Follow-up questions: the conversation so far, bounded, and the standalone question that is
searched for a follow-up ("When was it signed?" after "What ended the War of 1812?").

Without an LLM, the standalone form is the follow-up followed by the user's previous
questions, most recent first (`PREVIOUS_QUESTIONS` of them): the words the follow-up leans on
("the War of 1812") reach both retrievers, after the follow-up's own, whose words lead the
query. Measured in `benchmarks/bench_conversation.py` (RESULTS.md). With an LLM backend, the
backend rewrites the follow-up with the versioned `condense` template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PREVIOUS_QUESTIONS = 1
"""How many of the user's earlier questions the no-LLM standalone form adds."""


class Turn(msgspec.Struct, frozen=True):
    """One earlier message of the conversation: a user question or the answer given."""

    role: Literal["user", "assistant"]
    content: Annotated[str, Meta(max_length=20_000)]


def bounded(history: Sequence[Turn], max_turns: int, max_chars: int) -> list[Turn]:
    """The most recent turns that fit both bounds; the oldest go first."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history[-max_turns:] if max_turns else []):
        used += len(turn.content)
        if used > max_chars:
            break
        kept.append(turn)
    return kept[::-1]


def standalone(question: str, history: Sequence[Turn]) -> str:
    """The no-LLM standalone form of `question` after `history`."""
    previous = [t.content.strip() for t in history if t.role == "user" and t.content.strip()]
    recent = previous[::-1][:PREVIOUS_QUESTIONS]
    return " ".join([question.strip(), *recent])
