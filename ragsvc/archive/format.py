"""The archive format that backups and collection exports share: a gzipped tar whose first
member, `ragsvc-archive.json`, lists every other member with its size and sha256.

An archive is checked whole before anything is taken from it (`verify`): the manifest must
come first, every member must be a plain file it lists, once, with that size and checksum,
and every member it lists must be there. The first member that fails names the refusal, so
a truncated download, a flipped byte or an added file is refused with the member's name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Literal

import msgspec

from ragsvc.errors import RagsvcError

MANIFEST_MEMBER = "ragsvc-archive.json"
FORMAT_VERSION = 1
COMPRESS_LEVEL = 1
"""gzip level 1: the stores hold float32 vectors that barely compress at any level, so a
higher level costs seconds for little."""
READ_BLOCK = 1 << 20

ArchiveKind = Literal["backup", "collection"]
Progress = Callable[[int], None]
"""Called with the bytes just written or read."""


class ArchiveRejected(RagsvcError):
    """An archive that is not whole or not ours; the message names the first bad member."""


class Member(msgspec.Struct, frozen=True):
    name: str
    size: int
    sha256: str


class ArchiveManifest(msgspec.Struct, frozen=True, kw_only=True):
    format_version: int = FORMAT_VERSION
    kind: ArchiveKind
    created_at: str
    model_id: str
    dimension: int
    change_seq: int
    """The store's change-log position the archive reflects."""
    documents: int
    chunks: int
    members: list[Member]
    collection: str | None = None
    """A collection export: the collection it holds."""


def file_member(root: Path, path: Path, on_bytes: Progress | None = None) -> Member:
    """The member for the file `path` under `root`, its checksum read from disk."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_BLOCK):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return Member(path.relative_to(root).as_posix(), path.stat().st_size, digest.hexdigest())


def staged_members(root: Path, on_bytes: Progress | None = None) -> list[Member]:
    """Every file under `root` as a member, in name order."""
    return [file_member(root, path, on_bytes) for path in sorted(root.rglob("*")) if path.is_file()]


def write_archive(
    root: Path, manifest: ArchiveManifest, out: IO[bytes], on_bytes: Progress | None = None
) -> None:
    """Write the manifest, then every member it lists from `root`, as a gzipped tar to `out`."""
    body = msgspec.json.format(msgspec.json.encode(manifest))
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size = len(body)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, _BytesReader(body))
        for member in manifest.members:
            path = root / member.name
            info = tarfile.TarInfo(member.name)
            info.size = member.size
            info.mode = 0o644
            info.mtime = int(path.stat().st_mtime)
            with path.open("rb") as handle:
                tar.addfile(info, _Counting(handle, on_bytes))


def write_archive_file(
    root: Path, manifest: ArchiveManifest, target: Path, on_bytes: Progress | None = None
) -> None:
    """`write_archive` into `target`, through a temporary name: a file at `target` is whole."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as out:
            write_archive(root, manifest, out, on_bytes)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def verify(path: Path, on_bytes: Progress | None = None) -> ArchiveManifest:
    """The archive's manifest, once every member is checked against it; raises
    `ArchiveRejected` naming the first member that is not right. Writes nothing."""
    manifest: ArchiveManifest | None = None
    for name, blocks in _members(path):
        if manifest is None:
            manifest = _read_manifest(name, blocks)
            expected = {m.name: m for m in manifest.members}
            seen: set[str] = set()
            continue
        member = expected.get(name)
        if member is None:
            raise ArchiveRejected(f"{path.name}: member {name!r} is not in the archive's manifest")
        if name in seen:
            raise ArchiveRejected(f"{path.name}: member {name!r} appears twice")
        seen.add(name)
        digest = hashlib.sha256()
        size = 0
        for block in blocks:
            digest.update(block)
            size += len(block)
            if on_bytes is not None:
                on_bytes(len(block))
        if size != member.size or digest.hexdigest() != member.sha256:
            raise ArchiveRejected(
                f"{path.name}: member {name!r} does not match its checksum "
                f"({size} bytes read, {member.size} listed)"
            )
    if manifest is None:
        raise ArchiveRejected(f"{path.name}: the archive is empty")
    missing = [m.name for m in manifest.members if m.name not in seen]
    if missing:
        raise ArchiveRejected(
            f"{path.name}: member {missing[0]!r} is missing ({len(missing)} listed members "
            "are not in the archive)"
        )
    return manifest


def extract(path: Path, manifest: ArchiveManifest, target: Path) -> None:
    """Write the members of a verified archive under `target` (each checked again as it is
    written: the file could have changed since `verify`)."""
    expected = {m.name: m for m in manifest.members}
    for name, blocks in _members(path):
        if name == MANIFEST_MEMBER:
            for _ in blocks:
                pass
            continue
        member = expected[name]
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with destination.open("wb") as out:
            for block in blocks:
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != member.sha256:
            raise ArchiveRejected(f"{path.name}: member {name!r} changed while it was restored")


def read_manifest_only(path: Path) -> ArchiveManifest:
    """The manifest of an archive, without checking its members (to decide what to check)."""
    for name, blocks in _members(path):
        return _read_manifest(name, blocks)
    raise ArchiveRejected(f"{path.name}: the archive is empty")


def _read_manifest(name: str, blocks: Iterable[bytes]) -> ArchiveManifest:
    if name != MANIFEST_MEMBER:
        raise ArchiveRejected(f"the first member is {name!r}, not {MANIFEST_MEMBER}")
    try:
        manifest = msgspec.json.decode(b"".join(blocks), type=ArchiveManifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ArchiveRejected(f"member {MANIFEST_MEMBER!r} is unreadable: {error}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise ArchiveRejected(
            f"archive format {manifest.format_version} is not one this ragsvc reads "
            f"({FORMAT_VERSION})"
        )
    for member in manifest.members:
        _check_name(member.name)
    return manifest


def _members(path: Path) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, its blocks) for each member of the tar at `path`, streamed; a damaged archive
    raises `ArchiveRejected` naming the member being read when the damage showed."""
    current = "(the archive's start)"
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for info in tar:
                current = info.name
                _check_name(info.name)
                if not info.isreg():
                    raise ArchiveRejected(f"{path.name}: member {info.name!r} is not a file")
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file always has one
                yield info.name, _blocks(handle, path.name, info.name)
                current = f"after {info.name}"
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ArchiveRejected(
            f"{path.name}: damaged at member {current!r} ({error or type(error).__name__})"
        ) from None


def _blocks(handle: IO[bytes], archive: str, name: str) -> Iterator[bytes]:
    try:
        while block := handle.read(READ_BLOCK):
            yield block
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ArchiveRejected(
            f"{archive}: damaged in member {name!r} ({error or type(error).__name__})"
        ) from None


def _check_name(name: str) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or name.startswith("."):
        raise ArchiveRejected(f"member {name!r} has a name that escapes the archive")


class _BytesReader:
    def __init__(self, body: bytes) -> None:
        self._body = memoryview(body)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._body) if size < 0 else self._at + size
        chunk = bytes(self._body[self._at : end])
        self._at += len(chunk)
        return chunk


class _Counting:
    """A file read through, reporting the bytes read."""

    def __init__(self, handle: IO[bytes], on_bytes: Progress | None) -> None:
        self._handle = handle
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        if self._on_bytes is not None and chunk:
            self._on_bytes(len(chunk))
        return chunk
