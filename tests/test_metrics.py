"""Metrics against examples computed by hand."""

from __future__ import annotations

import math

import pytest

from ragsvc.evaluation.ranking_metrics import auroc, mrr_at_k, ndcg_at_k, percentile, recall_at_k


def test_ndcg_by_hand() -> None:
    relevance = {"a": 1, "b": 1}
    # Relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4) = 0.63093 + 0.5;
    # ideal DCG = 1/log2(2) + 1/log2(3) = 1 + 0.63093.
    assert ndcg_at_k(["x", "a", "b"], relevance, 10) == pytest.approx(1.13093 / 1.63093, abs=1e-5)
    assert ndcg_at_k(["a", "b", "x"], relevance, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], relevance, 10) == 0.0
    assert ndcg_at_k(["x", "a"], relevance, 1) == 0.0  # the cut-off applies
    graded = {"a": 3, "b": 1}
    # Ranking b, a: (1/1 + 3/log2(3)) / (3/1 + 1/log2(3)).
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], graded, 10) == pytest.approx(expected)


def test_recall_and_mrr_by_hand() -> None:
    relevance = {"a": 1, "b": 1, "c": 1, "z": 0}
    assert recall_at_k(["a", "x", "b", "z"], relevance, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "x", "b", "z"], relevance, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(["x", "z", "c"], relevance, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "z", "c"], relevance, 2) == 0.0
    assert recall_at_k(["a"], {}, 10) == 0.0


def test_auroc_by_hand() -> None:
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == 0.0
    # Pairs: (0.6 vs 0.5) win, (0.6 vs 0.7) loss, (0.4 vs 0.5) loss, (0.4 vs 0.7) loss.
    assert auroc([0.6, 0.4], [0.5, 0.7]) == pytest.approx(0.25)
    assert auroc([0.5], [0.5]) == pytest.approx(0.5)  # a tie counts half
    assert math.isnan(auroc([], [0.1]))


def test_percentile_by_hand() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 0) == 10.0 and percentile(values, 100) == 40.0
    assert percentile(values, 95) == pytest.approx(38.5)
