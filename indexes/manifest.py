"""The vector-index manifest: which index file is current and which store state it reflects.

The manifest is the commit point of an index write. The index goes to a new, uniquely named
file that is fsynced first; then the manifest naming it is written to a temp file, fsynced and
`os.replace`d over the old one. A reader therefore always sees a manifest and the index file it
names as one consistent pair, whatever moment a writer was killed at.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from indexes.vectors.base import IndexType

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format_version: int
    model_id: str
    dimension: int
    index_type: IndexType
    index_spec: str
    index_file: str
    vector_count: int
    store_generation: int
    written_at: str


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest in `directory`, or None when there is none or it cannot be read."""
    try:
        manifest = msgspec.json.decode((directory / MANIFEST_NAME).read_bytes(), type=Manifest)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return manifest if manifest.format_version == FORMAT_VERSION else None


def write_manifest(directory: Path, manifest: Manifest) -> None:
    target = directory / MANIFEST_NAME
    temporary = directory / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(msgspec.json.format(msgspec.json.encode(manifest)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
