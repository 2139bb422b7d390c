"""PDF text engines compared on a folder of real PDFs: split words, words run together, time,
peak memory and failures by kind.

    python benchmarks/bench_pdf_extract.py ../shared/datasets/pdf_samples [--pages 60]

Engines, each run over every PDF in a child process of its own (so its peak memory is its
own):

- `pypdf`: `PdfReader(strict=False)` and `extract_text()` per page, what ragsvc used before;
- `pdfium`: PDFium's page text as it comes (`get_text_range`), no layout;
- `ragsvc`: the project's PDF extractor (pypdf opens and bounds the file, PDFium's
  characters, reading order, furniture removal), with the default limits but `--pages`.

Text is compared as the answerer shows it (`ingest.cleaning.readable`: line-end hyphenation
undone). A *split word* is two adjacent tokens whose concatenation is a word of the default
model's vocabulary while one half is not ("firs t", "subsequen t"); a *run-together word* is a
token of eight letters or more outside the vocabulary that is two vocabulary words of three
letters or more ("thereafterthe"). Both are counted per 1,000 words. Encrypted files are
opened without a password, as an upload is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402

ENGINES = ("pypdf", "pdfium", "ragsvc")
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def _vocabulary() -> frozenset[str]:
    from ingest.embed.sentence_transformer import resolve_model

    folder, _ = resolve_model("all-MiniLM-L6-v2")
    words = Path(folder, "vocab.txt").read_text(encoding="utf-8").split()
    return frozenset(w for w in words if w.isalpha() and w.isascii())


def word_damage(text: str, vocabulary: frozenset[str]) -> tuple[int, int, int]:
    """(words, split words, run-together words) of `text`."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    split = 0
    for first, second in itertools.pairwise(tokens):
        if not (first.isascii() and second.isascii()):
            continue
        if (first + second) in vocabulary and (first not in vocabulary or second not in vocabulary):
            split += 1
    joined = 0
    for token in tokens:
        if len(token) >= 8 and token.isascii() and token not in vocabulary:
            joined += any(
                token[:i] in vocabulary and token[i:] in vocabulary
                for i in range(3, len(token) - 2)
            )
    return len(tokens), split, joined


def _run_pypdf(data: bytes, pages: int) -> str:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError("a password is required")
    texts = [page.extract_text() or "" for page in list(reader.pages)[:pages]]
    return "\n\n".join(texts)


def _run_pdfium(data: bytes, pages: int) -> str:
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        texts = []
        for number in range(min(pages, len(document))):
            page = document[number]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range().replace("\r\n", "\n").replace("\ufffe", "-"))
            textpage.close()
            page.close()
        return "\n\n".join(texts)
    finally:
        document.close()


def _run_ragsvc(data: bytes, pages: int) -> str:
    from ingest.extract.base import ExtractionLimits
    from ingest.extract.pdf import PdfExtractor

    return PdfExtractor(ExtractionLimits(max_pages=pages)).extract(data).text


def _worker(engine: str, folder: Path, pages: int) -> None:
    """Extract every PDF with one engine; print one JSON line per file, then the totals."""
    import logging

    from ingest.cleaning import readable

    logging.disable(logging.WARNING)  # pypdf's repair notes are not what is measured here
    run = {"pypdf": _run_pypdf, "pdfium": _run_pdfium, "ragsvc": _run_ragsvc}[engine]
    vocabulary = _vocabulary()
    for path in sorted(folder.rglob("*.pdf")):
        data = path.read_bytes()
        started = time.perf_counter()
        try:
            text, error = run(data, pages), None
        except Exception as failure:
            text, error = "", f"{type(failure).__name__}: {str(failure)[:120]}"
        seconds = time.perf_counter() - started
        words, split, joined = word_damage(readable(text), vocabulary)
        row = {"file": str(path.relative_to(folder)), "seconds": seconds, "chars": len(text)}
        row.update({"words": words, "split": split, "joined": joined, "error": error})
        print(json.dumps(row), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak}), flush=True)


def _categories(folder: Path) -> dict[str, str]:
    manifest = folder / "manifest.jsonl"
    if not manifest.exists():
        return {}
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return {row["file"]: row["category"] for row in rows}


def _kind(error: str | None, chars: int) -> str:
    if error is None:
        return "text" if chars else "no text"
    return error.split(":", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of PDFs (searched recursively)")
    parser.add_argument("--pages", type=int, default=60, help="pages read per file")
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        _worker(args.engine, args.folder, args.pages)
        return

    results: dict[str, list[dict[str, Any]]] = {}
    peaks: dict[str, int] = {}
    for engine in ENGINES:
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                str(args.folder),
                "--pages",
                str(args.pages),
                "--engine",
                engine,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        peaks[engine] = rows[-1]["peak_rss"]
        results[engine] = rows[:-1]

    categories = _categories(args.folder)
    # Word damage is compared on the files every engine read text from.
    readable = [
        row["file"]
        for row in results["pypdf"]
        if all(
            r["error"] is None and r["words"] > 0
            for engine in ENGINES
            for r in results[engine]
            if r["file"] == row["file"]
        )
    ]
    print(
        f"{len(results['pypdf'])} PDFs in {args.folder}, first {args.pages} pages each; word "
        f"damage over the {len(readable)} files every engine reads text from. "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}\n"
    )
    rows = []
    for engine in ENGINES:
        kept = [r for r in results[engine] if r["file"] in readable]
        words = sum(r["words"] for r in kept)
        kinds: dict[str, int] = {}
        for r in results[engine]:
            kind = _kind(r["error"], r["chars"])
            kinds[kind] = kinds.get(kind, 0) + 1
        rows.append(
            [
                engine,
                f"{words:,}",
                f"{1000 * sum(r['split'] for r in kept) / max(words, 1):.2f}",
                f"{1000 * sum(r['joined'] for r in kept) / max(words, 1):.2f}",
                f"{sum(r['seconds'] for r in kept):.2f}",
                f"{sum(r['seconds'] for r in results[engine]):.2f}",
                f"{peaks[engine] / 1e6:.0f}",
                ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
            ]
        )
    table(
        [
            "engine",
            "words",
            "split / 1k",
            "run together / 1k",
            "s (readable)",
            "s (all)",
            "peak MB",
            "outcomes",
        ],
        rows,
    )
    worst = sorted(
        readable,
        key=lambda f: -next(r["split"] for r in results["pypdf"] if r["file"] == f),
    )[:8]
    table(
        ["file", *(f"{e} split/words" for e in ENGINES)],
        [
            [f]
            + [
                next(f"{r['split']}/{r['words']}" for r in results[e] if r["file"] == f)
                for e in ENGINES
            ]
            for f in worst
        ],
    )
    failed = sorted(
        {r["file"] for e in ENGINES for r in results[e] if r["error"] or not r["chars"]}
        | {f for f, c in categories.items() if c == "malformed"}
    )
    table(
        ["file", "category", *ENGINES],
        [
            [f, categories.get(f, "")]
            + [
                next(
                    (r["error"] or f"text, {r['chars']:,} chars")
                    if r["chars"] or r["error"]
                    else "no text"
                    for r in results[e]
                    if r["file"] == f
                )[:70]
                for e in ENGINES
            ]
            for f in failed
        ],
    )


if __name__ == "__main__":
    main()
