"""What the command modules share: exit codes, the refusal error, the audit of a command's writes,
progress bars and plain-text tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from indexes import Catalog, IndexesError
from ingest import Embedder, IngestError, IngestPipeline
from ingest.ray_engine import RayIngestPipeline
from ragsvc import factory
from ragsvc.errors import RagsvcError
from ragsvc.factory import Engine
from ragsvc.security.audit import AuditEntry, AuditLog
from ragsvc.settings import Settings

EXIT_OK, EXIT_FAILURES, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(RagsvcError):
    """A refusal with a message for the user (exit 2)."""


REFUSALS: tuple[type[Exception], ...] = (RagsvcError, IndexesError, IngestError)
"""What a command refuses with (exit 2, nothing changed): the root error of each package."""


def lower_priority(settings: Settings) -> None:
    """Beside a running server, heavy commands yield the CPU to its queries (setting
    `worker_nice`); alone, they run at full speed."""
    from ragsvc.jobs.worker import worker_is_running

    if settings.worker_nice and worker_is_running(settings.data_path):
        os.nice(settings.worker_nice)


def make_pipeline(
    settings: Settings, catalog: Catalog, embedder: Embedder, engine: Engine | None = None
) -> IngestPipeline | RayIngestPipeline:
    try:
        return factory.make_pipeline(settings, catalog, embedder, engine=engine)
    except ValueError as error:
        raise CommandError(f"invalid chunk settings: {error}") from None


def progress(args: argparse.Namespace, total: int, unit: str) -> Any:
    """A progress bar on standard error, shown only on a terminal and without
    `--no-progress`, as `ingest` shows one."""
    from tqdm import tqdm

    quiet = getattr(args, "no_progress", False) or not sys.stderr.isatty()
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True)


def print_listing(items: Sequence[Any], as_json: bool, when_empty: str) -> bool:
    """Print a listing as JSON lines, or say it is empty: whether that was all there was to
    print (otherwise the caller prints its table)."""
    if as_json:
        for item in items:
            print(msgspec.json.encode(item).decode())
        return True
    if not items:
        print(when_empty)
        return True
    return False


def pages(start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    return f" p.{start}" if start == end else f" pp.{start}-{end}"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def table(headers: list[str], rows: list[list[str]], *, header: bool = True) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = []
    if header:
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def parse_date(text: str) -> str:
    """A date or time as the interaction log writes them (UTC ISO 8601), for comparing."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (2026-12-31)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"no such file: {path}") from None
    except json.JSONDecodeError as error:
        raise CommandError(f"{path} is not valid JSON: {error}") from None


def compact_json(report: Any) -> str:
    """JSON with one line per list of numbers (per-query values), indented elsewhere."""
    import re

    text = json.dumps(report, indent=2)
    return re.sub(r"\[[\d.,\s\-e\"a-z0-9_]*\]", lambda m: " ".join(m.group(0).split()), text) + "\n"


def cli_client() -> str:
    """Where a command came from: the user and machine it ran as."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


class AuditedCommand:
    """A command's write, in the audit log with the `cli` actor as the API's writes are with
    their key: the outcome is `ok` (or what `outcome` is set to), or the refusal or error that
    ended it.

        with AuditedCommand(settings, "delete", "document 7") as audit:
            ...
            audit.target = "document 7 (a.pdf) in docs"
    """

    def __init__(self, settings: Settings, action: str, target: str) -> None:
        self.data_dir = settings.data_path
        self.action = action
        self.target = target
        self.outcome = "ok"

    def __enter__(self) -> AuditedCommand:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if isinstance(error, KeyboardInterrupt):
            self.outcome = "interrupted"
        elif error is not None:
            self.outcome = (
                f"refused: {error}" if isinstance(error, REFUSALS) else f"failed: {error!r}"
            )
        audit = AuditLog.open(self.data_dir)
        try:
            audit.record(
                AuditEntry("cli", self.action, self.target, cli_client(), self.outcome[:500])
            )
        finally:
            audit.close()
