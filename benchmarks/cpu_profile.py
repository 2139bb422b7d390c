"""Where a server's CPU goes, by stage of a request: py-spy samples the server's Python
threads while a load runs, and each sampled stack is named by the innermost frame that
belongs to a known stage (the query model, BM25, FAISS, the store's rows, serialisation...).

A sample shows what a runnable thread was doing; each thread's CPU time (from /proc) is
shared out over its own samples, so the stages add up to the server's CPU. Threads without
Python frames (the query runtime's own workers) are not sampled and are reported as such.
Figures are CPU milliseconds per request.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (stage, substrings of "function (file:line)" frames), tried from the innermost frame out;
# the first stage with a matching frame names the sample. Order matters only within a frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("query model: tokenisation", ("tokenizers", "/embed/exported.py:", "tokenize")),
    ("query model: forward pass", ("openvino", "onnxruntime", "/embed/")),
    ("query encoder: queue and cache", ("query_encoder.py",)),
    ("BM25", ("indexes/lexical.py",)),
    ("FAISS search", ("indexes/vectors/",)),
    ("fusion", ("indexes/fusion.py",)),
    ("filters", ("filters", "indexes/state.py")),
    ("chunk rows (SQLite)", ("indexes/reader.py", "indexes/store", "indexes/rows.py", "sqlite3")),
    ("catalog (other)", ("indexes/",)),
    ("retrieval (other)", ("ragsvc/retrieval/",)),
    ("logging", ("logging/", "telemetry/logs.py")),
    ("metrics and tracing", ("telemetry/",)),
    ("auth and limits", ("api/auth.py", "security/")),
    ("middleware", ("api/middleware.py", "json_limits.py")),
    ("serialisation", ("msgspec", "serialization", "api/schemas.py", "response/")),
    ("route and answer code", ("ragsvc/api/",)),
    ("thread hand-off", ("anyio/", "concurrent/futures", "threading.py", "queue.py")),
    ("Litestar (request, routing, params)", ("litestar/",)),
    ("HTTP server (uvicorn, h11/httptools)", ("uvicorn/", "h11/", "httptools")),
    ("asyncio loop", ("asyncio/", "selectors.py")),
)
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "Queue.get (", "select (selectors.py")
"""Innermost frames of a thread that waits (a runnable sample there is its wake-up)."""
OTHER = "other"
WAITING = "waking from waits"
NATIVE = "query model: runtime worker threads (not sampled)"


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return OTHER


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each of a process's threads so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended
        result[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


class Recording:
    """`py-spy record` of one process into collapsed stacks per thread, for as long as the
    block runs, with each thread's CPU time over the same span."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self._process: subprocess.Popen[bytes] | None = None
        self._before: dict[int, float] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds per thread id while recording

    def __enter__(self) -> Recording:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self._before = thread_cpu(self.pid)
        self._process = subprocess.Popen(
            [binary, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--threads",
             "--format", "raw", "--output", str(self.out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None
        after = thread_cpu(self.pid)
        self.cpu = {tid: after[tid] - self._before.get(tid, 0.0) for tid in after}
        self._process.send_signal(signal.SIGINT)  # py-spy writes what it has and stops
        err = self._process.communicate(timeout=60)[1]
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")

    def seconds_by_stage(self) -> dict[str, float]:
        """CPU seconds per stage. A sample says what a runnable thread was doing, not that it
        had a core (32 clients keep more threads runnable than there are cores), so each
        thread's samples share out that thread's own CPU time. Threads never sampled have
        no Python frames: the query runtime's workers (and any native pool)."""
        samples: dict[int, Counter[str]] = {}
        for line in self.out.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, samples_text = line.rpartition(" ")
            head, _, frames = stack.partition(";")
            if not frames or not samples_text.isdigit() or not head.startswith("thread ("):
                continue
            tid = int(head.removeprefix("thread (").partition(")")[0])
            stack_frames = frames.split(";")
            idle = stack_frames[-1].startswith(IDLE_LEAVES)
            stage = WAITING if idle else stage_of(stack_frames)
            samples.setdefault(tid, Counter())[stage] += int(samples_text)
        totals: dict[str, float] = {}
        for tid, seconds in self.cpu.items():
            stages = samples.get(tid)
            if not stages:
                totals[NATIVE] = totals.get(NATIVE, 0.0) + seconds
                continue
            if len(stages) > 1:  # a thread that did work: its waits cost it nothing
                stages.pop(WAITING, None)
            count = sum(stages.values())
            for stage, n in stages.items():
                totals[stage] = totals.get(stage, 0.0) + seconds * n / count
        return totals


def per_request(sampled: dict[str, float], requests: int) -> dict[str, float]:
    """CPU ms per request by stage."""
    return {stage: seconds * 1000 / requests for stage, seconds in sampled.items()}
