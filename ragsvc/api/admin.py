"""`POST /admin/backup`: the same archive as `ragsvc backup`, streamed, so an operator can back
up a server they cannot log in to. The databases are copied first (seconds; the request waits),
then the archive is written straight into the response: no second copy on the server's disk
beyond the staged databases, removed when the response ends."""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.response import Stream

from ragsvc.api.common import AuditedWrite, Caller, in_thread, services_of
from ragsvc.archive.backup import stage_backup
from ragsvc.archive.format import ArchiveManifest, write_archive
from ragsvc.errors import Forbidden

SCRATCH = ".backups"
"""Where a backup is staged, in the data directory (the same disk as the databases)."""
PIPE_BLOCKS = 16
"""Blocks of the archive held between the writing thread and the response (about 1 MB each)."""
MEDIA_TYPE = "application/gzip"


@post(
    "/admin/backup",
    status_code=200,
    summary="A consistent backup of the whole data directory, as one archive (admin)",
    opt={"scope": "admin", "action": "backup"},
    media_type=MEDIA_TYPE,
)
async def take_backup(state: State, principal: Caller, request: Request[Any, Any, Any]) -> Stream:
    services = services_of(state)
    async with AuditedWrite(services, principal, request, "backup", "data directory") as audit:
        if principal.collections is not None:
            raise Forbidden("a backup holds every collection: it needs a key not limited to some")
        data_dir = services.settings.data_path
        (data_dir / SCRATCH).mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="backup-", dir=data_dir / SCRATCH))
        try:
            manifest = await in_thread(stage_backup, data_dir, staging)
        except BaseException:
            _remove(staging)
            raise
        audit.target = (
            f"data directory: {manifest.documents} documents at change {manifest.change_seq}"
        )
    name = f"ragsvc-backup-{manifest.created_at[:19].replace(':', '')}.tar.gz"
    return Stream(
        _archive_body(staging, manifest),
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Ragsvc-Change-Seq": str(manifest.change_seq),
        },
    )


class _Pipe:
    """A binary file the writing thread writes to and the response reads from."""

    def __init__(self) -> None:
        self.blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(PIPE_BLOCKS)
        self.pending = bytearray()
        self.closed = threading.Event()

    def write(self, data: bytes) -> int:
        self.pending += data
        if len(self.pending) >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.pending:
            self.put(bytes(self.pending))
            self.pending.clear()

    def put(self, item: bytes | BaseException | None) -> None:
        while not self.closed.is_set():
            try:
                self.blocks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise BrokenPipeError("the client went away")


async def _archive_body(staging: Path, manifest: ArchiveManifest) -> AsyncIterator[bytes]:
    pipe = _Pipe()

    def produce() -> None:
        try:
            with contextlib.suppress(BrokenPipeError):
                try:
                    write_archive(staging, manifest, pipe)  # type: ignore[arg-type]
                    pipe.flush()
                    pipe.put(None)
                except BrokenPipeError:
                    raise
                except BaseException as error:  # reported to the reader: the response ends
                    pipe.put(error)
        finally:
            _remove(staging)

    writer = threading.Thread(target=produce, name="backup-writer", daemon=True)
    writer.start()
    try:
        while True:
            item = await in_thread(pipe.blocks.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pipe.closed.set()


def _remove(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
