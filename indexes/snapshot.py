"""Index snapshots on disk: the derived indexes saved as one folder, named by a manifest.

    index/
      manifest.json              which snapshot is current, what it reflects
      snapshot-<seq>-<hex>/      vectors.faiss, tombstones.npy, owners-*.npy, lexical/
                               (no vectors.faiss when the vectors are in Milvus: the
                               manifest names their collection)
      snapshot.lock              held while a snapshot is written or read

A save writes a new folder (every file fsynced), renames it into place, then atomically
replaces the manifest naming it: the commit point. A reader therefore always finds a manifest
and the folder it names as one consistent pair, whatever moment a writer was killed at. Any
process may save (the server, a CLI command); the lock keeps two saves from interleaving, and
a save never replaces a snapshot of another build (a rebuild made elsewhere) or a newer one.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import numpy as np

from indexes.files import fsync_directory, write_array, write_bytes
from indexes.lexical import ANALYZER_VERSION, Analyzer, LexicalIndex
from indexes.rows import utc_now
from indexes.state import ChunkOwners, IndexState
from indexes.vectors import FaissIndex, IndexType, VectorParams, reopen

MANIFEST_NAME = "manifest.json"
LOCK_NAME = "snapshot.lock"
FORMAT_VERSION = 2


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format_version: int
    model_id: str
    dimension: int
    build_id: str
    index_type: IndexType
    index_spec: str
    vector_count: int
    change_seq: int
    """The store's change-log sequence number this snapshot reflects."""
    snapshot: str
    analyzer_version: int
    written_at: str
    vector_backend: str = "faiss"
    vector_location: str = ""
    """Where the vectors are when not in the folder: the Milvus collection."""


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest in `directory`, or None when there is none or it cannot be read."""
    try:
        manifest = msgspec.json.decode((directory / MANIFEST_NAME).read_bytes(), type=Manifest)
    except (FileNotFoundError, NotADirectoryError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return manifest if manifest.format_version == FORMAT_VERSION else None


@contextmanager
def snapshot_lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    handle = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(handle)


def save(
    directory: Path, state: IndexState, dimension: int, *, replace_build: bool = False
) -> Manifest | None:
    """Save `state` as the current snapshot; returns its manifest, or None when nothing was
    written because the current snapshot is already as new, or is of another build and
    `replace_build` (a rebuild's save) is not set."""
    with snapshot_lock(directory, exclusive=True):
        current = read_manifest(directory)
        if (
            current is not None
            and not replace_build
            and (current.build_id != state.build_id or current.change_seq >= state.change_seq)
        ):
            return None
        name = f"snapshot-{state.change_seq}-{secrets.token_hex(4)}"
        temporary = directory / f".{name}.tmp"
        temporary.mkdir()
        dense = state.dense
        if isinstance(dense, FaissIndex):
            write_bytes(temporary / "vectors.faiss", dense.serialize())
        else:
            dense.flush()  # what this snapshot reflects is sealed in Milvus's segments
        write_array(temporary / "tombstones.npy", state.dense.tombstones)
        held = state.owners.held()
        write_array(temporary / "owners-ids.npy", held)
        write_array(temporary / "owners-documents.npy", state.owners.documents[held])
        write_array(temporary / "owners-collections.npy", state.owners.collections[held])
        state.lexical.save(temporary / "lexical")
        fsync_directory(temporary / "lexical")
        fsync_directory(temporary)
        os.replace(temporary, directory / name)
        fsync_directory(directory)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model_id=state.model_id,
            dimension=dimension,
            build_id=state.build_id,
            index_type=state.dense.index_type,
            index_spec=state.dense.spec,
            vector_count=len(state.dense),
            change_seq=state.change_seq,
            snapshot=name,
            analyzer_version=ANALYZER_VERSION,
            written_at=utc_now(),
            vector_backend="faiss" if isinstance(dense, FaissIndex) else "milvus",
            vector_location="" if isinstance(dense, FaissIndex) else dense.collection,
        )
        write_manifest(directory, manifest)
        _remove_others(directory, name)
        return manifest


def load(
    directory: Path,
    manifest: Manifest,
    analyzer: Analyzer,
    *,
    k1: float,
    b: float,
    params: VectorParams | None = None,
) -> IndexState:
    """The state a manifest names. Raises OSError or ValueError when it cannot be read.

    A Milvus collection is reopened, not read: it may hold more or fewer vectors than the
    snapshot reflects (it is written as changes are applied), which the caller reconciles
    (`recovery.open_state`)."""
    with snapshot_lock(directory, exclusive=False):
        folder = directory / manifest.snapshot
        tombstones = np.load(folder / "tombstones.npy", allow_pickle=False)
        dense = reopen(
            folder,
            manifest.vector_backend,
            manifest.index_type,
            manifest.vector_location,
            tombstones,
            params or VectorParams(),
            manifest.dimension,
        )
        try:
            lexical = LexicalIndex.load(folder / "lexical", analyzer, k1=k1, b=b)
            owners = ChunkOwners()
            owners.set(
                np.load(folder / "owners-ids.npy", allow_pickle=False),
                np.load(folder / "owners-documents.npy", allow_pickle=False),
                np.load(folder / "owners-collections.npy", allow_pickle=False),
            )
        except BaseException:
            dense.close()
            raise
    if isinstance(dense, FaissIndex) and (
        len(dense) != manifest.vector_count or dense.dimension != manifest.dimension
    ):
        dense.close()
        raise ValueError(f"snapshot {manifest.snapshot} does not match its manifest")
    return IndexState(
        dense,
        lexical,
        owners,
        change_seq=manifest.change_seq,
        build_id=manifest.build_id,
        model_id=manifest.model_id,
    )


def write_manifest(directory: Path, manifest: Manifest) -> None:
    target = directory / MANIFEST_NAME
    temporary = directory / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    write_bytes(temporary, msgspec.json.format(msgspec.json.encode(manifest)))
    os.replace(temporary, target)
    fsync_directory(directory)


def _remove_others(directory: Path, keep: str) -> None:
    for path in directory.iterdir():
        if path.name == keep or path.name in (MANIFEST_NAME, LOCK_NAME):
            continue
        if path.is_dir() and (path.name.startswith("snapshot-") or path.name.endswith(".tmp")):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith("vectors-") and path.suffix == ".faiss":
            path.unlink(missing_ok=True)  # the single-file index of format 1
