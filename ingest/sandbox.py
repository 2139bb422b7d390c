"""Extraction in a child process with limits: a hostile file costs its own job, nothing more.

    pipeline (preparer thread) ──(bytes, name)──▶ python -m ingest.sandbox
                               ◀──Extracted | (error kind, reason)──
                                                  address space ≤ limits.max_memory
    no reply within limits.timeout: the child is killed and started again, the job fails

`ExtractionSandbox.extract` has the signature of `ingest.extract.extract`. The child extracts
one document at a time and stays up between documents (starting one costs a fraction of a
second); after a timeout, a crash or running out of memory it is started afresh for the next
document. Limits met inside the child (pages, decompressed bytes, characters) come back as
the document's `capped` note or failure reason, so a job always says what stopped it. The
child exits when its parent does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from ingest import errors
from ingest.errors import DocumentError, ExtractionFailed
from ingest.extract import extract
from ingest.extract.base import Extracted, ExtractionLimits

_HEADER = struct.Struct("!I")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)


class _Request(msgspec.Struct):
    data: bytes
    name: str


class _Reply(msgspec.Struct):
    extracted: Extracted | None = None
    error_kind: str | None = None
    error: str | None = None
    restart: bool = False
    """The child may be unhealthy (it ran out of memory): start a new one."""


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    """`size` bytes from `fd`; None at end of file; TimeoutError past `deadline`."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None) -> bytes | None:
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    return _read_exact(fd, _HEADER.unpack(header)[0], deadline)


class ExtractionSandbox:
    """Extracts documents in a supervised child process, one at a time (thread-safe)."""

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def __call__(self, data: bytes, name: str = "") -> Extracted:
        return self.extract(data, name)

    def extract(self, data: bytes, name: str = "") -> Extracted:
        """Like `ingest.extract.extract`, in the child; raises an `DocumentError` subclass."""
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            deadline = time.monotonic() + self.limits.timeout
            try:
                try:
                    _write_frame(process.stdin, msgspec.msgpack.encode(_Request(data, name)))
                except BrokenPipeError:
                    # It stopped reading: it may have said why (out of memory) before leaving.
                    deadline = min(deadline, time.monotonic() + 5)
                frame = _read_frame(process.stdout.fileno(), deadline)
            except TimeoutError:
                self._kill()
                raise ExtractionFailed(
                    f"extraction took over {self.limits.timeout:g} s and was stopped (setting "
                    "extract_timeout)"
                ) from None
            if frame is None:
                raise ExtractionFailed(f"the extractor crashed on this file ({self._died()})")
            reply = msgspec.msgpack.decode(frame, type=_Reply)
            if reply.restart:
                self._kill()
        if reply.extracted is not None:
            return reply.extracted
        kind = getattr(errors, reply.error_kind or "", ExtractionFailed)
        if not (isinstance(kind, type) and issubclass(kind, DocumentError)):
            kind = ExtractionFailed
        raise kind(reply.error or "extraction failed")

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        if self._process is not None:
            self._kill()  # reap it and close its pipes
            self.restarts += 1
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(_PACKAGE_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ingest.sandbox", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
        )
        assert self._process.stdin is not None
        _write_frame(self._process.stdin, msgspec.msgpack.encode(self.limits))
        return self._process

    def _died(self) -> str:
        assert self._process is not None
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()
            return "it stopped answering"
        if code < 0:
            name = signal.Signals(-code).name
            return f"killed by {name}" + (", out of memory?" if name == "SIGKILL" else "")
        return f"exit status {code}"

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.stdin is not None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._process.stdin.close()  # the child exits at end of input
                    self._process.wait(timeout=5)
            self._kill()
            self._process = None


def make_extractor(
    limits: ExtractionLimits, *, sandbox: bool = True
) -> Callable[[bytes, str], Extracted]:
    """The extractor an ingestion pipeline uses: sandboxed, or in this process (trusted files)."""
    if sandbox:
        return ExtractionSandbox(limits)
    return functools.partial(_extract_here, limits=limits)


def _extract_here(data: bytes, name: str, *, limits: ExtractionLimits) -> Extracted:
    return extract(data, name, limits)


def _die_with(parent: int) -> None:
    """Exit when the parent is gone, even in the middle of a document. (A watchdog thread
    rather than PR_SET_PDEATHSIG, which follows the parent *thread* that started us.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(parent: int) -> None:
    _die_with(parent)
    logging.basicConfig(level=logging.ERROR, format="sandbox %(levelname)s %(name)s: %(message)s")
    source = sys.stdin.buffer.fileno()
    sink = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by a library may corrupt the replies
    frame = _read_frame(source)
    if frame is None:
        return
    limits = msgspec.msgpack.decode(frame, type=ExtractionLimits)
    resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory, limits.max_memory))
    memory_reason = (
        f"extraction needed over {limits.max_memory} bytes of memory and was stopped (setting "
        "extract_max_memory)"
    )
    while True:
        reply: Any
        try:
            frame = _read_frame(source)
            if frame is None:
                return
            request = msgspec.msgpack.decode(frame, type=_Request)
            del frame
            reply = _Reply(extracted=extract(request.data, request.name, limits))
            del request
        except DocumentError as error:
            reply = _Reply(error_kind=type(error).__name__, error=str(error))
        except MemoryError:
            # Possibly mid-frame: this child cannot go on; the parent starts another.
            reply = _Reply(error_kind="ExtractionFailed", error=memory_reason, restart=True)
        except RecursionError:
            reply = _Reply(
                error_kind="ExtractionFailed", error="object structure nests without end"
            )
        except Exception as error:  # a parser bug on a hostile file: that file's failure
            reason = f"the extractor failed: {type(error).__name__}: {error}"[:300]
            reply = _Reply(error_kind="ExtractionFailed", error=reason)
        _write_frame(sink, msgspec.msgpack.encode(reply))
        if reply.restart:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
