"""`ragsvc sync DIR`: each run reports exactly what changed in the folder since the last one,
a run with nothing to do says so (without loading the model), documents outside the folder
are left alone, and `--watch` picks up a new file within seconds."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.data import ROOT, dataset
from tests.support.processes import run_ragsvc

pytestmark = pytest.mark.slow


def _sync(data: Path, folder: Path, *extra: str) -> list[str]:
    result = run_ragsvc("--data-dir", str(data), "sync", str(folder), "--no-progress", *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_each_run_reports_exactly_the_change(tmp_path: Path) -> None:
    data, folder = tmp_path / "data", tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "tides.txt").write_text("The tide tables are printed weekly.")
    (folder / "sub" / "ferries.md").write_text("# Ferries\n\nFerries leave at nine.")
    other = tmp_path / "elsewhere.txt"
    other.write_text("An unrelated note about lighthouse keepers.")
    ingest = run_ragsvc("--data-dir", str(data), "ingest", str(other), "--no-progress")
    assert ingest.returncode == 0, ingest.stderr

    assert _sync(data, folder) == [
        "added     notes/sub/ferries.md",
        "added     notes/tides.txt",
        "2 added, 0 replaced, 0 deleted, 0 unchanged",
    ]
    assert _sync(data, folder) == ["nothing to do: 2 file(s) unchanged"]

    (folder / "tides.txt").write_text("The tide tables are now printed daily.")
    assert _sync(data, folder) == [
        "replaced  notes/tides.txt",
        "0 added, 1 replaced, 0 deleted, 1 unchanged",
    ]
    (folder / "sub" / "bikes.txt").write_text("Bikes ride free on every ferry.")
    assert _sync(data, folder) == [
        "added     notes/sub/bikes.txt",
        "1 added, 0 replaced, 0 deleted, 2 unchanged",
    ]
    (folder / "sub" / "ferries.md").unlink()
    started = time.monotonic()
    assert _sync(data, folder) == [
        "deleted   notes/sub/ferries.md",
        "0 added, 0 replaced, 1 deleted, 2 unchanged",
    ]
    assert _sync(data, folder) == ["nothing to do: 2 file(s) unchanged"]
    print(f"delete + idle sync: {time.monotonic() - started:.1f} s")

    found = run_ragsvc("--data-dir", str(data), "search", "when do ferries leave", "-k", "10")
    assert "ferries.md" not in found.stdout  # deleted documents are not searchable
    daily = run_ragsvc("--data-dir", str(data), "search", "how often are tide tables printed")
    assert "notes/tides.txt" in daily.stdout
    keepers = run_ragsvc("--data-dir", str(data), "search", "lighthouse keepers")
    assert "elsewhere.txt" in keepers.stdout  # outside the folder: untouched


def test_watch_picks_up_a_new_file_within_five_seconds(tmp_path: Path) -> None:
    data, folder = tmp_path / "data", tmp_path / "inbox"
    folder.mkdir()
    (folder / "first.txt").write_text("The harbour opens at seven.")
    command = [sys.executable, "-u", "-m", "ragsvc", "--data-dir", str(data), "sync",
               str(folder), "--watch", "--no-progress"]  # fmt: skip
    watcher = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()

    def wait_for(wanted: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if line == wanted:
                return
        raise AssertionError(f"no {wanted!r} within {seconds} s; saw {seen}")

    try:
        wait_for("added     inbox/first.txt", 120)  # loads the model first
        wait_for(f"watching {folder} (Ctrl-C stops)", 30)
        started = time.monotonic()
        (folder / "second.txt").write_text("The harbour closes at ten.")
        wait_for("added     inbox/second.txt", 5)
        print(f"picked up after {time.monotonic() - started:.1f} s")
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
        if watcher.stdout is not None:
            watcher.stdout.close()


def test_a_folder_that_does_not_exist_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = run_ragsvc("--data-dir", str(tmp_path / "data"), "sync", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such folder" in result.stderr
    assert not (tmp_path / "data" / "ragsvc.sqlite3").exists()  # nothing was created


def test_an_unreadable_file_is_not_tried_again_until_its_bytes_change(tmp_path: Path) -> None:
    data, folder = tmp_path / "data", tmp_path / "papers"
    folder.mkdir()
    for n in range(9):
        (folder / f"note-{n}.txt").write_text(f"Harbour note {n}: the ferry leaves at {n + 6}.")
    locked = dataset("pdf_samples", "pdfminer.six", "samples", "encryption", "rc4-40.pdf")
    (folder / "locked.pdf").write_bytes(locked.read_bytes())

    first = run_ragsvc("--data-dir", str(data), "sync", str(folder), "--no-progress")
    assert first.returncode != 0  # a new failure
    assert "failed    papers/locked.pdf (encrypted PDF: a password is required)" in first.stdout

    started = time.monotonic()
    second = run_ragsvc("--data-dir", str(data), "sync", str(folder), "--no-progress")
    seconds = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr  # nothing new failed
    assert second.stdout.strip().splitlines() == [
        "still unreadable (unchanged since the last try): papers/locked.pdf, "
        "encrypted PDF: a password is required",
        "nothing to do: 9 file(s) unchanged; 1 file(s) still unreadable (unchanged since the "
        "last try)",
    ]
    assert seconds < 2.0, f"a sync with nothing to extract took {seconds:.1f} s"

    # New bytes are tried again.
    (folder / "locked.pdf").write_bytes(locked.read_bytes() + b"\n% appended\n")
    third = run_ragsvc("--data-dir", str(data), "sync", str(folder), "--no-progress")
    assert "failed    papers/locked.pdf" in third.stdout
