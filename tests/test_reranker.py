"""The reranker plug-in: a cross-encoder the test builds and saves itself (tiny, random weights,
the default model's tokenizer) reorders the top candidates by its own scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexes import Catalog
from ingest import Chunker, Embedder, IngestPipeline
from ingest.embed.sentence_transformer import DEFAULT_MODEL, resolve_model
from ingest.sources import TextSource
from ragsvc.retrieval.reranker import CrossEncoderReranker, RerankerUnavailable, load_reranker
from ragsvc.retrieval.retriever import retrieve
from ragsvc.settings import Settings
from tests.support.processes import run_ragsvc

FACTS = [
    "Tides follow the pull of the moon on the oceans.",
    "The moon has no atmosphere and no liquid water.",
    "Spring tides happen when sun and moon line up.",
    "Glaciers carve valleys as they slowly slide downhill.",
    "Lunar eclipses happen when the earth shades the moon.",
    "The harbour crane lifts forty containers an hour.",
]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL)[0])
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _ingest(catalog: Catalog, embedder: Embedder, chunker: Chunker) -> None:
    sources = [TextSource(f"fact-{i}", text) for i, text in enumerate(FACTS)]
    IngestPipeline(catalog, embedder, chunker).run(sources, collection="c")


def test_the_reranker_orders_the_candidates_by_its_own_scores(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, cross_encoder: Path
) -> None:
    _ingest(catalog, embedder, chunker)
    reranker = load_reranker(str(cross_encoder))
    assert isinstance(reranker, CrossEncoderReranker)
    settings = Settings(reranker=str(cross_encoder), reranker_candidates=5)
    question = "Why do tides follow the moon?"
    plain = retrieve(catalog, embedder, settings, question, k=5).hits
    reranked = retrieve(catalog, embedder, settings, question, k=3, reranker=reranker).hits
    scores = reranker.rerank(question, [hit.text for hit in plain])
    expected = [plain[i].chunk_id for i in np.argsort(-scores, kind="stable")[:3]]
    assert [hit.chunk_id for hit in reranked] == expected
    assert [hit.rerank_score for hit in reranked] == pytest.approx(sorted(scores, reverse=True)[:3])
    # The mode's own score stays beside it: one meaning per name.
    by_id = {hit.chunk_id: hit.score for hit in plain}
    assert [hit.score for hit in reranked] == [by_id[hit.chunk_id] for hit in reranked]
    # Beyond the candidates nothing moves: with one candidate the rest keep their order.
    one = Settings(reranker=str(cross_encoder), reranker_candidates=1)
    kept = retrieve(catalog, embedder, one, question, k=5, reranker=reranker).hits
    assert [h.chunk_id for h in kept] == [h.chunk_id for h in plain]


@pytest.mark.slow
def test_search_on_the_command_line_uses_the_configured_reranker(
    tmp_path: Path, cross_encoder: Path
) -> None:
    data = str(tmp_path / "data")
    corpus = tmp_path / "facts.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": f"f{i}", "text": t}) for i, t in enumerate(FACTS)) + "\n"
    )
    assert (
        run_ragsvc("--data-dir", data, "ingest", "--no-progress", "--jsonl", str(corpus)).returncode
        == 0
    )
    env = {"RAGSVC_RERANKER": str(cross_encoder), "RAGSVC_RERANKER_CANDIDATES": "6"}
    found = run_ragsvc(
        "--data-dir", data, "search", "tides and the moon", "-k", "6", "--json", env=env
    )
    assert found.returncode == 0, found.stderr[-2000:]
    hits = json.loads(found.stdout)
    reranker = CrossEncoderReranker(str(cross_encoder))
    scores = reranker.rerank("tides and the moon", [h["text"] for h in hits])
    assert [h["rerank_score"] for h in hits] == pytest.approx(list(scores), abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


@pytest.mark.slow
def test_a_reranker_that_cannot_load_stops_start_up_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(RerankerUnavailable, match="not a local model folder"):
        load_reranker(str(tmp_path / "absent"))
    with pytest.raises(RerankerUnavailable, match="cannot import reranker"):
        load_reranker("no_such_package.module:Ranker")
    assert load_reranker("") is None
    served = run_ragsvc(
        "--data-dir", str(tmp_path / "data"), "serve", "--port", "0",
        env={"RAGSVC_RERANKER": str(tmp_path / "absent")}, timeout=120,
    )  # fmt: skip
    assert served.returncode == 2
    assert "not a local model folder" in served.stderr
