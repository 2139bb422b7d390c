"""Intervals and the paired regression check of `ragsvc eval`: a real drop in ranking quality
is flagged, a reshuffle of tied documents is not."""

from __future__ import annotations

import numpy as np

from ragsvc.evaluation.ranking import regressions
from ragsvc.evaluation.ranking_metrics import ndcg_at_k
from ragsvc.evaluation.statistics import bootstrap_interval, paired_test, wilson_interval
from ragsvc.evaluation.tuning import documents

QUERIES = 300


def _tied_scores(rng: np.random.Generator) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Forty documents with coarse scores (many ties); two of them relevant."""
    docs = [f"d{i}" for i in range(40)]
    scores = rng.integers(0, 6, size=len(docs)).astype(float)
    relevant = rng.choice(len(docs), size=2, replace=False)
    scores[relevant] += rng.integers(0, 3, size=2)  # relevant ones tend to rank high
    return docs, {docs[i]: 1 for i in relevant}, scores


def _rank(docs: list[str], scores: np.ndarray, tie_order: np.ndarray) -> list[str]:
    """Documents by score, ties broken by `tie_order` (a permutation)."""
    return [docs[i] for i in np.lexsort((tie_order, -scores))]


def _runs() -> tuple[list[float], list[float], list[float]]:
    rng = np.random.default_rng(7)
    baseline, shuffled, dropped = [], [], []
    for query in range(QUERIES):
        docs, relevance, scores = _tied_scores(rng)
        ranking = _rank(docs, scores, np.arange(len(docs)))
        baseline.append(ndcg_at_k(ranking, relevance, 10))
        reshuffled = _rank(docs, scores, rng.permutation(len(docs)))
        shuffled.append(ndcg_at_k(reshuffled, relevance, 10))
        worse = list(ranking)
        if query % 3 == 0:  # a third of the queries: each relevant document three places down
            for doc in [d for d in ranking if d in relevance]:
                position = worse.index(doc)
                worse.insert(min(position + 3, len(worse) - 1), worse.pop(position))
        dropped.append(ndcg_at_k(worse, relevance, 10))
    return baseline, shuffled, dropped


def test_the_paired_check_flags_a_real_drop_and_not_a_shuffle_of_ties() -> None:
    baseline, shuffled, dropped = _runs()
    tie_change = paired_test(baseline, shuffled)
    assert tie_change.changed > 50  # the shuffle did move per-query values, both ways
    assert not tie_change.worse()
    drop = paired_test(baseline, dropped)
    assert drop.worse()
    assert drop.p_value < 0.01
    assert drop.difference.high < 0 < float(np.mean(baseline)) - float(np.mean(dropped))
    assert paired_test(baseline, baseline).p_value == 1.0


def test_regressions_use_the_paired_check_when_both_reports_have_per_query_values() -> None:
    baseline, shuffled, dropped = _runs()
    ids = [str(i) for i in range(QUERIES)]

    def report(values: list[float]) -> dict[str, object]:
        mean = round(float(np.mean(values)), 4)
        return {
            "query_ids": ids,
            "modes": {"hybrid": {"ndcg@10": mean, "per_query": {"ndcg@10": values}}},
        }

    assert regressions(report(shuffled), report(baseline), tolerance=0.0) == []
    [line] = regressions(report(dropped), report(baseline), tolerance=0.0)
    assert line.startswith("hybrid ndcg@10") and "p = " in line
    # A drop below the tolerance is not worth failing a build over, significant or not.
    gap = float(np.mean(baseline)) - float(np.mean(dropped))
    assert regressions(report(dropped), report(baseline), tolerance=gap + 0.01) == []
    # An older baseline without per-query values: the plain threshold.
    old = {"modes": {"hybrid": {"ndcg@10": round(float(np.mean(baseline)), 4)}}}
    assert regressions(report(dropped), old, tolerance=0.001)
    assert regressions(report(shuffled), old, tolerance=0.05) == []


def test_intervals() -> None:
    wide = bootstrap_interval([0.0, 1.0] * 10)
    narrow = bootstrap_interval([0.0, 1.0] * 500)
    assert wide.low < 0.5 < wide.high and narrow.low < 0.5 < narrow.high
    assert narrow.high - narrow.low < (wide.high - wide.low) / 3
    share = wilson_interval(937, 993)
    assert abs(share.value - 937 / 993) < 1e-12
    assert 0.925 < share.low < share.value < share.high < 0.958
    assert wilson_interval(0, 20).low == 0.0 and wilson_interval(20, 20).high == 1.0


def test_documents_rank_by_best_chunk_or_with_a_share_of_the_others() -> None:
    owner = {1: "a", 2: "b", 3: "b", 4: "c"}
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.1)]
    assert documents(ranked, owner, 0.0) == ["a", "b", "c"]
    assert documents(ranked, owner, 0.5) == ["b", "a", "c"]  # 0.8 + 0.35 > 0.9
