"""Follow-up questions: retrieval recall@5 of follow-ups asked bare, asked with the conversation
(the standalone form ragsvc searches), and of the standalone original questions, on the
committed multi-turn set built from XQuAD (`make_conversation_set.py`).

    python benchmarks/bench_conversation.py ../shared/datasets/xquad_en/xquad.en.json

The paragraphs of every XQuAD article go into a fresh store (hybrid retrieval, the defaults);
a follow-up is found when its paragraph is among the five best chunks' documents.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexes import SearchFilter  # noqa: E402
from ragsvc.answering.conversation import Turn, standalone  # noqa: E402
from ragsvc.evaluation.answers import COLLECTION, ingest_articles, load_squad  # noqa: E402
from ragsvc.factory import make_query_embedder, open_catalog  # noqa: E402
from ragsvc.retrieval.retriever import retrieve  # noqa: E402
from ragsvc.settings import Settings  # noqa: E402

SET = ROOT / "benchmarks" / "data" / "conversations.jsonl"
K = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--set", type=Path, default=SET)
    args = parser.parse_args()
    records = [json.loads(line) for line in args.set.read_text(encoding="utf-8").splitlines()]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    print(f"commit {commit}; {len(records)} follow-ups; k = {K}")
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=str(Path(folder) / "data"))
        started = time.perf_counter()
        embedder = make_query_embedder(settings)
        with open_catalog(settings, embedder) as catalog:
            count = ingest_articles(catalog, settings, load_squad(args.squad))
            catalog.refresh()
            print(f"indexed {count} paragraphs in {time.perf_counter() - started:.0f} s\n")
            asked = {"bare follow-up": 0, "with the conversation": 0, "standalone original": 0}
            for record in records:
                gold = f"{record['article']} #{record['paragraph'] + 1}"
                history = [Turn(t["role"], t["content"]) for t in record["history"]]
                queries = {
                    "bare follow-up": record["follow_up"],
                    "with the conversation": standalone(record["follow_up"], history),
                    "standalone original": record["original"],
                }
                for name, text in queries.items():
                    hits = retrieve(
                        catalog,
                        embedder,
                        settings,
                        text,
                        k=K,
                        filters=SearchFilter(collection=COLLECTION),
                    ).hits
                    asked[name] += any(hit.source_name == gold for hit in hits)
    recall = {name: found / len(records) for name, found in asked.items()}
    print("| asked as | recall@5 |")
    print("|---|---|")
    for name, value in recall.items():
        print(f"| {name} | {value:.3f} |")
    original = recall["standalone original"]
    print(
        f"\nwith the conversation / standalone original: "
        f"{recall['with the conversation'] / original:.3f} (target >= 0.9); "
        f"with the conversation - bare: "
        f"{recall['with the conversation'] - recall['bare follow-up']:+.3f} (target >= +0.15)"
    )


if __name__ == "__main__":
    main()
