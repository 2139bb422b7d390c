"""Portable collections (`ragsvc export collection`, `ragsvc import`): one collection's
documents, chunks and embeddings in an archive that another installation loads.

    collection.json          the collection's name and the settings its chunks were made with
    documents.jsonl          one document per line as the store took it (`NewDocument`), its
                             chunks inside (text, pages, offsets, location, context, text hash)
    embeddings/hashes.npy    the distinct chunk texts' hashes, one row each
    embeddings/vectors.npy   their vectors (float32), in the same order
    embeddings/sentences.npy how many sentence vectors each has (-1: none stored)
    embeddings/spans.npy     the sentences' spans, all texts one after another
    embeddings/sentence_vectors.npy   and their vectors (float16)

The model id and dimension are in the archive's manifest. An import into a store of the same
model embeds nothing; into another model's store it is refused unless the caller re-embeds.
The store does not keep uploaded files, so an export holds the chunks, never the originals.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np

from indexes import Catalog
from indexes.rows import ChunkEmbedding, NewChunk, NewDocument, utc_now
from ragsvc.archive.format import (
    ArchiveManifest,
    Progress,
    extract,
    staged_members,
    verify,
    write_archive_file,
)
from ragsvc.errors import RagsvcError

COMMIT_DOCUMENTS = 64
"""Documents stored per transaction on import."""
MAX_NAME = 200
"""The longest collection name (as the API takes them)."""
Embed = Callable[[list[NewChunk]], list[ChunkEmbedding]]


class ImportRefused(RagsvcError):
    """The archive cannot go into this store as asked (another model, a taken name)."""


class ExportRefused(RagsvcError):
    """The collection cannot be exported whole (a chunk without a stored embedding)."""


class CollectionSettings(msgspec.Struct, frozen=True):
    name: str
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    exported_at: str
    originals: bool = False
    """Whether the archive holds the original files (the store does not keep them)."""


class ExportReport(msgspec.Struct, frozen=True):
    path: str
    collection: str
    documents: int
    chunks: int
    archive_bytes: int


class ImportReport(msgspec.Struct, frozen=True):
    collection: str
    documents: int
    chunks: int
    texts_embedded: int
    model_id: str


def export_collection(
    catalog: Catalog,
    name: str,
    out: Path,
    *,
    chunk_max_tokens: int,
    chunk_overlap_tokens: int,
    on_document: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write collection `name` of `catalog` into the archive `out`."""
    catalog.require_collection(name)
    documents = catalog.all_documents([name])
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix=".ragsvc-export-", dir=out.parent) as folder:
        staging = Path(folder)
        (staging / "embeddings").mkdir()
        hashes: dict[bytes, None] = {}
        chunks = 0
        with (staging / "documents.jsonl").open("wb") as lines:
            for done, row in enumerate(documents, 1):
                stored = catalog.stored_chunks(row.id)
                chunks += len(stored)
                for chunk in stored:
                    hashes.setdefault(chunk.text_hash, None)
                exported = NewDocument(
                    collection=name,
                    source_name=row.source_name,
                    media_type=row.media_type,
                    sha256=row.sha256,
                    byte_size=row.byte_size,
                    char_count=row.char_count,
                    external_id=row.external_id,
                    page_count=row.page_count,
                    metadata=row.metadata,
                    chunks=stored,
                )
                lines.write(msgspec.json.encode(exported) + b"\n")
                if on_document is not None:
                    on_document(done, len(documents))
        _write_embeddings(staging / "embeddings", catalog, list(hashes), catalog.dimension)
        settings = CollectionSettings(
            name=name,
            chunk_max_tokens=chunk_max_tokens,
            chunk_overlap_tokens=chunk_overlap_tokens,
            exported_at=utc_now(),
        )
        (staging / "collection.json").write_bytes(
            msgspec.json.format(msgspec.json.encode(settings))
        )
        seq = catalog.change_position()
        manifest = ArchiveManifest(
            kind="collection",
            created_at=utc_now(),
            model_id=catalog.model_id,
            dimension=catalog.dimension,
            change_seq=seq,
            documents=len(documents),
            chunks=chunks,
            members=staged_members(staging),
            collection=name,
        )
        write_archive_file(staging, manifest, out)
    return ExportReport(str(out), name, len(documents), chunks, out.stat().st_size)


def read_collection_archive(path: Path, on_bytes: Progress | None = None) -> ArchiveManifest:
    """The manifest of a whole collection archive; raises `ArchiveRejected` or
    `ImportRefused` (a backup, not a collection)."""
    manifest = verify(path, on_bytes)
    if manifest.kind != "collection" or manifest.collection is None:
        raise ImportRefused(f"{path.name} is a {manifest.kind}, not a collection export")
    return manifest


def import_collection(
    catalog: Catalog,
    path: Path,
    manifest: ArchiveManifest,
    *,
    collection: str | None = None,
    embed: Embed | None = None,
    on_document: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Load a verified collection archive into `catalog` as `collection` (default: its own
    name). Its embeddings are used when the archive's model is the store's; otherwise `embed`
    re-embeds the chunks, and without it the import is refused."""
    name = (collection or manifest.collection or "").strip()
    if not name or len(name) > MAX_NAME:
        raise ImportRefused(f"a collection name is 1 to {MAX_NAME} characters")
    same_model = (manifest.model_id, manifest.dimension) == (catalog.model_id, catalog.dimension)
    if not same_model and embed is None:
        raise ImportRefused(
            f"the archive was embedded with {manifest.model_id} (dimension "
            f"{manifest.dimension}) and this store with {catalog.model_id} (dimension "
            f"{catalog.dimension}); pass --reembed to embed its chunks with this store's model"
        )
    existing = {row[0]: row[1] for row in catalog.counts()}
    if existing.get(name):
        raise ImportRefused(
            f"collection {name!r} already holds {existing[name]} documents here; import it "
            "under another name with --collection NEW"
        )
    with tempfile.TemporaryDirectory(prefix=".ragsvc-import-", dir=catalog.data_dir) as folder:
        staging = Path(folder)
        extract(path, manifest, staging)
        stored = _read_embeddings(staging / "embeddings", manifest.dimension) if same_model else {}
        lines = staging / "documents.jsonl"
        # Every document is read once before any is stored: a bad line stores nothing.
        needed = {c.text_hash for document in _read_documents(lines, name) for c in document.chunks}
        if same_model and not needed <= stored.keys():
            raise ImportRefused(
                f"the archive holds no embedding for {len(needed - stored.keys())} of its "
                "chunk texts"
            )
        documents = chunks = embedded = 0
        for batch in _batches(_read_documents(lines, name)):
            vectors: dict[bytes, ChunkEmbedding] = {}
            texts = {c.text_hash: c for document in batch for c in document.chunks}
            if same_model:
                vectors = {h: stored[h] for h in texts}
            else:
                assert embed is not None
                cached = catalog.cached_hashes(catalog.model_id, texts)
                fresh = [c for h, c in texts.items() if h not in cached]
                vectors = dict(zip((c.text_hash for c in fresh), embed(fresh), strict=True))
                embedded += len(fresh)
            catalog.commit(batch, vectors)
            documents += len(batch)
            chunks += sum(len(d.chunks) for d in batch)
            if on_document is not None:
                on_document(documents, manifest.documents)
    return ImportReport(name, documents, chunks, embedded, catalog.model_id)


def _write_embeddings(folder: Path, catalog: Catalog, hashes: list[bytes], dimension: int) -> None:
    found = catalog.stored_embeddings(hashes)
    missing = [h for h in hashes if h not in found]
    if missing:
        raise ExportRefused(
            f"{len(missing)} chunk texts have no stored embedding for {catalog.model_id}; run "
            "`ragsvc rebuild --reembed` first"
        )
    width = len(hashes[0]) if hashes else 32
    np.save(
        folder / "hashes.npy", np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, width)
    )
    np.save(
        folder / "vectors.npy",
        np.stack([found[h].vector for h in hashes]).astype(np.float32)
        if hashes
        else np.zeros((0, dimension), np.float32),
    )
    with_sentences = [
        (e.sentence_spans, e.sentence_vectors)
        for e in (found[h] for h in hashes)
        if e.sentence_spans is not None and e.sentence_vectors is not None
    ]
    counts = [
        -1 if e.sentence_spans is None or e.sentence_vectors is None else len(e.sentence_vectors)
        for e in (found[h] for h in hashes)
    ]
    np.save(folder / "sentences.npy", np.array(counts, dtype=np.int32))
    np.save(
        folder / "spans.npy",
        np.concatenate([spans for spans, _ in with_sentences]).astype(np.int32)
        if with_sentences
        else np.zeros((0, 2), np.int32),
    )
    np.save(
        folder / "sentence_vectors.npy",
        np.concatenate([vectors for _, vectors in with_sentences]).astype(np.float16)
        if with_sentences
        else np.zeros((0, dimension), np.float16),
    )


def _read_embeddings(folder: Path, dimension: int) -> dict[bytes, ChunkEmbedding]:
    def load(name: str) -> np.ndarray:
        try:
            return np.load(folder / name, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ImportRefused(
                f"embeddings/{name} in the archive is unreadable: {error}"
            ) from None

    hashes, vectors, counts = load("hashes.npy"), load("vectors.npy"), load("sentences.npy")
    spans, sentence_vectors = load("spans.npy"), load("sentence_vectors.npy")
    if vectors.shape != (len(hashes), dimension) or len(counts) != len(hashes):
        raise ImportRefused("the archive's embeddings do not match its manifest")
    found: dict[bytes, ChunkEmbedding] = {}
    at = 0
    for number, row in enumerate(hashes):
        count = int(counts[number])
        if count < 0:
            found[row.tobytes()] = ChunkEmbedding(vectors[number])
            continue
        found[row.tobytes()] = ChunkEmbedding(
            vectors[number], spans[at : at + count], sentence_vectors[at : at + count]
        )
        at += count
    return found


def _read_documents(path: Path, collection: str) -> Iterator[NewDocument]:
    decoder = msgspec.json.Decoder(NewDocument)
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                document = decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                raise ImportRefused(f"documents.jsonl line {number}: {error}") from None
            yield msgspec.structs.replace(document, collection=collection)


def _batches(documents: Iterator[NewDocument]) -> Iterator[list[NewDocument]]:
    batch: list[NewDocument] = []
    for document in documents:
        batch.append(document)
        if len(batch) == COMMIT_DOCUMENTS:
            yield batch
            batch = []
    if batch:
        yield batch
