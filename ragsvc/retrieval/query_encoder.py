"""Query embeddings for the service: a small cache, and micro-batching of concurrent requests.

    request threads ──embed_query──▶ cache? ──miss──▶ queue ──▶ batcher thread
    the event loop ──embed_query_async──▶ ...  ─────────┘         one forward pass for every
                                                                  query waiting (up to
                                                                  `max_batch`), each caller
                                                                  gets exactly its own vector

A query that arrives while a forward pass runs waits for the next one and shares it with the
others that arrived meanwhile (at most `max_batch`: on two cores a batch of 4 or 8 queries
cost about 3.2 ms a query against 4.4 alone, and longer batches only pad more and hold more
memory); `batch_wait` (seconds) can hold an idle batcher a little longer
for company. Identical questions in one batch are embedded once. Answers to repeated
questions come from an LRU cache keyed by the exact text, which is also how the extractive
answerer reuses the vector retrieval computed: a question is embedded once per request.

The service's routes wait with `embed_query_async`: the batcher resolves their futures on the
event loop, so a request holds no thread while its query is in the queue (under 32 clients a
blocked thread per waiting query cost CPU in hand-offs and kept batches short).

`QueryEncoder` is itself an `Embedder`: token offsets and document batches pass through.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ingest import Embedder


class _Request:
    __slots__ = ("done", "error", "future", "text", "vector")

    def __init__(self, text: str, future: asyncio.Future[np.ndarray] | None = None) -> None:
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.future = future  # an event loop's waiter, resolved on its loop

    def finish(self) -> None:
        self.done.set()
        future = self.future
        if future is not None:
            future.get_loop().call_soon_threadsafe(_resolve, future, self.vector, self.error)


def _resolve(
    future: asyncio.Future[np.ndarray], vector: np.ndarray | None, error: BaseException | None
) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert vector is not None
        future.set_result(vector)


class QueryEncoder:
    def __init__(
        self,
        embedder: Embedder,
        *,
        cache_size: int = 1024,
        max_batch: int = 8,
        batch_wait: float = 0.0,
    ) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self.max_tokens = embedder.max_tokens
        self.special_tokens = embedder.special_tokens
        self.cache_size = max(1, cache_size)
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.cache_hits = 0
        self.cache_misses = 0
        self.forward_passes = 0
        self.batched_queries = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="query-batcher", daemon=True)
        self._thread.start()

    # -- the Embedder contract ---------------------------------------------------------------

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.embedder.token_offsets(text)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        cached = self._cached(text)
        if cached is not None:
            return cached
        request = _Request(text)
        self._enqueue(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.vector is not None
        self._keep(text, request.vector)
        return request.vector

    async def embed_query_async(self, text: str) -> np.ndarray:
        """`embed_query` for a coroutine: it waits on its event loop, holding no thread."""
        cached = self._cached(text)
        if cached is not None:
            return cached
        request = _Request(text, asyncio.get_running_loop().create_future())
        self._enqueue(request)
        assert request.future is not None
        vector = await request.future
        self._keep(text, vector)
        return vector

    def _cached(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
            else:
                self.cache_misses += 1
            return cached

    def _keep(self, text: str, vector: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _enqueue(self, request: _Request) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the query encoder is closed")
            self._queue.append(request)
            self._wake.notify()

    def swap(self, embedder: Embedder) -> None:
        """Embed with `embedder` from now on (the store moved to its model); the cached
        vectors of the old model go. A batch under way finishes with the old one: callers
        compare `model_id` before and after (see `retrieval.retrieve`)."""
        with self._wake, self._cache_lock:
            self.embedder = embedder
            self.dimension = embedder.dimension
            self.max_tokens = embedder.max_tokens
            self.special_tokens = embedder.special_tokens
            self._cache.clear()
            self.model_id = embedder.model_id

    # -- batching ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
                if self.batch_wait > 0 and len(self._queue) < self.max_batch:
                    self._wake.wait(self.batch_wait)
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            self._encode(batch)

    def _encode(self, batch: list[_Request]) -> None:
        texts = list(dict.fromkeys(r.text for r in batch))
        try:
            vectors = self.embedder.embed_documents(texts)
        except BaseException as error:
            for request in batch:
                request.error = error
                request.finish()
            return
        self.forward_passes += 1
        self.batched_queries += len(batch)
        by_text = {text: vectors[i] for i, text in enumerate(texts)}
        for request in batch:
            vector = by_text[request.text].copy()
            vector.setflags(write=False)
            request.vector = vector
            request.finish()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5)
