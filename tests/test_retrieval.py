"""Hybrid retrieval, BM25, filters, the lexical index following the store, and the
evaluation commands."""

from __future__ import annotations

import json
import math
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from indexes import Catalog, SearchFilter
from indexes.fusion import fuse_rrf, fuse_weighted
from indexes.lexical import Analyzer, LexicalIndex
from ingest import Chunker, Embedder, IngestPipeline, file_sources
from ingest.sources import TextSource
from ragsvc.api.app import create_app
from ragsvc.cli import main
from ragsvc.settings import Settings
from tests.support.data import write_corpus


def _ingest(
    catalog: Catalog,
    embedder: Embedder,
    chunker: Chunker,
    sources: Any,
    collection: str,
    metadata: dict[str, Any] | None = None,
) -> None:
    report = IngestPipeline(catalog, embedder, chunker).run(
        sources, collection=collection, metadata=metadata
    )
    assert not report.failures


def test_fusion_by_hand() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(3, 12.0), (1, 6.0)]
    fused = dict(fuse_rrf([dense, lexical], rrf_k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert [i for i, _ in fuse_rrf([dense, lexical])] == [1, 3, 2]
    weighted = dict(fuse_weighted(dense, lexical, dense_weight=0.5))
    assert weighted[1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert weighted[3] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert weighted[2] == pytest.approx(0.5 * (0.8 - 0.1) / 0.8)


def test_bm25_by_hand() -> None:
    analyzer = Analyzer()
    assert analyzer.terms("What is the Café's running SPEED?") == ["cafe", "s", "run", "speed"]
    index = LexicalIndex(analyzer, k1=1.2, b=0.75)
    texts = ["the cat runs", "dogs run and run", "a bird sings"]
    index.add([1, 2, 3], texts)
    lengths = [2, 3, 2]  # after stopwords: "cat run", "dog run run", "bird sing"
    average = sum(lengths) / 3
    df, n = 2, 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def bm25(tf: int, length: int) -> float:
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * length / average))

    ranked = index.search("running?", 10)
    assert [c for c, _ in ranked] == [2, 1]
    assert ranked[0][1] == pytest.approx(bm25(2, 3), rel=1e-5)
    assert ranked[1][1] == pytest.approx(bm25(1, 2), rel=1e-5)
    assert index.search("the of and", 10) == []  # stopwords only
    index.remove([2])
    assert [c for c, _ in index.search("run", 10)] == [1]
    assert [c for c, _ in index.search("run", 10, np.array([False, False, True]))] == []


def _ranked_by_hand(index: LexicalIndex, query: list[str], k: int, allowed: Any) -> list[int]:
    """Every chunk's BM25 score (float32, as the index computes it), then all of them
    ordered: best first, ties by chunk id."""
    n = len(index)
    average = float(index.lengths[index.alive].sum()) / n
    norm = (index.k1 * (1 - index.b + index.b * index.lengths / average)).astype(np.float32)
    scores = np.zeros(len(index.chunk_ids), dtype=np.float32)
    for term in dict.fromkeys(query):
        if term not in index.vocabulary:
            continue
        term_id = index.vocabulary[term]
        df = float(index.document_frequency[term_id])
        idf = np.float32(math.log1p((n - df + 0.5) / (df + 0.5)))
        for segment in index.segments:
            positions, f = segment.postings(term_id)
            scores[positions] += f * idf * (index.k1 + 1) / (f + norm[positions])
    keep = index.alive if allowed is None else index.alive & allowed
    scores[~keep] = 0
    matched = np.flatnonzero(scores > 0)
    order = np.lexsort((index.chunk_ids[matched], -scores[matched]))
    return index.chunk_ids[matched[order[:k]]].tolist()


def test_bm25_top_k_at_scale_is_exact_in_memory_and_mapped_from_a_snapshot(
    tmp_path: Path,
) -> None:
    # 60,000 chunks (the floor that narrows the selection starts at 50,000), Zipf-like terms
    # so that common terms match most chunks and rare ones few, often together.
    rng = np.random.default_rng(7)
    vocabulary = [f"t{i}" for i in range(3000)]
    weights = 1 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    chunks = [
        [vocabulary[t] for t in rng.choice(len(vocabulary), size=rng.integers(3, 30), p=weights)]
        for _ in range(60_000)
    ]
    index = LexicalIndex(Analyzer())
    for start in range(0, len(chunks), 7_000):  # several segments, merged as they grow
        part = chunks[start : start + 7_000]
        index.add(np.arange(start + 1, start + len(part) + 1), terms=part)
        if start == 28_000:  # later merges drop these chunks' postings
            index.remove(np.arange(1, 28_001, 13))
    index.remove(np.arange(28_002, 60_001, 13))
    # The merged postings are the chunks' own terms and counts, for every live chunk.
    live = {int(c) for c in index.ids()}
    for term in ("t0", "t7", "t150", "t2999"):
        term_id = index.vocabulary[term]
        held = {}
        for segment in index.segments:
            positions, frequencies = segment.postings(term_id)
            for position, frequency in zip(positions, frequencies, strict=True):
                if index.alive[position]:
                    held[int(index.chunk_ids[position])] = int(frequency)
        assert held == {
            number + 1: terms.count(term)
            for number, terms in enumerate(chunks)
            if number + 1 in live and term in terms
        }
    queries = [
        [vocabulary[t] for t in rng.choice(len(vocabulary), size=rng.integers(1, 9), p=weights)]
        for _ in range(40)
    ] + [["t0", "t1"], ["t2999"], ["t5", "t1500", "t2998"]]
    allowed = rng.random(len(index.chunk_ids)) < 0.3
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical", Analyzer())
    assert isinstance(loaded.segments[0].positions, np.memmap)  # not read onto the heap
    for query in queries:
        text = " ".join(query)
        for k in (1, 10, 100):
            expected = _ranked_by_hand(index, query, k, None)
            assert [c for c, _ in index.search(text, k)] == expected, (query, k)
            # Saving compacts: dead chunks leave the document frequencies.
            expected = _ranked_by_hand(loaded, query, k, None)
            assert [c for c, _ in loaded.search(text, k)] == expected, (query, k)
        restricted = _ranked_by_hand(index, query, 10, allowed)
        assert [c for c, _ in index.search(text, 10, allowed)] == restricted
    # The mapped index takes writes: new chunks merge with the mapped segment, deletes apply.
    loaded.add(np.arange(60_001, 100_001), terms=chunks[:40_000])
    loaded.remove(np.arange(60_001, 100_001, 5))
    assert len(loaded.segments) == 1  # merged into arrays of its own
    for query in queries[:10]:
        expected = _ranked_by_hand(loaded, query, 10, None)
        assert [c for c, _ in loaded.search(" ".join(query), 10)] == expected


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_filters_keep_other_chunks_out_and_return_k(
    catalog: Catalog, embedder: Embedder, chunker: Chunker, tmp_path: Path, mode: str
) -> None:
    write_corpus(tmp_path / "a", 12, seed=1)
    write_corpus(tmp_path / "b", 12, seed=2)
    _ingest(catalog, embedder, chunker, file_sources([tmp_path / "a"]), "alpha", {"team": "red"})
    _ingest(catalog, embedder, chunker, file_sources([tmp_path / "b"]), "beta", {"team": "blue"})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.md").write_text("# Tides\n\nThe moon pulls the tides twice a day.\n")
    _ingest(catalog, embedder, chunker, file_sources([tmp_path / "c"]), "beta", {"team": "blue"})
    query = "how the moon moves the tides"

    def run(filters: SearchFilter, k: int = 10) -> list[Any]:
        return catalog.retrieve(
            k=k,
            vector=embedder.embed_query(query),
            text=query,
            mode=mode,
            filters=filters,  # type: ignore[arg-type]
        )

    beta = run(SearchFilter(collection="beta"))
    assert len(beta) == 10 and {h.collection for h in beta} == {"beta"}
    blue = run(SearchFilter(metadata={"team": "blue"}))
    assert len(blue) == 10 and {h.collection for h in blue} == {"beta"}
    markdown = run(SearchFilter(media_types=["text/markdown"]))
    assert [h.source_name for h in markdown] == ["c/notes.md"]  # fewer match than k: all of them
    some = catalog.store.documents("alpha")[:2]
    chosen = run(SearchFilter(document_ids=[d.id for d in some]), k=50)
    chunks = sum(d.chunk_count for d in some)
    assert len(chosen) == chunks and {h.document_id for h in chosen} == {d.id for d in some}
    assert run(SearchFilter(collection="alpha", metadata={"team": "blue"})) == []
    assert all(h.similarity is not None for h in beta)


def test_lexical_index_follows_deletes_and_replacements(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    _ingest(catalog, embedder, chunker, [TextSource("a", "Zebras graze on the savanna.")], "c")
    (hit,) = catalog.retrieve(k=5, text="zebras", mode="lexical")
    catalog.delete_document(hit.document_id)
    assert catalog.retrieve(k=5, text="zebras", mode="lexical") == []
    _ingest(catalog, embedder, chunker, [TextSource("b", "Old text about walruses.")], "c")
    _ingest(catalog, embedder, chunker, [TextSource("b", "New text about narwhals.")], "c")
    assert catalog.retrieve(k=5, text="walruses", mode="lexical") == []
    assert len(catalog.retrieve(k=5, text="narwhals", mode="lexical")) == 1


def test_search_endpoint_modes_and_filters(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), ingest_worker="thread")
    with TestClient(create_app(settings, embedder=embedder), base_url="http://127.0.0.1") as client:
        for name, collection, team in (("a.md", "x", "red"), ("b.md", "y", "blue")):
            response = client.post(
                "/documents?wait=true",
                files=[
                    ("files", (name, f"# {name}\n\nWalruses and moons, {team} team.\n".encode()))
                ],
                data={"collection": collection, "metadata": json.dumps({"team": team})},
            )
            assert response.status_code == 200
        for mode in ("dense", "lexical", "hybrid"):
            body = client.post(
                "/search",
                json={"query": "walruses", "mode": mode, "filters": {"metadata": {"team": "blue"}}},
            ).json()
            assert [h["source_name"] for h in body["results"]] == ["b.md"], mode
        bad = client.post("/search", json={"query": "x", "mode": "psychic"})
        assert bad.status_code == 400
        bad = client.post("/search", json={"query": "x", "filters": {"colour": "red"}})
        assert bad.status_code == 400 and "colour" in bad.json()["detail"]


def _tiny_beir(folder: Path) -> Path:
    folder.mkdir()
    topics = {
        "d1": ("Volcanoes", "Magma rises through the crust and erupts as lava from volcanoes."),
        "d2": ("Tides", "The gravitational pull of the moon raises the ocean tides."),
        "d3": ("Bees", "Honey bees dance to tell the hive where flowers are."),
        "d4": ("Glaciers", "Glaciers carve deep valleys as the ice slides downhill."),
        "d5": ("Vaccines", "Vaccines train the immune system to recognise a virus."),
    }
    with open(folder / "corpus.jsonl", "w") as handle:
        for doc_id, (title, text) in topics.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    queries = {
        "q1": "what makes lava erupt",
        "q2": "why are there tides",
        "q3": "how do bees communicate",
        "q4": "how does immunisation work",
    }
    with open(folder / "queries.jsonl", "w") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\nq4\td5\t1\n"
    )
    return folder


def test_eval_retrieval_and_the_regression_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beir = _tiny_beir(tmp_path / "tiny")
    eval_dir = tmp_path / "eval"
    report = tmp_path / "report.json"
    args = ["eval", "retrieval", "--beir", str(beir), "--eval-dir", str(eval_dir)]
    assert main([*args, "--output", str(report)]) == 0
    result = json.loads(report.read_text())
    assert set(result["modes"]) == {"dense", "lexical", "hybrid"}
    for metrics in result["modes"].values():
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_p50_ms"} <= set(metrics)
        assert 0.0 <= metrics["ndcg@10"] <= 1.0
    assert result["modes"]["hybrid"]["recall@10"] == 1.0
    capsys.readouterr()

    assert main([*args, "--baseline", str(report)]) == 0  # the same figures pass
    assert len(result["modes"]["hybrid"]["per_query"]["ndcg@10"]) == len(result["query_ids"])
    assert all(len(i) == 2 for i in result["modes"]["hybrid"]["interval95"].values())
    higher = json.loads(report.read_text())
    higher["modes"]["hybrid"]["mrr@10"] = 1.5
    del higher["modes"]["hybrid"]["per_query"]  # a baseline of the older format: a threshold
    deliberately_higher = tmp_path / "higher.json"
    deliberately_higher.write_text(json.dumps(higher))
    assert main([*args, "--baseline", str(deliberately_higher)]) == 1
    err = capsys.readouterr().err
    assert "hybrid mrr@10" in err and "baseline 1.5000" in err
    assert main([*args, "--baseline", str(tmp_path / "missing.json")]) == 2


def test_eval_tune_writes_settings_that_eval_retrieval_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beir = _tiny_beir(tmp_path / "tiny")
    eval_dir = tmp_path / "eval"
    tuned = tmp_path / "tuned.toml"
    tune = ["eval", "tune", "--beir", str(beir), "--split", "test", "--eval-dir", str(eval_dir)]
    assert main([*tune, "--output", str(tuned)]) == 0
    out = capsys.readouterr().out
    assert "fusion" in out and "chosen" in out  # every candidate's row, the chosen marked
    chosen = tomllib.loads(tuned.read_text())
    assert set(chosen) == {
        "lexical_k1",
        "lexical_b",
        "fusion",
        "fusion_rrf_k",
        "fusion_dense_weight",
        "fusion_normalisation",
        "fusion_candidates",
        "eval_document_share",
    }
    report = tmp_path / "report.json"
    retrieval = ["eval", "retrieval", "--beir", str(beir), "--eval-dir", str(eval_dir)]
    assert main(["--config", str(tuned), *retrieval, "--output", str(report)]) == 0
    assert json.loads(report.read_text())["modes"]["hybrid"]["recall@10"] == 1.0
    # A split without labels is refused with its reason, not a traceback.
    assert main([*tune, "--split", "train"]) == 2
    assert "train" in capsys.readouterr().err


def test_eval_answers_on_a_small_squad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = []
    facts = [
        ("Volcano", "Mount Etna is on the island of Sicily.", "Where is Mount Etna?", "Sicily"),
        (
            "River",
            "The Danube flows into the Black Sea.",
            "Where does the Danube flow?",
            "Black Sea",
        ),
        (
            "Tower",
            "The Eiffel Tower was finished in 1889.",
            "When was the Eiffel Tower finished?",
            "1889",
        ),
        (
            "Desert",
            "The Atacama is among the driest places on Earth.",
            "What is the Atacama?",
            "driest",
        ),
        (
            "Forest",
            "The Amazon rainforest spans nine countries.",
            "How many countries does the Amazon span?",
            "nine",
        ),
    ]
    for title, context, question, answer in facts:
        articles.append(
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": title,
                                "question": question,
                                "answers": [
                                    {"text": answer, "answer_start": context.index(answer)}
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    squad = tmp_path / "mini.json"
    squad.write_text(json.dumps({"version": "1.1", "data": articles}))
    output = tmp_path / "answers.json"
    code = main(
        [
            "eval",
            "answers",
            "--squad",
            str(squad),
            "--eval-dir",
            str(tmp_path / "e"),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    report = json.loads(output.read_text())
    assert report["answerable_questions"] == 4 and report["unanswerable_questions"] == 1
    assert report["left_out_articles"] == ["Volcano"]
    assert report["cited_chunks_contain_gold"] == 1.0
    for key in ("answer_contains_gold", "confidence_auroc", "abstention_rate_unanswerable"):
        assert 0.0 <= report[key] <= 1.0
    low, high = report["interval95"]["cited_chunks_contain_gold"]
    assert low < 1.0 == high  # four questions say little: Wilson's interval is wide


@pytest.mark.parametrize(
    ("text", "gold", "holds"),
    [
        ("Decided by the Scottish Government, not by councils.", "Scottish Government.", True),
        ("He proposed   the name ABC-DuMont.", "the name abc-dumont", True),
        ('Firms offer "one-stop shopping" now.', "one-stop shopping", True),
        ("It happened after 1278.", "after 1279", False),
        ("Anything at all.", "The", False),  # nothing left after normalisation holds nothing
    ],
)
def test_gold_answers_are_matched_after_squads_normalisation(
    text: str, gold: str, holds: bool
) -> None:
    from ragsvc.evaluation.answers import contains_gold

    assert contains_gold(text, [gold]) is holds


def test_paragraph_holdout_leaves_the_rest_of_the_article_indexed(tmp_path: Path) -> None:
    from ragsvc.evaluation.answers import load_squad, split_paragraphs

    paragraphs = [
        ("Etna erupted in 2021.", "When did Etna erupt?", "2021"),
        ("Etna is on Sicily.", "Where is Etna?", "Sicily"),
        ("Etna is 3,357 metres high.", "How high is Etna?", "3,357 metres"),
        ("Etna has no questions here.", None, None),
    ]
    data = {
        "data": [
            {
                "title": "Etna",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": []
                        if question is None
                        else [{"id": f"q{i}", "question": question, "answers": [{"text": a}]}],
                    }
                    for i, (context, question, a) in enumerate(paragraphs)
                ],
            }
        ]
    }
    squad = tmp_path / "etna.json"
    squad.write_text(json.dumps(data))
    [kept], [left] = split_paragraphs(load_squad(squad), 0.5)
    assert [q.id for q in left.questions] == ["q1"]  # every second paragraph with questions
    assert [q.id for q in kept.questions] == ["q0", "q2"]
    assert kept.paragraphs[1] == "" and left.paragraphs == ["", "Etna is on Sicily.", "", ""]
    assert kept.paragraphs[3] == "Etna has no questions here."  # near misses stay indexed

    eval_dir = tmp_path / "e"
    for level, unanswerable in (("paragraph", 1), ("article", 0)):
        output = tmp_path / f"{level}.json"
        args = ["eval", "answers", "--squad", str(squad), "--eval-dir", str(eval_dir)]
        assert (
            main([*args, "--holdout", "0.5", "--holdout-level", level, "--output", str(output)])
            == 0
        )
        report = json.loads(output.read_text())
        assert report["unanswerable_questions"] == unanswerable
        with sqlite3.connect(eval_dir / "ragsvc.sqlite3") as conn:
            names = {r[0] for r in conn.execute("SELECT source_name FROM documents")}
        # The collection holds exactly this level's paragraphs, whatever ran before.
        assert ("Etna #2" in names) == (level == "article")


def test_mmr_and_neighbours_shape_the_query_context(catalog: Catalog, embedder: Embedder) -> None:
    from ragsvc.retrieval.retriever import context_hits, retrieve

    sentences = [
        f"Fact {i}: the lighthouse on rock {i} flashes every {i + 2} seconds." for i in range(12)
    ]
    long_text = " ".join(sentences)
    twin = "Lighthouses flash to warn ships. Lighthouses flash to warn ships at night."
    sources = [
        TextSource("long", long_text),
        TextSource("twin-a", twin),
        TextSource("twin-b", twin + " "),  # other bytes, same text: a near duplicate
        TextSource("other", "Ships steer by the stars and by lighthouse beams when fog lifts."),
    ]
    small = Chunker(embedder, max_tokens=64, overlap=16)
    _ingest(catalog, embedder, small, sources, "c")
    question = "why do lighthouses flash"

    plain = Settings()
    hits = retrieve(catalog, embedder, plain, question, k=12, mode="dense").hits
    top = context_hits(catalog, plain, hits, 3)
    assert {h.source_name for h in top[:2]} == {"twin-a", "twin-b"}  # duplicates crowd the top

    diverse = Settings(mmr_lambda=0.5)
    picked = context_hits(catalog, diverse, hits, 3)
    assert len(picked) == 3
    assert len({h.source_name for h in picked} & {"twin-a", "twin-b"}) == 1

    widened = Settings(context_neighbours=1)
    long_hit = next(h for h in hits if h.source_name == "long" and h.ordinal > 0)
    (expanded,) = context_hits(catalog, widened, [long_hit], 1)
    neighbours = [
        c
        for c in catalog.store.document_chunks(long_hit.document_id)
        if abs(c.ordinal - long_hit.ordinal) <= 1
    ]
    assert expanded.char_start == neighbours[0].char_start
    assert expanded.char_end == neighbours[-1].char_end
    assert expanded.text == long_text[expanded.char_start : expanded.char_end]


def test_hybrid_hits_say_when_both_retrievers_agree(
    catalog: Catalog, embedder: Embedder, chunker: Chunker
) -> None:
    _ingest(
        catalog,
        embedder,
        chunker,
        [
            TextSource("match", "Narwhals have a long spiral tusk."),
            TextSource("dense-only", "Arctic whales with a single horn-like tooth."),
        ],
        "c",
    )
    query = "narwhals spiral tusk"
    hits = catalog.retrieve(k=2, vector=embedder.embed_query(query), text=query, mode="hybrid")
    by_name = {h.source_name: h.retrievers for h in hits}
    assert by_name == {"match": 2, "dense-only": 1}


@pytest.mark.slow
def test_eval_retrieval_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from tests.support.data import ROOT

    beir = _tiny_beir(tmp_path / "tiny")
    command = [sys.executable, "-m", "ragsvc", "eval", "retrieval", "--beir", str(beir)]
    command += ["--eval-dir", str(tmp_path / "eval")]
    primary, secondary = pty.openpty()
    # A terminal of 24 rows and 100 columns (a new pseudo-terminal has none).
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=secondary, cwd=ROOT, env=os.environ.copy()
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0
    os.close(primary)
    terminal = seen.decode("utf-8", "replace")
    assert "5/5" in terminal and "doc" in terminal  # the corpus, document by document
    assert "12/12" in terminal and "quer" in terminal  # 4 queries in each of 3 modes
    # Not on a terminal: the same run prints no bar.
    piped = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "12/12" not in piped.stderr and "5/5" not in piped.stderr
