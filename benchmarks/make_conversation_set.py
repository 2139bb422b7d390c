"""Build the multi-turn set `benchmarks/data/conversations.jsonl` from XQuAD: on each paragraph,
a first question and the next one, the next written as a person writes a follow-up.

    python benchmarks/make_conversation_set.py ../shared/datasets/xquad_en/xquad.en.json

The procedure: for consecutive questions Q1, Q2 on one paragraph, a phrase of Q2 that Q1 also
holds (1 to 5 words; not only stop words; at least one word capitalised or of six or more
letters) is what Q2 speaks of again. It becomes "it" (with its article: "the Treaty of Ghent"
→ "it"), and so do the next longest such phrases of Q1 or of its answer, up to
`MAX_REFERENCES`, as a person does not name again what was just named. A pair with no phrase
shared with Q1 is left out. Each record keeps the first turn (the
question and its gold answer as the assistant's reply), the follow-up, the original Q2, the
paragraph that answers it and its answers. The set is deterministic: the same file from the
same data.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragsvc.evaluation.answers import load_squad  # noqa: E402

OUT = ROOT / "benchmarks" / "data" / "conversations.jsonl"
STOP_WORDS = (
    "a an the of in on at to for by with from and or as is was were are be been did does "
    "do what which who whom whose when where why how many much that this these those it "
    "its their his her they he she there than then into about after before during"
)
STOP = set(STOP_WORDS.split())
MAX_REFERENCES = 3
"""Phrases at most that a follow-up leaves to the conversation."""
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


def shared_phrase(first: str, second: str) -> tuple[int, int] | None:
    """The character span in `second` of its longest phrase that `first` also holds."""
    words = list(WORD.finditer(second))
    lowered = " " + " ".join(w.group(0).lower() for w in WORD.finditer(first)) + " "
    for size in range(5, 0, -1):
        for start in range(len(words) - size + 1):
            run = words[start : start + size]
            tokens = [w.group(0) for w in run]
            if all(t.lower() in STOP for t in tokens) or tokens[0].lower() in STOP:
                continue
            if tokens[-1].lower() in STOP:
                continue
            if not any(
                (t[0].isupper() and start + i > 0) or len(t) >= 6 for i, t in enumerate(tokens)
            ):
                continue
            if f" {' '.join(t.lower() for t in tokens)} " in lowered:
                begin = run[0].start()
                before = second[:begin].rstrip()
                article = before.lower().split()[-1:] == ["the"] or before.lower().split()[-1:] in (
                    ["a"],
                    ["an"],
                )
                if article:
                    begin = len(before) - len(before.split()[-1])
                return begin, run[-1].end()
    return None


def follow_up(first: str, answer: str, second: str) -> str | None:
    """`second` as a follow-up of the first turn: every phrase of it that the first question
    or its answer already said becomes "it", longest first, as a person does not name again
    what the conversation has just named."""
    said = f"{first} {answer}"
    if shared_phrase(first, second) is None:
        return None
    text = second
    for _ in range(MAX_REFERENCES):
        span = shared_phrase(said, text)
        if span is None:
            break
        begin, end = span
        text = text[:begin] + "it" + text[end:]
    text = re.sub(r"\bit's\b", "its", text)
    return text[0].upper() + text[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    records = []
    for article in load_squad(args.squad):
        by_paragraph: dict[int, list] = {}
        for question in article.questions:
            by_paragraph.setdefault(question.paragraph, []).append(question)
        for paragraph, questions in sorted(by_paragraph.items()):
            for first, second in itertools.pairwise(questions):
                written = follow_up(first.text, first.answers[0], second.text)
                if written is None or written == second.text:
                    continue
                records.append(
                    {
                        "id": second.id,
                        "article": article.title,
                        "paragraph": paragraph,
                        "history": [
                            {"role": "user", "content": first.text},
                            {"role": "assistant", "content": first.answers[0]},
                        ],
                        "follow_up": written,
                        "original": second.text,
                        "answers": second.answers,
                    }
                )
                break  # one pair a paragraph
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{len(records)} follow-ups written to {args.out}")


if __name__ == "__main__":
    main()
