"""Folder sync: make a collection hold exactly the files of a folder (`ragsvc sync DIR`).

A file's document is named as `ragsvc ingest` names it: the folder's name, then the file's
path inside it (`handbook/hr/leave.pdf`). A sync compares the folder with the collection's
documents under that name, by SHA-256 of the bytes, and then:

    a file with no document            → added
    a file whose bytes changed         → replaced (the old chunks and vectors go)
    a document whose file is gone      → deleted
    a file whose bytes are the same    → unchanged, and nothing is read but its bytes
    a file that failed with these bytes → still unreadable: not tried again (`Unreadable`)

A file that cannot be read (an encrypted PDF, a scan without OCR) is remembered with the hash
of its bytes and the reason (`sync-unreadable.json` in the data folder); until its bytes
change, later syncs report it as still unreadable, with the reason, without extracting it
again, and it does not count as a new failure.

Documents of the collection outside the folder's name (uploads, other folders) are never
touched. The model is loaded only when something needs embedding, so a sync with nothing to
do costs one hash per file. `watch` syncs again each time the folder changes (watchfiles).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from indexes import Catalog
from ingest.sources import FileSource, file_sources

Change = Literal["added", "replaced", "deleted", "unchanged", "failed", "unreadable"]
UNREADABLE_FILE = "sync-unreadable.json"


class Unreadable:
    """Files that failed, by collection and name: the hash of the bytes that failed and why
    (kept in the data folder, written whole and replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        self.entries: dict[str, list[str]] = {
            str(key): [str(value[0]), str(value[1])]
            for key, value in (loaded.items() if isinstance(loaded, dict) else [])
            if isinstance(value, list) and len(value) == 2
        }

    @staticmethod
    def _key(collection: str, name: str) -> str:
        return f"{collection}/{name}"

    def reason(self, collection: str, name: str, sha256: str) -> str | None:
        """Why these bytes failed before, if they did."""
        entry = self.entries.get(self._key(collection, name))
        return entry[1] if entry is not None and entry[0] == sha256 else None

    def failed(self, collection: str, name: str, sha256: str, reason: str) -> None:
        self.entries[self._key(collection, name)] = [sha256, reason]

    def forget(self, collection: str, name: str) -> None:
        self.entries.pop(self._key(collection, name), None)

    def keep_only(self, collection: str, names: set[str], prefix: str) -> None:
        """Forget the files under `prefix` of `collection` that are no longer there."""
        start = self._key(collection, prefix)
        for key in [k for k in self.entries if k.startswith(start)]:
            if key[len(collection) + 1 :] not in names:
                del self.entries[key]

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)


@dataclass
class SyncPlan:
    root: Path
    collection: str
    add: list[FileSource] = field(default_factory=list)
    replace: list[FileSource] = field(default_factory=list)
    delete: list[tuple[int, str]] = field(default_factory=list)
    """(document id, name) of documents whose files are gone."""
    unchanged: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(name, reason) of files whose bytes failed before and are not tried again."""
    hashes: dict[str, str] = field(default_factory=dict)
    """name → SHA-256 of the files to add or replace."""

    @property
    def to_embed(self) -> list[FileSource]:
        return [*self.add, *self.replace]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.add or self.replace or self.delete)


@dataclass
class SyncReport:
    changes: list[tuple[Change, str, str]] = field(default_factory=list)
    """(change, document name, reason for a failure)."""

    def count(self, change: Change) -> int:
        return sum(1 for c, _, _ in self.changes if c == change)

    def summary(self) -> str:
        still = self.count("unreadable")
        unreadable = f"; {still} file(s) still unreadable (unchanged since the last try)"
        if not any(c not in ("unchanged", "unreadable") for c, _, _ in self.changes):
            done = f"nothing to do: {self.count('unchanged')} file(s) unchanged"
            return done + (unreadable if still else "")
        parts = [f"{self.count(c)} {c}" for c in ("added", "replaced", "deleted", "unchanged")]
        failed = self.count("failed")
        return (
            ", ".join(parts)
            + (f", {failed} failed" if failed else "")
            + (unreadable if still else "")
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stored_under(catalog: Catalog, collection: str, prefix: str) -> dict[str, tuple[int, str]]:
    """name → (document id, sha256) of the collection's documents named under `prefix`."""
    return catalog.documents_named_under(collection, prefix)


def plan(
    catalog: Catalog, root: Path, collection: str, unreadable: Unreadable | None = None
) -> SyncPlan:
    """What a sync of `root` into `collection` has to do (reads and hashes, changes nothing);
    files whose bytes failed before (`unreadable`) are not to be tried again."""
    root = root.resolve()
    files = file_sources([root], recursive=True)
    known = stored_under(catalog, collection, f"{root.name}/")
    result = SyncPlan(root, collection)
    for source in files:
        stored = known.get(source.name)
        sha256 = _sha256(source.path)
        if stored is not None and stored[1] == sha256:
            result.unchanged.append(source.name)
            continue
        reason = unreadable.reason(collection, source.name, sha256) if unreadable else None
        if reason is not None:
            result.unreadable.append((source.name, reason))
            continue
        result.hashes[source.name] = sha256
        (result.add if stored is None else result.replace).append(source)
    present = {source.name for source in files}
    result.delete = [
        (doc_id, name) for name, (doc_id, _) in sorted(known.items()) if name not in present
    ]
    return result


def apply(
    catalog: Catalog,
    sync_plan: SyncPlan,
    ingest: Callable[[list[FileSource]], Iterator[tuple[str, str, str | None]]],
    unreadable: Unreadable | None = None,
) -> SyncReport:
    """Carry a plan out: deletions here, additions and replacements through `ingest`
    (which yields (name, pipeline status, reason) and loads the model when first called);
    `unreadable` learns which files failed and which no longer do, and is saved."""
    report = SyncReport()
    for doc_id, name in sync_plan.delete:
        catalog.delete_document(doc_id, sync_plan.collection)
        report.changes.append(("deleted", name, ""))
    replacing = {source.name for source in sync_plan.replace}
    if sync_plan.to_embed:
        for name, status, reason in ingest(sync_plan.to_embed):
            if status == "failed":
                report.changes.append(("failed", name, reason or ""))
                if unreadable is not None and name in sync_plan.hashes:
                    unreadable.failed(
                        sync_plan.collection, name, sync_plan.hashes[name], reason or ""
                    )
                continue
            if unreadable is not None:
                unreadable.forget(sync_plan.collection, name)
            report.changes.append(("replaced" if name in replacing else "added", name, ""))
    report.changes.extend(("unreadable", name, reason) for name, reason in sync_plan.unreadable)
    report.changes.extend(("unchanged", name, "") for name in sync_plan.unchanged)
    if unreadable is not None:
        present = {
            *sync_plan.unchanged,
            *sync_plan.hashes,
            *(name for name, _ in sync_plan.unreadable),
        }
        unreadable.keep_only(sync_plan.collection, present, f"{sync_plan.root.name}/")
        unreadable.save()
    return report
