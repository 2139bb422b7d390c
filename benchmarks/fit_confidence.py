"""Fit the extractive answerer's confidence (`CALIBRATION`) on one half of
`bench_pdf_answers.py`'s records and show what it does on both halves.

    python benchmarks/fit_confidence.py /tmp/eval-pdf-answers/records.json \
        [--thresholds 0.3,0.4,0.5]

The confidence is a logistic regression of "the candidate answer is right" (an unanswerable
question's candidate never is) on the evidence (`Evidence`: passage, sentence, lead, kind),
fitted by Newton's method with a little L2 regularisation on the `choose` half's records,
clean text and PDFs together, so that it holds for both. Printed: the coefficients to put in
`CALIBRATION`, then for each half and collection the figures `bench_pdf_answers.py` reports,
scored again with the fitted confidence and each abstention threshold, and the balanced
figure the threshold is chosen by on the `choose` half (the mean of the share of answerable
questions answered with a cited gold answer and the share of unanswerable ones abstained on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_pdf_answers import figures  # noqa: E402
from benchmarks.report import table  # noqa: E402

NAMES = ("bias", "passage", "sentence", "lead", "kind")
L2 = 1e-3


def fit(features: np.ndarray, right: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Logistic regression weights (bias first) by Newton's method."""
    x = np.hstack([np.ones((len(features), 1)), features])
    weights = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ weights)))
        gradient = x.T @ (p - right) + L2 * np.r_[0, weights[1:]]
        hessian = (x.T * (p * (1 - p))) @ x + L2 * np.diag(np.r_[0, np.ones(len(weights) - 1)])
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-9:
            break
    return weights


def _balanced(records: list[dict]) -> float:
    """The mean of the share of answerable questions answered with a cited gold answer and
    the share of unanswerable ones abstained on: what the abstention threshold trades."""
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    cited = sum(r["cited"] and not r["abstained"] for r in answerable) / max(len(answerable), 1)
    abstained = sum(r["abstained"] for r in unanswerable) / max(len(unanswerable), 1)
    return (cited + abstained) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--thresholds", default="0.3,0.4,0.5")
    args = parser.parse_args()
    records = [r for r in json.loads(args.records.read_text()) if r["evidence"] is not None]
    choose = [r for r in records if r["half"] == "choose"]
    weights = fit(
        np.array([r["evidence"] for r in choose]), np.array([r["right"] for r in choose], float)
    )
    print(
        "CALIBRATION = Calibration("
        + ", ".join(f"{name}={value:.3f}" for name, value in zip(NAMES, weights, strict=True))
        + ")\n"
    )
    for record in records:
        z = weights[0] + float(np.dot(weights[1:], record["evidence"]))
        record["confidence"] = 1 / (1 + np.exp(-z))
    for threshold in (float(t) for t in args.thresholds.split(",")):
        rows = []
        for half in ("choose", "report"):
            for collection in ("clean", "pdf"):
                kept = [
                    {**r, "abstained": r["confidence"] < threshold}
                    for r in records
                    if r["half"] == half and r["collection"] == collection
                ]
                values = figures(kept)
                rows.append(
                    [f"{half} {collection}"]
                    + [
                        f"{values[name]:.4f}"
                        for name in (
                            "cited hold gold",
                            "answer holds gold",
                            "AUROC answerable vs not",
                            "AUROC right vs wrong",
                            "expected calibration error",
                            "mean confidence, wrong",
                            "mean confidence, right",
                        )
                    ]
                    + [f"{_balanced(kept):.4f}"]
                )
        print(f"abstention under {threshold}\n")
        table(
            [
                *("half", "cited", "answer", "AUROC ans.", "AUROC right", "ECE", "wrong"),
                *("right", "balanced"),
            ],
            rows,
        )


if __name__ == "__main__":
    main()
