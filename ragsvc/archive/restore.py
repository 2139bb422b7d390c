"""Restoring a backup (`ragsvc restore`): the archive checked whole before anything is
written, then its files put in place in the target data directory.

A non-empty target is refused unless `force`; even then, never one a running server holds.
With `force`, the files the backup holds (databases with their WAL files, the index folder)
are replaced and anything else in the directory is left alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import msgspec

from indexes.catalog import INDEX_DIRECTORY
from ragsvc.archive.format import ArchiveManifest, Progress, extract, verify
from ragsvc.errors import RagsvcError
from ragsvc.jobs.worker import worker_is_running

SQLITE_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


class RestoreRefused(RagsvcError):
    """The target cannot take the backup (not empty, in use, a collection archive)."""


class RestoreReport(msgspec.Struct, frozen=True):
    data_dir: str
    documents: int
    chunks: int
    change_seq: int
    model_id: str
    created_at: str
    members: int
    seconds: float


def restore(
    archive: Path, target: Path, *, force: bool = False, on_bytes: Progress | None = None
) -> RestoreReport:
    """Check `archive` whole, then restore it into `target`; raises `ArchiveRejected` (bad
    archive) or `RestoreRefused` (bad target) having written nothing."""
    started = time.perf_counter()
    if not archive.is_file():
        raise RestoreRefused(f"no such archive: {archive}")
    check_target(target, force=force)
    manifest = verify(archive, on_bytes)
    if manifest.kind != "backup":
        raise RestoreRefused(
            f"{archive.name} is a {manifest.kind} export, not a backup: use `ragsvc import`"
        )
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".restore-{secrets.token_hex(4)}"
    try:
        extract(archive, manifest, staging)
        _replace(target, staging, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreReport(
        data_dir=str(target),
        documents=manifest.documents,
        chunks=manifest.chunks,
        change_seq=manifest.change_seq,
        model_id=manifest.model_id,
        created_at=manifest.created_at,
        members=len(manifest.members),
        seconds=time.perf_counter() - started,
    )


def check_target(target: Path, *, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise RestoreRefused(f"{target} is not a directory")
    if not target.exists() or not any(target.iterdir()):
        return
    if not force:
        raise RestoreRefused(
            f"{target} is not empty; restore into an empty directory, or pass --force to "
            "replace the data it holds"
        )
    if worker_is_running(target):
        raise RestoreRefused(f"a server is running on {target}; stop it before restoring")


def _replace(target: Path, staging: Path, manifest: ArchiveManifest) -> None:
    """Move the extracted files into place, dropping the ones they replace."""
    tops = sorted({m.name.split("/")[0] for m in manifest.members})
    for name in tops:
        existing = target / name
        if existing.is_dir():
            shutil.rmtree(existing)
        else:
            existing.unlink(missing_ok=True)
        for suffix in SQLITE_SIDE_SUFFIXES:
            (target / f"{name}{suffix}").unlink(missing_ok=True)
    if INDEX_DIRECTORY not in tops:
        shutil.rmtree(target / INDEX_DIRECTORY, ignore_errors=True)
    for name in tops:
        os.replace(staging / name, target / name)
