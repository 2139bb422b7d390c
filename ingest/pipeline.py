"""The ingestion pipeline: sources → extract, chunk → embed → commit, in overlapping stages.

    preparation thread   load, hash, skip known bytes, extract, chunk   ─┐ queue of documents
    calling thread       pool documents, embed only unseen chunk texts  ─┤ queue of pools
    writer thread        commit each pool in one transaction, report    ─┘

Embedding is the expensive stage; the other two run beside it, so the pipeline's throughput
stays close to the embedder's own. Chunks are pooled across documents (`pool_chunks`) so that
the embedder's length-sorted batches are well filled; the first pool is small and each next
one doubles up to `pool_chunks`, so the first documents are stored (and searchable) within
seconds of the start. A text is embedded at most once: texts with a stored embedding for the
model, and texts embedded earlier in the same run, are reused. An embedder that pools sentence
vectors from the chunk's own forward pass (`SentenceEmbedder`) stores them beside the chunk's.

Each pool is one transaction, so a document is stored complete or not at all; a per-document
`DocumentError` is reported as a failure and the run goes on.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import msgspec

from indexes import Catalog, ChunkEmbedding, NewChunk, NewDocument
from ingest.chunking import Chunker, sentence_spans
from ingest.embed.base import Embedder, SentenceEmbedder
from ingest.errors import DocumentError, EmptyDocument
from ingest.extract import Extracted, extract
from ingest.sources import Loaded, Source

Status = Literal["added", "replaced", "unchanged", "failed"]


Stage = Literal["extracting", "embedding"]


class DocumentOutcome(msgspec.Struct, frozen=True):
    name: str
    status: Status
    key: str = ""
    document_id: int | None = None
    chunks: int = 0
    reason: str | None = None
    """Why it failed; for a stored document, the limit that cut it short, if one did."""


class IngestReport(msgspec.Struct):
    outcomes: list[DocumentOutcome]
    texts_embedded: int
    seconds: float

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def chunks_stored(self) -> int:
        return sum(o.chunks for o in self.outcomes)


class _Prepared(NamedTuple):
    key: str
    document: NewDocument
    note: str | None = None
    """What the uploader should be told (`Extracted.notice`), reported with its outcome."""


class _Pool(NamedTuple):
    keys: list[str]
    documents: list[NewDocument]
    vectors: dict[bytes, ChunkEmbedding]
    notes: list[str | None]


END = object()
"""What `start_feeding` puts on its queue after the last source (and the writer's last pool)."""


def start_feeding(
    sources: Iterable[Source],
    prepare: Callable[[Source], Any],
    out: queue.Queue[Any],
    stop: threading.Event,
    failure: list[BaseException],
    *,
    name: str,
) -> threading.Thread:
    """Start a thread that puts `prepare(source)` on `out` for each source, until the sources
    end or `stop` is set, and then `END`. An error is kept in `failure` and sets `stop`."""

    def feed() -> None:
        try:
            for source in sources:
                if stop.is_set():
                    break
                out.put(prepare(source))
        except BaseException as error:
            failure.append(error)
            stop.set()
        finally:
            out.put(END)

    thread = threading.Thread(target=feed, name=name, daemon=True)
    thread.start()
    return thread


class IngestPipeline:
    def __init__(
        self,
        catalog: Catalog,
        embedder: Embedder,
        chunker: Chunker,
        *,
        pool_chunks: int = 1024,
        pool_wait: float = 0.5,
        first_pool_chunks: int = 32,
        lookahead: int = 256,
        extractor: Callable[[bytes, str], Extracted] = extract,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if embedder.model_id != catalog.model_id:
            raise ValueError(
                f"embedder {embedder.model_id!r} does not match the catalog's {catalog.model_id!r}"
            )
        self.catalog = catalog
        self.embedder = embedder
        self.chunker = chunker
        self.pool_chunks = pool_chunks
        self.pool_wait = pool_wait
        self.first_pool_chunks = min(first_pool_chunks, pool_chunks)
        self.lookahead = lookahead
        self.extractor = extractor
        """`ingest.extract.extract` in this process, or an `ExtractionSandbox`."""
        self.on_batch = on_batch
        """Told (chunks, seconds) after every embedding batch (the service's metrics)."""

    def close(self) -> None:
        """Stop the extractor's child process, if it has one."""
        close: Callable[[], None] | None = getattr(self.extractor, "close", None)
        if close is not None:
            close()

    def run(
        self,
        sources: Iterable[Source],
        *,
        collection: str = "default",
        metadata: dict[str, Any] | None = None,
        on_document: Callable[[DocumentOutcome], None] | None = None,
        on_stage: Callable[[str, Stage, int | None, int | None], None] | None = None,
    ) -> IngestReport:
        """Ingest every source into `collection` (or the one its `Loaded` names); returns
        one outcome per source. `sources` is consumed lazily, `lookahead` documents ahead of
        the embedder.

        `on_document` is called from the writer thread once a document is stored, skipped or
        failed; `on_stage(key, stage, pages, chunks)` from the preparation thread when a source
        starts extracting and when its chunks go to embedding.
        """
        started = time.perf_counter()
        prepared: queue.Queue[Any] = queue.Queue(maxsize=self.lookahead)
        pools: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        failure: list[BaseException] = []
        outcomes: list[DocumentOutcome] = []
        in_flight: dict[bytes, ChunkEmbedding] = {}
        in_flight_lock = threading.Lock()
        embedded = 0

        def report(outcome: DocumentOutcome) -> None:
            outcomes.append(outcome)
            if on_document is not None:
                on_document(outcome)

        def write() -> None:
            while True:
                item = pools.get()
                if item is END:
                    return
                if stop.is_set():
                    continue  # drain so the producer never blocks
                try:
                    if isinstance(item, DocumentOutcome):
                        report(item)
                        continue
                    assert isinstance(item, _Pool)
                    results = self.catalog.commit(item.documents, item.vectors)
                    for key, result, note in zip(item.keys, results, item.notes, strict=True):
                        report(
                            DocumentOutcome(
                                result.source_name,
                                result.action,
                                key,
                                result.document_id,
                                result.chunk_count,
                                note,
                            )
                        )
                    with in_flight_lock:
                        for text_hash in item.vectors:
                            in_flight.pop(text_hash, None)
                except BaseException as error:
                    failure.append(error)
                    stop.set()

        def embed_pool(pending: list[_Prepared]) -> None:
            nonlocal embedded
            documents = [p.document for p in pending]
            texts: dict[bytes, NewChunk] = {}
            for document in documents:
                for chunk in document.chunks:
                    texts.setdefault(chunk.text_hash, chunk)
            with in_flight_lock:
                vectors = {h: in_flight[h] for h in texts if h in in_flight}
            unseen = [h for h in texts if h not in vectors]
            cached = self.catalog.cached_hashes(self.embedder.model_id, unseen)
            todo = [h for h in unseen if h not in cached]
            if todo:
                fresh = dict(zip(todo, self._embed([texts[h] for h in todo]), strict=True))
                with in_flight_lock:
                    in_flight.update(fresh)
                vectors.update(fresh)
                embedded += len(todo)
            pools.put(
                _Pool([p.key for p in pending], documents, vectors, [p.note for p in pending])
            )

        preparer = start_feeding(
            sources,
            lambda source: self._prepare(source, collection, metadata or {}, on_stage),
            prepared,
            stop,
            failure,
            name="ingest-prepare",
        )
        writer = threading.Thread(target=write, name="ingest-writer", daemon=True)
        writer.start()
        try:
            pending: list[_Prepared] = []
            pending_chunks = 0
            pool_target = self.first_pool_chunks
            while not stop.is_set():
                try:
                    item = prepared.get(timeout=self.pool_wait)
                except queue.Empty:
                    # The preparation stage is slower than embedding: don't let the model idle.
                    if pending:
                        embed_pool(pending)
                        pending, pending_chunks = [], 0
                    continue
                if item is END:
                    break
                if isinstance(item, DocumentOutcome):
                    pools.put(item)
                    continue
                pending.append(item)
                pending_chunks += len(item.document.chunks)
                if pending_chunks >= pool_target:
                    embed_pool(pending)
                    pending, pending_chunks = [], 0
                    pool_target = min(self.pool_chunks, pool_target * 2)
            if pending and not stop.is_set():
                embed_pool(pending)
        except BaseException:
            stop.set()
            raise
        finally:
            pools.put(END)
            writer.join()
            if stop.is_set():
                _drain(prepared)
            preparer.join(timeout=5)
        if failure:
            raise failure[0]
        self.catalog.flush()
        return IngestReport(outcomes, embedded, time.perf_counter() - started)

    def _embed(self, chunks: list[NewChunk]) -> list[ChunkEmbedding]:
        started = time.perf_counter()
        embedded = embed_texts(self.embedder, chunks)
        if self.on_batch is not None:
            self.on_batch(len(chunks), time.perf_counter() - started)
        return embedded

    def _prepare(
        self,
        source: Source,
        collection: str,
        metadata: dict[str, Any],
        on_stage: Callable[[str, Stage, int | None, int | None], None] | None,
    ) -> _Prepared | DocumentOutcome:
        try:
            if on_stage is not None:
                on_stage(source.key, "extracting", None, None)
            loaded = load_new(self.catalog, source, collection)
            if isinstance(loaded, DocumentOutcome):
                return loaded
            document, capped = build_document(
                loaded, source.name, collection, metadata, self.extractor, self.chunker
            )
        except DocumentError as error:
            return DocumentOutcome(source.name, "failed", source.key, reason=str(error))
        except OSError as error:
            reason = f"cannot read: {error.strerror}"
            return DocumentOutcome(source.name, "failed", source.key, reason=reason)
        if on_stage is not None:
            on_stage(source.key, "embedding", document.page_count, len(document.chunks))
        return _Prepared(source.key, document, capped)


class NewBytes(NamedTuple):
    """A loaded source whose bytes are not yet in its collection."""

    loaded: Loaded
    collection: str
    sha256: str


def load_new(catalog: Catalog, source: Source, collection: str) -> NewBytes | DocumentOutcome:
    """Read a source and hash its bytes: an "unchanged" outcome when its collection already
    holds them. Raises what `Source.load` raises."""
    loaded = source.load()
    collection = loaded.collection or collection
    sha256 = hashlib.sha256(loaded.data).hexdigest()
    existing = catalog.find_by_sha256(collection, sha256)
    if existing is not None:
        return DocumentOutcome(source.name, "unchanged", source.key, existing)
    return NewBytes(loaded, collection, sha256)


def build_document(
    new: NewBytes,
    name: str,
    collection: str,
    metadata: dict[str, Any],
    extractor: Callable[[bytes, str], Extracted],
    chunker: Chunker,
) -> tuple[NewDocument, str | None]:
    """Extract (unless the source is text already) and chunk: the document to embed, and
    what its uploader should be told (a limit that cut it short, pages left out or read by
    OCR: `Extracted.notice`), if anything. Raises `DocumentError` subclasses."""
    loaded = new.loaded
    extracted = loaded.extracted or extractor(loaded.data, name)
    metadata = {**metadata, **loaded.metadata}
    given = metadata.get("title")  # the uploader's word over the file's own property
    chunks = chunker.chunk(extracted, title=given if isinstance(given, str) else None)
    if not chunks:
        raise EmptyDocument("no text to index")
    document = NewDocument(
        collection=new.collection or collection,
        source_name=name,
        external_id=loaded.external_id,
        media_type=extracted.media_type,
        sha256=new.sha256,
        byte_size=len(loaded.data),
        char_count=len(extracted.text),
        page_count=extracted.page_count,
        metadata=metadata,
        chunks=chunks,
    )
    return document, extracted.notice


def embed_texts(embedder: Embedder, chunks: list[NewChunk]) -> list[ChunkEmbedding]:
    """Embeddings of the chunks' embedded texts (context and text), with their sentences'
    vectors where the embedder pools them: the sentences of the text alone, with spans in it."""
    texts = [chunk.embedded_text for chunk in chunks]
    if not isinstance(embedder, SentenceEmbedder):
        return [ChunkEmbedding(v) for v in embedder.embed_documents(texts)]
    shifts = [len(full) - len(chunk.text) for full, chunk in zip(texts, chunks, strict=True)]
    spans = [
        [(start + shift, end + shift) for start, end in sentence_spans(chunk.text)]
        for chunk, shift in zip(chunks, shifts, strict=True)
    ]
    embedded = embedder.embed_chunks(texts, spans)
    return [
        e._replace(sentence_spans=e.sentence_spans - shift)
        if shift and e.sentence_spans is not None
        else e
        for e, shift in zip(embedded, shifts, strict=True)
    ]


def _drain(items: queue.Queue[Any]) -> None:
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
