"""The gate of a model change (`ragsvc rebuild --reembed --gate BEIR_DIR`): the serving model
and the new one evaluated on the same labelled queries, and the new one let in only if it is
not worse, by the paired check `eval retrieval --baseline` makes (`ranking.regressions`).

Each model's copy of the labelled corpus is kept in its own folder under the data directory's
`gate/`, so a second gate with the same models embeds nothing again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ragsvc.evaluation import ranking
from ragsvc.factory import make_embedder, open_catalog
from ragsvc.settings import Settings

GATE_DIRECTORY = "gate"
METRIC = "ndcg@10"
K = 10


class GateResult(msgspec.Struct, frozen=True):
    passed: bool
    dataset: str
    split: str
    queries: int
    mode: str
    old_model: str
    new_model: str
    old_ndcg: float
    new_ndcg: float
    failures: list[str]
    """Why the new model was refused: each metric it is worse on, with the paired test."""

    def summary(self) -> str:
        verdict = "passed" if self.passed else "refused"
        return (
            f"gate {verdict} on {self.dataset} {self.split} ({self.queries} queries, {self.mode}):"
            f" nDCG@10 {self.old_ndcg:.4f} with {self.old_model}, {self.new_ndcg:.4f} with "
            f"{self.new_model}"
        )


def gate(
    settings: Settings,
    old_model: str,
    new_model: str,
    beir: Path,
    *,
    split: str = "test",
    tolerance: float = 0.01,
    on_step: Callable[[str], None] | None = None,
) -> GateResult:
    """Evaluate both models (names that load them) on the split of the BEIR folder `beir`."""
    step = on_step or (lambda _: None)
    corpus = beir / "corpus.jsonl"
    if not corpus.is_file() or not (beir / "qrels" / f"{split}.tsv").is_file():
        raise ValueError(f"{beir} is not a BEIR folder with split {split!r}")
    queries, qrels = ranking.load_beir(beir, split)
    if not queries:
        raise ValueError(f"split {split!r} of {beir} has no judged queries")
    mode = settings.retrieval_mode
    reports: list[dict[str, Any]] = []
    ids: list[str] = []
    for name in (old_model, new_model):
        folder = settings.data_path / GATE_DIRECTORY / _slug(f"{beir.resolve().name}-{name}")
        model_settings = msgspec.structs.replace(
            settings, embedding_model=name, data_dir=str(folder)
        )
        embedder = make_embedder(model_settings)
        ids.append(embedder.model_id)
        with open_catalog(model_settings, embedder) as catalog:
            step(f"gate: embedding {corpus} with {embedder.model_id} (known texts are skipped)")
            ranking.ingest_corpus(catalog, model_settings, corpus)
            step(f"gate: {len(queries)} {split} queries with {embedder.model_id}")
            modes = ranking.evaluate(catalog, embedder, model_settings, queries, qrels, [mode], K)
        reports.append({"modes": modes, "query_ids": list(queries)})
    old, new = reports
    failures = ranking.regressions(new, old, tolerance)
    return GateResult(
        passed=not failures,
        dataset=beir.resolve().name,
        split=split,
        queries=len(queries),
        mode=mode,
        old_model=ids[0],
        new_model=ids[1],
        old_ndcg=float(old["modes"][mode][METRIC]),
        new_ndcg=float(new["modes"][mode][METRIC]),
        failures=failures,
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_")[-120:]
