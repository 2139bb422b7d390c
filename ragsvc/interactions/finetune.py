"""Fine-tuning data from the answers people rated: `ragsvc export finetune` and
`ragsvc export validate`.

    interaction log (+ feedback) ─▶ rated answers ─▶ records ─▶ redact ─▶ validate
        ─▶ drop exact and near duplicates ─▶ split by question ─▶ train / validation / test

A record is one chat in the format most fine-tuning services take:
`{"messages": [system (the instruction and the retrieved passages), user (the question),
assistant (the answer, or the correction a reader gave)]}`. The passages are read back from
the store by the chunk ids the log kept; an answer whose passages were deleted since is
dropped. E-mail addresses, card and phone numbers are redacted in every message. A question
that appears twice (or nearly: the same words, in any order, at a Jaccard overlap of
`NEAR_DUPLICATE` or more) is kept once, the most recent rating winning, so a question can never
land in two splits; the split is chosen by a hash of the question, so it does not move when
more data is exported later. Every record must pass `check_record`, the same checks
`ragsvc export validate` runs on any JSONL file; what is dropped is reported with its reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from indexes import Catalog
from ragsvc.interactions.log import Rated, read_rated, redact

ROLES = ("system", "user", "assistant")
NEAR_DUPLICATE = 0.8
SPLITS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
SYSTEM_PROMPT = (
    "Answer the question using only the numbered passages below, and cite the passages you "
    "use as [n]. If they do not contain the answer, say that the documents do not say."
)
_WORD = re.compile(r"\w+", re.UNICODE)

MinRating = Literal["up", "any"]
TokenCounter = Callable[[str], int]


def token_counter() -> TokenCounter:
    """Tokens as the default embedding model's tokenizer counts them (an estimate for the
    model being fine-tuned), or words and punctuation where that tokenizer is not at hand."""
    try:
        from tokenizers import Tokenizer

        from ingest.embed.sentence_transformer import DEFAULT_MODEL, resolve_model

        tokenizer = Tokenizer.from_file(
            str(Path(resolve_model(DEFAULT_MODEL)[0]) / "tokenizer.json")
        )
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    except Exception:
        return lambda text: len(re.findall(r"\w+|[^\w\s]", text))


def check_record(record: Any, count_tokens: TokenCounter, max_tokens: int) -> str | None:
    """Why `record` is not a valid chat example, or None when it is."""
    if not isinstance(record, dict):
        return f"a record must be a JSON object, not {type(record).__name__}"
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'no "messages" list, or it is empty'
    total = 0
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return f"message {number} is not an object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"message {number}: role {role!r} is not one of {', '.join(ROLES)}"
        if role == "system" and number != 1:
            return f"message {number}: a system message may only come first"
        if not isinstance(content, str) or not content.strip():
            return f"message {number} ({role}) has empty content"
        total += count_tokens(content)
    if not any(m.get("role") == "user" for m in messages):
        return "no user message"
    if messages[-1].get("role") != "assistant":
        return f"the last message is from the {messages[-1].get('role')}, not the assistant"
    if total > max_tokens:
        return f"{total} tokens, over the limit of {max_tokens}"
    return None


def validate_file(
    path: Path, max_tokens: int, count_tokens: TokenCounter | None = None
) -> tuple[int, list[tuple[int, str]]]:
    """(valid records, [(line number, defect)]) of a JSONL file of chat records."""
    count_tokens = count_tokens or token_counter()
    valid = 0
    defects: list[tuple[int, str]] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                defects.append((number, "empty line"))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                defects.append((number, f"not JSON: {error.msg} (column {error.colno})"))
                continue
            reason = check_record(record, count_tokens, max_tokens)
            if reason is None:
                valid += 1
            else:
                defects.append((number, reason))
    return valid, defects


def normalised_question(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def split_of(question: str) -> str:
    """train, validation or test, by a stable hash of the normalised question."""
    digest = hashlib.sha256(normalised_question(question).encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    for name, share in SPLITS:
        if position < share:
            return name
        position -= share
    return SPLITS[-1][0]


@dataclass
class ExportReport:
    written: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _ in SPLITS})
    dropped: list[dict[str, str]] = field(default_factory=list)

    def drop(self, rated: Rated, reason: str) -> None:
        self.dropped.append({"request_id": rated.interaction.request_id, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for entry in self.dropped:
            kind = entry["reason"].split(":")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        return {"written": self.written, "dropped_by_reason": reasons, "dropped": self.dropped}


def wanted(rated: Rated, min_rating: MinRating) -> bool:
    feedback = rated.feedback
    if feedback is None:
        return False
    return min_rating == "any" or feedback.rating == "up" or bool(feedback.correction)


def export_finetune(
    catalog: Catalog,
    data_dir: Path,
    out: Path,
    *,
    min_rating: MinRating = "up",
    since: str | None = None,
    max_tokens: int = 4096,
    count_tokens: TokenCounter | None = None,
) -> ExportReport:
    count_tokens = count_tokens or token_counter()
    report = ExportReport()
    candidates = [r for r in read_rated(data_dir, since=since) if wanted(r, min_rating)]
    # The newest rating of a question wins: walk newest first, keep the first of each.
    records: list[tuple[Rated, dict[str, Any]]] = []
    kept_words: list[tuple[set[str], str]] = []
    seen: dict[str, str] = {}
    for rated in reversed(candidates):
        question = rated.interaction.question
        key = normalised_question(question)
        if key in seen:
            report.drop(rated, f"duplicate: the same question as {seen[key]}")
            continue
        words = set(key.split())
        near = next(
            (rid for other, rid in kept_words if _jaccard(words, other) >= NEAR_DUPLICATE), None
        )
        if near is not None:
            report.drop(rated, f"near duplicate: nearly the same question as {near}")
            continue
        record = _record(catalog, rated)
        if isinstance(record, str):
            report.drop(rated, record)
            continue
        reason = check_record(record, count_tokens, max_tokens)
        if reason is not None:
            report.drop(rated, f"invalid: {reason}")
            continue
        seen[key] = rated.interaction.request_id
        kept_words.append((words, rated.interaction.request_id))
        records.append((rated, record))
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {name: [] for name, _ in SPLITS}
    for rated, record in reversed(records):  # oldest first in the files
        split = split_of(rated.interaction.question)
        lines[split].append(json.dumps(record, ensure_ascii=False) + "\n")
        report.written[split] += 1
    for name, written in lines.items():
        (out / f"{name}.jsonl").write_text("".join(written), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def _record(catalog: Catalog, rated: Rated) -> dict[str, Any] | str:
    """The chat record of a rated answer, or why there is none."""
    interaction, feedback = rated.interaction, rated.feedback
    answer = (feedback.correction if feedback else None) or interaction.answer
    if not answer:
        return "no answer: the log holds no answer text for it (logged before answers were kept)"
    if not interaction.chunk_ids:
        return "no passages: the answer was given without retrieved passages"
    hits = {hit.chunk_id: hit for hit in catalog.hits([(c, 0.0) for c in interaction.chunk_ids])}
    if len(hits) < len(interaction.chunk_ids):
        return "passages gone: its documents were deleted or replaced since"
    passages = "\n\n".join(
        f"[{number}] {hits[chunk_id].text}"
        for number, chunk_id in enumerate(interaction.chunk_ids, start=1)
    )
    return {
        "messages": [
            {"role": "system", "content": redact(f"{SYSTEM_PROMPT}\n\n{passages}")},
            {"role": "user", "content": redact(interaction.question)},
            {"role": "assistant", "content": redact(answer)},
        ]
    }


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / len(a | b)
