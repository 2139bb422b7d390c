"""Folder sync: make a collection hold exactly the files of a folder (`ragsvc sync DIR`).

A file's document is named as `ragsvc ingest` names it: the folder's name, then the file's
path inside it (`handbook/hr/leave.pdf`). A sync compares the folder with the collection's
documents under that name, by SHA-256 of the bytes, and then:

    a file with no document            → added
    a file whose bytes changed         → replaced (the old chunks and vectors go)
    a document whose file is gone      → deleted
    a file whose bytes are the same    → unchanged, and nothing is read but its bytes

Documents of the collection outside the folder's name (uploads, other folders) are never
touched. The model is loaded only when something needs embedding, so a sync with nothing to
do costs one hash per file. `watch` syncs again each time the folder changes (watchfiles).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from indexes import Catalog
from ingest.sources import FileSource, file_sources

Change = Literal["added", "replaced", "deleted", "unchanged", "failed"]


@dataclass
class SyncPlan:
    root: Path
    collection: str
    add: list[FileSource] = field(default_factory=list)
    replace: list[FileSource] = field(default_factory=list)
    delete: list[tuple[int, str]] = field(default_factory=list)
    """(document id, name) of documents whose files are gone."""
    unchanged: list[str] = field(default_factory=list)

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
        if not any(c != "unchanged" for c, _, _ in self.changes):
            return f"nothing to do: {self.count('unchanged')} file(s) unchanged"
        parts = [f"{self.count(c)} {c}" for c in ("added", "replaced", "deleted", "unchanged")]
        failed = self.count("failed")
        return ", ".join(parts) + (f", {failed} failed" if failed else "")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stored_under(catalog: Catalog, collection: str, prefix: str) -> dict[str, tuple[int, str]]:
    """name → (document id, sha256) of the collection's documents named under `prefix`."""
    rows = catalog.store.reader().execute(
        "SELECT d.source_name, d.id, d.sha256 FROM documents d "
        "JOIN collections c ON c.id = d.collection_id "
        "WHERE c.name = ? AND substr(d.source_name, 1, ?) = ?",
        (collection, len(prefix), prefix),
    )
    return {str(name): (int(doc_id), str(sha)) for name, doc_id, sha in rows}


def plan(catalog: Catalog, root: Path, collection: str) -> SyncPlan:
    """What a sync of `root` into `collection` has to do (reads and hashes, changes nothing)."""
    root = root.resolve()
    files = file_sources([root], recursive=True)
    known = stored_under(catalog, collection, f"{root.name}/")
    result = SyncPlan(root, collection)
    for source in files:
        stored = known.get(source.name)
        if stored is None:
            result.add.append(source)
        elif stored[1] != _sha256(source.path):
            result.replace.append(source)
        else:
            result.unchanged.append(source.name)
    present = {source.name for source in files}
    result.delete = [
        (doc_id, name) for name, (doc_id, _) in sorted(known.items()) if name not in present
    ]
    return result


def apply(
    catalog: Catalog,
    sync_plan: SyncPlan,
    ingest: Callable[[list[FileSource]], Iterator[tuple[str, str, str | None]]],
) -> SyncReport:
    """Carry a plan out: deletions here, additions and replacements through `ingest`
    (which yields (name, pipeline status, reason) and loads the model when first called)."""
    report = SyncReport()
    for doc_id, name in sync_plan.delete:
        catalog.delete_document(doc_id, sync_plan.collection)
        report.changes.append(("deleted", name, ""))
    replacing = {source.name for source in sync_plan.replace}
    if sync_plan.to_embed:
        for name, status, reason in ingest(sync_plan.to_embed):
            if status == "failed":
                report.changes.append(("failed", name, reason or ""))
            elif name in replacing:
                report.changes.append(("replaced", name, ""))
            else:
                report.changes.append(("added", name, ""))
    report.changes.extend(("unchanged", name, "") for name in sync_plan.unchanged)
    return report
