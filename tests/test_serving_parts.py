"""The parts the serving path is made of: the ONNX query embedder against torch, micro-batching,
bf16 documents, stored sentence vectors and the rerank shortlist, fair job scheduling, and
recovery from a pruned log."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from indexes import Catalog
from indexes.store import Store
from ingest import (
    Chunker,
    Embedder,
    EmbedderConfig,
    IngestPipeline,
    file_sources,
    load_embedder,
    load_query_embedder,
)
from ingest.chunking import sentence_spans
from ingest.embed import onnx_folder
from ingest.embed.exported import ExportedEmbedder, load_export
from ingest.errors import EmbedderUnavailable
from ingest.sources import TextSource
from ragsvc.answering.base import Passage
from ragsvc.answering.extractive import ExtractiveBackend
from ragsvc.jobs.queue import JobQueue, NewJob
from ragsvc.retrieval.query_encoder import QueryEncoder
from ragsvc.retrieval.retriever import passages, retrieve
from ragsvc.settings import Settings
from tests.support.data import dataset, write_corpus


@pytest.fixture(scope="module")
def onnx_embedder() -> Embedder:
    cache = os.environ["RAGSVC_MODEL_CACHE_DIR"]  # set by conftest for the session
    embedder = load_query_embedder(EmbedderConfig(onnx_cache=cache, query_runtime="onnx"))
    assert isinstance(embedder, ExportedEmbedder)
    assert embedder.runtime == "onnxruntime-fp32"
    return embedder


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_query_runtimes_embed_every_scifact_query_as_torch_fp32_does(runtime: str) -> None:
    cache = os.environ["RAGSVC_MODEL_CACHE_DIR"]
    query_embedder = load_query_embedder(EmbedderConfig(onnx_cache=cache, query_runtime=runtime))
    assert isinstance(query_embedder, ExportedEmbedder)
    assert query_embedder.runtime.startswith(
        {"onnx": "onnxruntime", "openvino": "openvino"}[runtime]
    )
    fp32 = load_embedder(EmbedderConfig(precision="fp32"))
    path = dataset("scifact", "queries.jsonl")
    queries = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    reference = fp32.embed_documents(queries)
    one_by_one = np.stack([query_embedder.embed_query(q) for q in queries])
    assert len(queries) > 1000
    assert float((one_by_one * reference).sum(axis=1).min()) >= 0.9999
    # Batches run on their own compiled model (one thread for OpenVINO): the same vectors.
    batched = np.concatenate(
        [query_embedder.embed_documents(queries[i : i + 8]) for i in range(0, 256, 8)]
    )
    assert float((batched * reference[:256]).sum(axis=1).min()) >= 0.9999
    assert query_embedder.token_offsets("Tides follow the moon.") == fp32.token_offsets(
        "Tides follow the moon."
    )


def test_auto_prefers_openvino_and_a_runtime_that_embeds_differently_is_refused(
    tmp_path: Path,
) -> None:
    cache = os.environ["RAGSVC_MODEL_CACHE_DIR"]
    auto = load_query_embedder(EmbedderConfig(onnx_cache=cache))
    assert isinstance(auto, ExportedEmbedder)
    assert auto.runtime.startswith("openvino")
    folder = tmp_path / "export"
    source = onnx_folder(EmbedderConfig(onnx_cache=cache))
    assert source is not None
    shutil.copytree(source, folder)
    check = np.load(folder / "check.npy")
    np.save(folder / "check.npy", np.roll(check, 1, axis=0))  # vectors of other texts
    with pytest.raises(EmbedderUnavailable, match="embeds differently"):
        load_export(folder, runtime="onnx")


def _batching_encoder(
    embedder: Embedder, topic: str
) -> tuple[QueryEncoder, list[str], dict[str, np.ndarray]]:
    """An encoder that waits 5 ms for company, 24 distinct questions, and their vectors."""
    encoder = QueryEncoder(embedder, cache_size=1024, batch_wait=0.005)
    texts = [f"question number {i} about {topic} and {i * 7} more" for i in range(24)]
    return encoder, texts, {t: embedder.embed_query(t) for t in texts}


def test_concurrent_queries_share_forward_passes_and_get_their_own_vectors(
    onnx_embedder: Embedder,
) -> None:
    encoder, texts, expected = _batching_encoder(onnx_embedder, "glaciers")
    results: dict[str, np.ndarray] = {}
    start = threading.Barrier(len(texts))

    def ask(text: str) -> None:
        start.wait()
        results[text] = encoder.embed_query(text)

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for text in texts:
            assert float(results[text] @ expected[text]) >= 0.9999
        assert encoder.batched_queries == len(texts)
        assert encoder.forward_passes < len(texts)  # some of them shared a pass
        before = encoder.forward_passes
        assert float(encoder.embed_query(texts[0]) @ expected[texts[0]]) >= 0.9999
        assert encoder.forward_passes == before and encoder.cache_hits == 1  # from the cache
    finally:
        encoder.close()


class _FailingEmbedder:
    """An embedder whose model fails on every pass."""

    model_id, dimension, max_tokens, special_tokens = "failing", 4, 16, 2

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        raise ValueError("the model failed")

    def embed_query(self, text: str) -> np.ndarray:
        raise ValueError("the model failed")


def test_queries_awaited_on_one_event_loop_share_passes_and_get_their_own_vectors(
    onnx_embedder: Embedder,
) -> None:
    encoder, texts, expected = _batching_encoder(onnx_embedder, "tides")

    async def ask_all() -> list[np.ndarray]:
        return list(await asyncio.gather(*(encoder.embed_query_async(t) for t in texts)))

    try:
        vectors = asyncio.run(ask_all())  # one thread: each waits without blocking it
        for text, vector in zip(texts, vectors, strict=True):
            assert float(vector @ expected[text]) >= 0.9999
        assert encoder.batched_queries == len(texts)
        assert encoder.forward_passes < len(texts)
        assert asyncio.run(encoder.embed_query_async(texts[3])) is vectors[3]  # the cache
    finally:
        encoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(encoder.embed_query_async("after close"))


def test_a_failing_query_model_fails_every_awaiting_request() -> None:
    encoder = QueryEncoder(_FailingEmbedder(), batch_wait=0.005)

    async def ask_all() -> list[np.ndarray | BaseException]:
        asks = (encoder.embed_query_async(f"question {i}") for i in range(5))
        return list(await asyncio.gather(*asks, return_exceptions=True))

    try:
        results = asyncio.run(ask_all())
        assert all(isinstance(r, ValueError) and "failed" in str(r) for r in results)
        with pytest.raises(ValueError, match="failed"):
            encoder.embed_query("a waiting thread fails too")
    finally:
        encoder.close()


def test_bf16_documents_stay_within_cosine_of_fp32() -> None:
    texts = [f"Document {i}: volcanoes erupt when magma rises through cracks." for i in range(8)]
    texts += ["A much longer text about photosynthesis and sugar. " * 20]
    fp32 = load_embedder(EmbedderConfig(precision="fp32")).embed_documents(texts)
    bf16 = load_embedder(EmbedderConfig(precision="bf16")).embed_documents(texts)
    assert float((fp32 * bf16).sum(axis=1).min()) >= 0.9995


def _stored_and_retrieved(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, name: str, text: str, question: str
) -> list[Passage]:
    """`text` ingested as one document, and the passage the question retrieves from it."""
    IngestPipeline(catalog, embedder, chunker).run([TextSource(name, text)], collection="c")
    hits = retrieve(catalog, embedder, Settings(), question, k=1, need_vector=True).hits
    return passages(catalog, hits)


def test_sentence_vectors_are_stored_and_answer_without_embedding_sentences(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    text = (
        "The lighthouse keeper logs the weather every morning. Storm warnings are raised with "
        "a red flag on the east tower. Ships anchor in the bay when the flag is up."
    )
    question = "What signals a storm warning?"
    (passage,) = _stored_and_retrieved(catalog, embedder, chunker, "notes", text, question)
    assert passage.sentence_spans.tolist() == [list(s) for s in sentence_spans(passage.text)]
    vectors = np.asarray(passage.sentence_vectors)
    encoded = embedder.embed_documents(
        [passage.text[a:b] for a, b in passage.sentence_spans.tolist()]
    )
    # Pooled in context, not equal to sentences embedded alone, but about the same thing.
    assert vectors.shape == encoded.shape
    assert float((vectors * encoded).sum(axis=1).min()) > 0.6

    class NoSentenceEmbedding:
        """The query side only: embedding documents here would be a wasted model call."""

        def embed_query(self, text: str) -> np.ndarray:
            return embedder.embed_query(text)

        def embed_documents(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("sentences were embedded at answer time")

    answerer = ExtractiveBackend(
        NoSentenceEmbedding(), min_confidence=0.0, sentence_vectors="stored"
    )  # type: ignore[arg-type]
    answer = answerer.answer(question, [passage])
    assert "red flag" in answer.text and answer.citations == [1]


class Recording:
    """The real embedder, keeping the sentences it was asked to embed."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.embedded: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(text)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.embedded += texts
        return self.embedder.embed_documents(texts)


def test_rerank_embeds_only_the_shortlist_and_agrees_with_encoding_every_sentence(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    text = (
        "The ferry leaves the harbour at seven. Tickets are sold at the kiosk beside the pier. "
        "Bicycles travel free on weekdays. Dogs must stay on a lead on the upper deck. The last "
        "crossing back departs at nine in the evening."
    )
    question = "What time does the last crossing back depart?"
    context = _stored_and_retrieved(catalog, embedder, chunker, "ferry", text, question)
    sentences = len(context[0].sentence_spans)
    assert sentences == 5

    seen = Recording(embedder)
    reranked = ExtractiveBackend(seen, min_confidence=0.0, sentence_vectors="rerank", rerank=2)  # type: ignore[arg-type]
    answer = reranked.answer(question, context)
    assert len(seen.embedded) == 2  # the shortlist, not every sentence
    assert "nine in the evening" in answer.text
    everything = ExtractiveBackend(embedder, min_confidence=0.0, sentence_vectors="encode")
    wide = ExtractiveBackend(embedder, min_confidence=0.0, sentence_vectors="rerank", rerank=9)
    expected = everything.answer(question, context)
    assert wide.answer(question, context) == expected  # a shortlist of all is `encode`
    assert answer.text == expected.text and answer.confidence == expected.confidence


def test_a_decision_near_the_threshold_is_made_again_on_sentences_embedded_alone(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    """Stored sentence vectors approximate the evidence the threshold was set for; where the
    approximation could decide, the shortlist is embedded and the decision made on that."""
    text = (
        "The ferry leaves the harbour at seven. Tickets are sold at the kiosk beside the pier. "
        "Bicycles travel free on weekdays. The last crossing back departs at nine."
    )
    question = "When does the last crossing back depart?"
    context = _stored_and_retrieved(catalog, embedder, chunker, "ferry", text, question)

    clear = Recording(embedder)
    stored = ExtractiveBackend(clear, min_confidence=0.01, rerank=2).answer(question, context)  # type: ignore[arg-type]
    assert stored.answerable and clear.embedded == []  # far above the threshold: no model call
    # A threshold at the stored evidence itself: that decision is made on the shortlist.
    close = Recording(embedder)
    again = ExtractiveBackend(close, min_confidence=stored.confidence, rerank=2)  # type: ignore[arg-type]
    answer = again.answer(question, context)
    assert len(close.embedded) == 2
    exact = ExtractiveBackend(embedder, min_confidence=0.0, sentence_vectors="rerank", rerank=2)
    assert answer.confidence == exact.answer(question, context).confidence != stored.confidence
    assert "nine" in answer.text or not answer.answerable


def test_jobs_are_taken_round_robin_across_uploads_and_retried_ones_alone(
    tmp_path: Path,
) -> None:
    queue = JobQueue(tmp_path, max_attempts=2)
    big = queue.create([NewJob("c", f"big-{i}.txt", b"x") for i in range(50)])
    (small,) = queue.create([NewJob("c", "one-page.txt", b"y")])
    taken = queue.take(4)
    assert small.id in {j.id for j in taken}
    assert {j.state for j in taken} == {"extracting"} and {j.attempts for j in taken} == {1}
    # The worker dies: the four go back to the queue, then come back one at a time.
    assert queue.requeue_interrupted() == (4, 0)
    retried = queue.take(4)
    assert len(retried) == 1 and retried[0].attempts == 2
    assert queue.requeue_interrupted() == (0, 1)  # out of attempts: failed for good
    failed = queue.get(retried[0].id)
    assert failed.state == "failed" and "gave up after 2 attempts" in (failed.error or "")
    assert big[0].upload_id != small.upload_id
    queue.close()


def test_a_late_upload_is_taken_within_one_turn_of_every_upload(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    for name in ("a", "b", "c"):
        queue.create([NewJob("c", f"{name}-{i}.txt", b"x") for i in range(20)])
    order = [j.file_name for j in queue.take(2)]  # the worker is busy with a and b...
    queue.create([NewJob("c", "late.txt", b"y")])  # ...when one more file comes
    while len(order) < 8:
        order += [j.file_name for j in queue.take(2)]
    # Turn one of every upload (a, b, c, late), then turn two: no upload waits for another.
    assert order[:4] == ["a-0.txt", "b-0.txt", "c-0.txt", "late.txt"]
    assert order[4:8] == ["a-1.txt", "b-1.txt", "c-1.txt", "a-2.txt"]
    queue.close()


def test_a_reader_behind_a_pruned_change_log_catches_up_by_ids(
    data_dir: Path, embedder: Embedder, chunker: Chunker, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "a", 4, seed=1)
    write_corpus(tmp_path / "b", 4, seed=2)
    with Catalog.open(data_dir, model_id=embedder.model_id, dimension=embedder.dimension) as one:
        IngestPipeline(one, embedder, chunker).run(file_sources([tmp_path / "a"]))
        follower = Catalog.open(data_dir, readonly=True)
        follower.reader  # noqa: B018 (loaded now, then left behind)
        IngestPipeline(one, embedder, chunker).run(file_sources([tmp_path / "b"]))
        one.delete_document(one.store.documents()[0].id)
        with one.store.write(bump_generation=False) as conn:
            Store.prune_changes(conn, Store.change_seq(conn))  # forget every change
        expected = one.store.chunk_ids().tolist()
    assert follower.refresh()
    assert sorted(follower.reader.state.dense.ids().tolist()) == expected
    assert sorted(follower.reader.state.lexical.ids().tolist()) == expected
    follower.close()


def test_sentence_vectors_of_a_chunk_with_context_point_into_its_own_text(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    body = " ".join(
        f"Sentence {i} says the harbour crane lifts {i} containers an hour." for i in range(40)
    )
    source = TextSource("crane", f"Harbour Log\n\n{body}", {"title": "Harbour Log"})
    IngestPipeline(catalog, embedder, chunker).run([source], collection="c")
    rows = (
        catalog.store.reader().execute("SELECT id, context FROM chunks ORDER BY ordinal").fetchall()
    )
    assert rows[0][1] is None and rows[1][1] == "Harbour Log"
    stored = catalog.store.sentences_for_chunks(
        catalog.model_id, [int(r[0]) for r in rows], catalog.dimension
    )
    for chunk_id, _ in rows:
        text = catalog.hits([(int(chunk_id), 1.0)])[0].text
        spans, vectors = stored[int(chunk_id)]
        assert spans.tolist() == [list(s) for s in sentence_spans(text)]
        assert len(vectors) == len(spans)
