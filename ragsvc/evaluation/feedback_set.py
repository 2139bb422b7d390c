"""`ragsvc export eval`: the questions people rated up, as a BEIR-style set, so that
`ragsvc eval retrieval` (and `eval tune`) can guard retrieval on the users' own questions.

    DIR/corpus.jsonl      every document of the collections the questions searched, its text
                          put back together from its chunks (by character offsets)
    DIR/queries.jsonl     one per distinct question (PII redacted)
    DIR/qrels/test.tsv    question → the documents its good answer cited (grade 1)
    DIR/qrels/train.tsv   the same for the other half of the questions (by a hash of the
                          question), when there are at least `MIN_FOR_TRAIN`; else all go to test

Only answers rated up count: a corrected answer cited the wrong passages, or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indexes import Catalog
from ragsvc.interactions.finetune import normalised_question, split_of
from ragsvc.interactions.log import read_rated, redact

MIN_FOR_TRAIN = 10


def export_eval(
    catalog: Catalog, data_dir: Path, out: Path, *, since: str | None = None
) -> dict[str, Any]:
    owner = catalog.chunk_documents()
    queries: dict[str, tuple[str, set[int]]] = {}
    collections: set[str] | None = set()
    dropped = 0
    for rated in reversed(read_rated(data_dir, rating="up", since=since)):  # newest wins
        interaction = rated.interaction
        key = normalised_question(interaction.question)
        documents = {owner[c] for c in interaction.cited_chunk_ids if c in owner}
        if key in queries or not documents:
            dropped += 1
            continue
        queries[key] = (interaction.question, documents)
        if interaction.collection is not None:
            if collections is not None:
                collections.add(interaction.collection)
        elif interaction.scope is not None:
            if collections is not None:
                collections.update(interaction.scope)
        else:
            collections = None  # a question over every collection: the corpus is all of them
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    corpus = _write_corpus(catalog, out / "corpus.jsonl", collections)
    splits = {"test": [], "train": []}  # type: dict[str, list[tuple[str, set[int]]]]
    ordered = sorted(queries.values(), key=lambda q: normalised_question(q[0]))
    for number, (question, documents) in enumerate(ordered, start=1):
        query_id = f"q{number}"
        half = "test" if len(ordered) < MIN_FOR_TRAIN or split_of(question) != "train" else "train"
        splits[half].append((query_id, documents))
    with open(out / "queries.jsonl", "w", encoding="utf-8") as handle:
        for number, (question, _) in enumerate(ordered, start=1):
            handle.write(json.dumps({"_id": f"q{number}", "text": redact(question)}) + "\n")
    for name, rows in splits.items():
        with open(out / "qrels" / f"{name}.tsv", "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for query_id, documents in rows:
                for document in sorted(documents):
                    handle.write(f"{query_id}\t{document}\t1\n")
    return {
        "queries": len(ordered),
        "test": len(splits["test"]),
        "train": len(splits["train"]),
        "documents": corpus,
        "dropped": dropped,
        "collections": None if collections is None else sorted(collections),
    }


def _write_corpus(catalog: Catalog, path: Path, collections: set[str] | None) -> int:
    documents = catalog.all_documents(None if collections is None else sorted(collections))
    with open(path, "w", encoding="utf-8") as handle:
        for document in documents:
            chunks = sorted(
                (c.char_start, c.char_end, c.text) for c in catalog.document_chunks(document.id)
            )
            title = (document.metadata or {}).get("title", "")
            record = {
                "_id": str(document.id),
                "title": title if isinstance(title, str) else "",
                "text": stitch(chunks),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(documents)


def stitch(chunks: list[tuple[int, int, str]]) -> str:
    """A document's text from its chunks (start, end, text), overlaps written once and gaps
    (text that fell between chunks) as a blank line."""
    parts: list[str] = []
    reached = 0
    for start, end, text in chunks:
        if end <= reached:
            continue
        if start > reached and parts:
            parts.append("\n\n")
        parts.append(text[max(0, reached - start) :])
        reached = end
    return "".join(parts)
