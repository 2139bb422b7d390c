"""Uncertainty in the evaluations: confidence intervals for every figure, and a paired test
for comparing two runs over the same queries.

- `bootstrap_interval`: the mean of per-query values (nDCG, recall, MRR) with a 95% interval
  from resampling the queries (percentile bootstrap, fixed seed, so a report is reproducible).
- `wilson_interval`: a proportion (answers that contain the gold answer) with the Wilson score
  interval, which behaves near 0 and 1 where the normal approximation does not.
- `paired_test`: whether run B is worse than run A on the same queries: the mean per-query
  difference, its bootstrap interval, and a one-sided p-value from a sign-flip permutation
  test. Queries on which both runs score the same (ties reshuffled, nothing changed) carry no
  weight, so a shuffle of tied documents is not called a regression, and a drop spread over
  many queries is, even when each drop is small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

RESAMPLES = 2000
SEED = 20261203
Z_95 = 1.959963984540054


class Interval(NamedTuple):
    value: float
    low: float
    high: float

    def rounded(self, digits: int = 4) -> list[float]:
        return [round(self.value, digits), round(self.low, digits), round(self.high, digits)]


class PairedResult(NamedTuple):
    difference: Interval
    """Mean of (B - A) per query, with its 95% bootstrap interval."""
    p_value: float
    """One-sided: the chance of a mean difference this low if B were no worse than A."""
    changed: int
    """Queries on which the two runs differ."""

    def worse(self, alpha: float = 0.05, tolerance: float = 0.0) -> bool:
        """B is worse than A: the drop is significant at `alpha` and larger than `tolerance`."""
        return self.p_value < alpha and self.difference.value < -tolerance


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, resamples: int = RESAMPLES
) -> Interval:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(SEED)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(data.mean()), float(low), float(high))


def wilson_interval(successes: int, total: int) -> Interval:
    if total == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    share = successes / total
    z2 = Z_95 * Z_95
    centre = (share + z2 / (2 * total)) / (1 + z2 / total)
    half = (
        Z_95 * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    )
    return Interval(share, max(0.0, centre - half), min(1.0, centre + half))


def paired_test(
    baseline: Sequence[float], candidate: Sequence[float], resamples: int = RESAMPLES
) -> PairedResult:
    """Is `candidate` worse than `baseline`? Both list one value per query, in one order."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same queries ({a.size} against {b.size})")
    differences = b - a
    observed = float(differences.mean()) if differences.size else 0.0
    changed = differences[np.abs(differences) > 1e-12]
    if changed.size == 0:
        return PairedResult(Interval(0.0, 0.0, 0.0), 1.0, 0)
    rng = np.random.default_rng(SEED)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, changed.size))
    permuted = (signs * changed).sum(axis=1) / differences.size
    p_value = float((np.sum(permuted <= observed) + 1) / (resamples + 1))
    return PairedResult(bootstrap_interval(differences, resamples), p_value, int(changed.size))
