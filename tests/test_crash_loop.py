"""The kill loop of `benchmarks/crash_loop.py`, with a few rounds: SIGKILL the server or its
worker at random moments during uploads; every acknowledged upload is stored exactly once,
the indexes agree with the store, and SQLite's integrity check passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash_loop import check_store, crash_rounds


@pytest.mark.slow
def test_kill_loop_loses_nothing_acknowledged_and_stores_nothing_twice(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    report = crash_rounds(data, log, rounds=4, batch=10, seed=3)
    assert report.server_kills and report.worker_kills  # seed 3 does both
    assert report.acknowledged
    counts = check_store(data, log, report)
    assert counts["documents"] >= len(report.acknowledged) + 1  # the probe as well
