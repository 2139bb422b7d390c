"""Ingestion on Ray: extraction, chunking and embedding run as Ray Data batches on an actor
pool that holds the model, while the calling process stays the single writer.

    this process (driver, single writer)                 Ray cluster
    sources ─ read, hash, skip known bytes ─▶ window ─▶ from_items ─▶ map_batches(DocumentWorker)
                                                                     actor pool, one model each:
                                                                     extract → chunk → embed
    commit, at most `commit_chunks` a transaction ◀── iter_batches ◀─┘

The driver reads every source itself, so the cluster needs no access to the files, and it
skips bytes its collection already holds before anything is sent. Documents go to Ray in
windows (at most `WINDOW_DOCUMENTS` documents or `WINDOW_BYTES` bytes, or whatever arrived
before the sources paused for `pause`), each one Ray Data run; within a window results stream
back as each batch is done and are committed batch by batch (in transactions of at most
`commit_chunks` chunks), so the first documents are searchable seconds after the actors
start, long before the window ends. Each window starts its actors afresh
(the model loads once per window, seconds against minutes of embedding in a full one).

Nothing is lost or stored twice when any part dies: a document is acknowledged (reported)
only after its transaction commits, and a run started again skips what was committed by
content hash. `DocumentError`s of one document are reported as its failure; anything else
(an actor that keeps dying, a lost cluster) fails the run, as in the local pipeline.

`RayIngestPipeline.run` has `IngestPipeline.run`'s signature, so the service's job runner
and `ragsvc ingest --engine ray` drive either one.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec
import numpy as np

from indexes import Catalog, ChunkEmbedding, NewChunk, NewDocument
from ingest.chunking import Chunker
from ingest.embed import EmbedderConfig, load_embedder
from ingest.errors import DocumentError, EmbedderUnavailable
from ingest.extract.base import ExtractionLimits
from ingest.pipeline import (
    END,
    DocumentOutcome,
    IngestReport,
    NewBytes,
    Stage,
    build_document,
    embed_texts,
    load_new,
    start_feeding,
)
from ingest.sources import Loaded, Source

WINDOW_DOCUMENTS = 10_000
WINDOW_BYTES = 256 * 1024 * 1024
logger = logging.getLogger(__name__)


class RayOptions(msgspec.Struct, frozen=True):
    address: str = ""
    """A running cluster (`auto`, `HOST:PORT`, `ray://HOST:10001`); empty starts a local Ray
    inside this process, stopped when it exits."""
    actors: int = 1
    """Embedding actors, each holding one copy of the model."""
    actor_cpus: float = 2.0
    """CPUs each actor reserves; also its torch threads."""
    batch_documents: int = 32
    """Documents per actor call."""
    commit_chunks: int = 512
    """Chunks per transaction on the writer."""


class DocumentWork(msgspec.Struct, frozen=True):
    """One document on its way to the cluster."""

    key: str
    name: str
    collection: str
    sha256: str
    data: bytes
    external_id: str | None
    metadata: dict[str, Any]
    text: str | None = None
    """Set when the source is text already (a JSONL record); then `data` is not extracted."""


class Embedded(msgspec.Struct, frozen=True):
    """What comes back for one document: the document and its chunks' embeddings, or why
    it failed."""

    key: str
    name: str
    document: NewDocument | None = None
    hashes: list[bytes] = []
    vectors: bytes = b""
    """float32 (chunks, dimension), in the order of `hashes`."""
    sentence_spans: list[bytes] = []
    """int32 (sentences, 2) per chunk (empty: none)."""
    sentence_vectors: list[bytes] = []
    """float16 (sentences, dimension) per chunk."""
    note: str | None = None
    reason: str | None = None


class WorkerConfig(msgspec.Struct, frozen=True):
    """What an actor needs to build its extractor, chunker and embedder."""

    embedder: EmbedderConfig
    chunk_max_tokens: int | None
    chunk_overlap: int
    limits: ExtractionLimits
    sandbox: bool
    threads: int


class DocumentWorker:
    """The Ray Data actor: extract, chunk and embed a batch of documents."""

    def __init__(self, config: bytes) -> None:
        from ingest.sandbox import make_extractor

        settings = msgspec.msgpack.decode(config, type=WorkerConfig)
        try:
            import torch

            torch.set_num_threads(max(1, settings.threads))
        except ImportError:
            pass
        self.embedder = load_embedder(settings.embedder)
        self.chunker = Chunker(
            self.embedder, max_tokens=settings.chunk_max_tokens, overlap=settings.chunk_overlap
        )
        self.extractor = make_extractor(settings.limits, sandbox=settings.sandbox)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared: list[tuple[DocumentWork, NewDocument, str | None]] = []
        results: list[Embedded] = []
        for payload in batch["work"]:
            work = msgspec.msgpack.decode(payload, type=DocumentWork)
            try:
                document, note = build_document(
                    _new_bytes(work), work.name, work.collection, {}, self.extractor, self.chunker
                )
            except DocumentError as error:
                results.append(Embedded(work.key, work.name, reason=str(error)))
                continue
            prepared.append((work, document, note))
        texts: dict[bytes, NewChunk] = {}
        for _, document, _ in prepared:
            for chunk in document.chunks:
                texts.setdefault(chunk.text_hash, chunk)
        embedded = dict(zip(texts, embed_texts(self.embedder, list(texts.values())), strict=True))
        for work, document, note in prepared:
            hashes = list(dict.fromkeys(c.text_hash for c in document.chunks))
            vectors = [embedded[h] for h in hashes]
            results.append(
                Embedded(
                    work.key,
                    work.name,
                    document,
                    hashes,
                    np.stack([v.vector for v in vectors]).astype(np.float32).tobytes(),
                    [
                        b"" if v.sentence_spans is None else v.sentence_spans.tobytes()
                        for v in vectors
                    ],
                    [
                        b"" if v.sentence_vectors is None else v.sentence_vectors.tobytes()
                        for v in vectors
                    ],
                    note,
                )
            )
        encoded = [msgspec.msgpack.encode(r) for r in results]
        return {"result": np.array(encoded, dtype=object)}

    def __del__(self) -> None:
        close: Callable[[], None] | None = getattr(getattr(self, "extractor", None), "close", None)
        if close is not None:
            close()


def _new_bytes(work: DocumentWork) -> NewBytes:
    from ingest.extract.base import Extracted

    if work.text is None:
        loaded = Loaded(work.data, work.external_id, work.metadata, None, work.collection)
    else:  # sent once, as text: the bytes that identify it are that text's
        extracted = Extracted("text/plain", work.text)
        data = work.text.encode("utf-8")
        loaded = Loaded(data, work.external_id, work.metadata, extracted, work.collection)
    return NewBytes(loaded, work.collection, work.sha256)


def connect(options: RayOptions) -> None:
    """Join the cluster `options.address` names, or start a local Ray with room for the
    actors and for Ray Data's own tasks beside them."""
    try:
        import ray
    except ImportError:
        raise EmbedderUnavailable("the ray engine needs Ray: pip install 'ragsvc[ray]'") from None
    if ray.is_initialized():
        return
    common: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if options.address:
        ray.init(address=options.address, **common)
    else:
        # Ray Data's read tasks need CPUs of their own beside the actors, or nothing moves.
        ray.init(num_cpus=int(options.actors * options.actor_cpus) + 2, **common)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


class _Window(NamedTuple):
    items: list[DocumentWork]
    size: int


class RayIngestPipeline:
    """`IngestPipeline`'s contract, with extraction, chunking and embedding on Ray."""

    def __init__(
        self,
        catalog: Catalog,
        embedder_config: EmbedderConfig,
        *,
        options: RayOptions | None = None,
        chunk_max_tokens: int | None = None,
        chunk_overlap: int = 32,
        limits: ExtractionLimits | None = None,
        sandbox: bool = True,
        pause: float = 0.5,
        window_documents: int = WINDOW_DOCUMENTS,
        window_bytes: int = WINDOW_BYTES,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        options = options or RayOptions()
        self.catalog = catalog
        self.options = options
        self.pause = pause
        self.window_documents = window_documents
        self.window_bytes = window_bytes
        self.on_batch = on_batch
        self._config = msgspec.msgpack.encode(
            WorkerConfig(
                embedder_config,
                chunk_max_tokens,
                chunk_overlap,
                limits or ExtractionLimits(),
                sandbox,
                max(1, int(options.actor_cpus)),
            )
        )

    def close(self) -> None:
        """Leave Ray running: a local instance ends with this process."""

    def run(
        self,
        sources: Iterable[Source],
        *,
        collection: str = "default",
        metadata: dict[str, Any] | None = None,
        on_document: Callable[[DocumentOutcome], None] | None = None,
        on_stage: Callable[[str, Stage, int | None, int | None], None] | None = None,
    ) -> IngestReport:
        connect(self.options)
        started = time.perf_counter()
        outcomes: list[DocumentOutcome] = []
        embedded = 0
        read: queue.Queue[Any] = queue.Queue(maxsize=self.window_documents)
        stop = threading.Event()
        failure: list[BaseException] = []

        def report(outcome: DocumentOutcome) -> None:
            outcomes.append(outcome)
            if on_document is not None:
                on_document(outcome)

        thread = start_feeding(
            sources,
            lambda source: self._read(source, collection, metadata or {}, on_stage),
            read,
            stop,
            failure,
            name="ray-ingest-reader",
        )
        try:
            ended = False
            while not ended:
                window: list[DocumentWork] = []
                size = 0
                while len(window) < self.window_documents and size < self.window_bytes:
                    try:
                        item = read.get(timeout=self.pause if window else None)
                    except queue.Empty:
                        break  # the sources paused: send what we have
                    if item is END:
                        ended = True
                        break
                    if isinstance(item, DocumentOutcome):
                        report(item)
                        continue
                    window.append(item)
                    size += len(item.data) + len(item.text or "")
                if window:
                    embedded += self._run_window(window, report, on_stage)
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    read.get(timeout=0.1)
            thread.join()
        if failure:
            raise failure[0]
        self.catalog.flush()
        return IngestReport(outcomes, embedded, time.perf_counter() - started)

    def _read(
        self,
        source: Source,
        collection: str,
        metadata: dict[str, Any],
        on_stage: Callable[[str, Stage, int | None, int | None], None] | None,
    ) -> DocumentWork | DocumentOutcome:
        try:
            if on_stage is not None:
                on_stage(source.key, "extracting", None, None)
            new = load_new(self.catalog, source, collection)
        except DocumentError as error:
            return DocumentOutcome(source.name, "failed", source.key, reason=str(error))
        except OSError as error:
            reason = f"cannot read: {error.strerror}"
            return DocumentOutcome(source.name, "failed", source.key, reason=reason)
        if isinstance(new, DocumentOutcome):
            return new
        loaded = new.loaded
        return DocumentWork(
            key=source.key,
            name=source.name,
            collection=new.collection,
            sha256=new.sha256,
            data=b"" if loaded.extracted is not None else loaded.data,
            external_id=loaded.external_id,
            metadata={**metadata, **loaded.metadata},
            text=None if loaded.extracted is None else loaded.extracted.text,
        )

    def _run_window(
        self,
        window: list[DocumentWork],
        report: Callable[[DocumentOutcome], None],
        on_stage: Callable[[str, Stage, int | None, int | None], None] | None,
    ) -> int:
        """Send one window through Ray and commit what comes back; returns texts embedded."""
        import ray

        options = self.options
        dataset = ray.data.from_items(
            [{"work": msgspec.msgpack.encode(w)} for w in window],
            override_num_blocks=max(1, -(-len(window) // options.batch_documents)),
        ).map_batches(
            DocumentWorker,
            fn_constructor_args=(self._config,),
            batch_size=options.batch_documents,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.actors),
            num_cpus=options.actor_cpus,
        )
        pending: list[tuple[Embedded, NewDocument]] = []
        pending_chunks = 0
        embedded = 0
        last = time.perf_counter()
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            texts = 0
            for payload in batch["result"]:
                result = msgspec.msgpack.decode(payload, type=Embedded)
                document = result.document
                if document is None:
                    report(DocumentOutcome(result.name, "failed", result.key, reason=result.reason))
                    continue
                if on_stage is not None:
                    on_stage(result.key, "embedding", document.page_count, len(document.chunks))
                pending.append((result, document))
                pending_chunks += len(document.chunks)
                texts += len(result.hashes)
                if pending_chunks >= options.commit_chunks:
                    self._commit(pending, report)
                    pending, pending_chunks = [], 0
            self._commit(pending, report)  # each batch as it arrives: searchable early
            pending, pending_chunks = [], 0
            embedded += texts
            if self.on_batch is not None:
                now = time.perf_counter()
                self.on_batch(texts, now - last)
                last = now
        return embedded

    def _commit(
        self, pending: list[tuple[Embedded, NewDocument]], report: Callable[[DocumentOutcome], None]
    ) -> None:
        if not pending:
            return
        dimension = self.catalog.dimension
        vectors: dict[bytes, ChunkEmbedding] = {}
        for result, _ in pending:
            matrix = np.frombuffer(result.vectors, dtype=np.float32).reshape(-1, dimension)
            for i, text_hash in enumerate(result.hashes):
                spans = result.sentence_spans[i] if result.sentence_spans else b""
                sentences = result.sentence_vectors[i] if result.sentence_vectors else b""
                vectors[text_hash] = ChunkEmbedding(
                    matrix[i],
                    np.frombuffer(spans, dtype=np.int32).reshape(-1, 2) if spans else None,
                    np.frombuffer(sentences, dtype=np.float16).reshape(-1, dimension)
                    if sentences
                    else None,
                )
        results = self.catalog.commit([document for _, document in pending], vectors)
        for (embedded, _), committed in zip(pending, results, strict=True):
            report(
                DocumentOutcome(
                    committed.source_name,
                    committed.action,
                    embedded.key,
                    committed.document_id,
                    committed.chunk_count,
                    embedded.note,
                )
            )
