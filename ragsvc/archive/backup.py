"""Online backup of a data directory (`ragsvc backup`, `POST /admin/backup`): every database
copied with SQLite's backup API while the server serves and the worker writes, the current
index snapshot, and a manifest of checksums, as one archive (`archive.format`).

The order makes the copy consistent without stopping anything:

    1. the job queue      an upload acknowledged before this moment is in it, queued or done
    2. the index snapshot older than the store copy, so the change log covers the gap
    3. the store          a done job's document was committed before the queue copy, so
                          it is here; a job still queued there runs again after a restore
                          (its document, if committed meanwhile, is found by its hash)
    4. keys, audit, the interaction log

A snapshot of another model than the copied store (a re-embed switched between steps 2 and
3) is taken again. Derived files (`models/`, worker status files) are left out.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from indexes import snapshot
from indexes.catalog import INDEX_DIRECTORY
from indexes.rows import utc_now
from indexes.schema import DATABASE_NAME
from indexes.store import Store
from ragsvc.archive.format import (
    ArchiveManifest,
    Progress,
    staged_members,
    write_archive,
    write_archive_file,
)
from ragsvc.errors import RagsvcError
from ragsvc.jobs.queue import QUEUE_NAME
from ragsvc.security.audit import AUDIT_NAME
from ragsvc.security.keys import KEYS_NAME

SIDE_DATABASES = (KEYS_NAME, AUDIT_NAME, "interactions.sqlite3")
SIDE_FILES = ("interactions.jsonl",)
SNAPSHOT_ATTEMPTS = 3
Step = Callable[[str], None]
"""Called with what the backup is doing now, for progress on a terminal."""


class BackupFailed(RagsvcError):
    """Nothing to back up, or the copy could not be made consistent."""


class BackupReport(msgspec.Struct, frozen=True):
    path: str
    archive_bytes: int
    data_bytes: int
    """What the archive holds, uncompressed: the databases' copies and the index snapshot."""
    documents: int
    chunks: int
    change_seq: int
    index_included: bool
    seconds: float


def stage_backup(data_dir: Path, staging: Path, on_step: Step | None = None) -> ArchiveManifest:
    """Copy what a backup holds from `data_dir` into the empty folder `staging`; returns the
    archive's manifest."""
    step = on_step or (lambda _: None)
    if not (data_dir / DATABASE_NAME).is_file():
        raise BackupFailed(f"no store in {data_dir}: nothing to back up")
    step(f"copying {QUEUE_NAME}")
    copy_database(data_dir / QUEUE_NAME, staging / QUEUE_NAME)
    for _ in range(SNAPSHOT_ATTEMPTS):
        shutil.rmtree(staging / INDEX_DIRECTORY, ignore_errors=True)
        step("copying the index snapshot")
        index_manifest = copy_snapshot(data_dir / INDEX_DIRECTORY, staging / INDEX_DIRECTORY)
        step(f"copying {DATABASE_NAME}")
        copy_database(data_dir / DATABASE_NAME, staging / DATABASE_NAME)
        facts = _store_facts(staging / DATABASE_NAME)
        if index_manifest is None or index_manifest.model_id == facts.model_id:
            break
    else:
        # The model keeps changing under the copy: leave the index out (rebuilt on open).
        shutil.rmtree(staging / INDEX_DIRECTORY, ignore_errors=True)
    for name in SIDE_DATABASES:
        if (data_dir / name).is_file():
            step(f"copying {name}")
            copy_database(data_dir / name, staging / name)
    for name in SIDE_FILES:
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, staging / name)
    step("computing checksums")
    return ArchiveManifest(
        kind="backup",
        created_at=utc_now(),
        model_id=facts.model_id,
        dimension=facts.dimension,
        change_seq=facts.change_seq,
        documents=facts.documents,
        chunks=facts.chunks,
        members=staged_members(staging),
    )


def backup(
    data_dir: Path, out: Path, *, on_step: Step | None = None, on_bytes: Progress | None = None
) -> BackupReport:
    """Back `data_dir` up into the archive `out` (written whole or not at all)."""
    started = time.perf_counter()
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix=".ragsvc-backup-", dir=out.parent) as folder:
        staging = Path(folder)
        manifest = stage_backup(data_dir, staging, on_step)
        if on_step is not None:
            on_step(f"writing {out.name}")
        write_archive_file(staging, manifest, out, on_bytes)
    return BackupReport(
        path=str(out),
        archive_bytes=out.stat().st_size,
        data_bytes=sum(m.size for m in manifest.members),
        documents=manifest.documents,
        chunks=manifest.chunks,
        change_seq=manifest.change_seq,
        index_included=any(m.name.startswith(f"{INDEX_DIRECTORY}/") for m in manifest.members),
        seconds=time.perf_counter() - started,
    )


def backup_to_stream(data_dir: Path, scratch: Path, out: object) -> ArchiveManifest:
    """Stage a backup in a folder under `scratch` and write its archive to the binary
    file-like `out` (the HTTP route's body); the staged copy is removed after."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ragsvc-backup-", dir=scratch) as folder:
        manifest = stage_backup(data_dir, Path(folder))
        write_archive(Path(folder), manifest, out)  # type: ignore[arg-type]
    return manifest


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database `source`, taken with the backup API in one
    read transaction (writers in WAL mode carry on meanwhile). Nothing when there is none."""
    if not source.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def copy_snapshot(directory: Path, target: Path) -> snapshot.Manifest | None:
    """Copy the current index snapshot and its manifest (read under the snapshot lock, so no
    save replaces it meanwhile); None when there is none, or its vectors are in Milvus."""
    if not (directory / snapshot.MANIFEST_NAME).is_file():
        return None
    with snapshot.snapshot_lock(directory, exclusive=False):
        manifest = snapshot.read_manifest(directory)
        if manifest is None or manifest.vector_backend != "faiss":
            return None
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(directory / manifest.snapshot, target / manifest.snapshot)
        shutil.copyfile(directory / snapshot.MANIFEST_NAME, target / snapshot.MANIFEST_NAME)
    return manifest


class _StoreFacts(msgspec.Struct, frozen=True):
    model_id: str
    dimension: int
    change_seq: int
    documents: int
    chunks: int


def _store_facts(path: Path) -> _StoreFacts:
    store = Store(path, readonly=True)
    try:
        with store.snapshot() as conn:
            seq = store.change_seq(conn)
        return _StoreFacts(
            model_id=store.meta("model_id") or "",
            dimension=int(store.meta("dimension") or 0),
            change_seq=seq,
            documents=sum(row[1] for row in store.counts()),
            chunks=store.chunk_count(),
        )
    finally:
        store.close()
