"""The repository's paths, the shared datasets (tests skip, saying so, where they are absent),
and a small generated corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"

# A sample PDF, a question about it, and the sentence that answers it.
NAACL = ("pdf_samples", "pdfminer.six", "samples", "nonfree", "naacl06-shinyama.pdf")
QUESTION = "What F-score does the HMM-based named entity tagger reach?"
WHOLE_SENTENCE = "We used an HMM-based NE tagger whose performance is about 85% in F-score."


def dataset(*parts: str) -> Path:
    """A path under ../shared/datasets, or a skip that says what is missing."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found: {path} (clone with ../shared beside the project)")
    return path


def write_corpus(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """`count` small text documents with distinct, topical content."""
    topics = [
        "The heart pumps blood through arteries and veins to every organ.",
        "Volcanoes erupt when magma rises through cracks in the crust.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
        "Compilers translate source code into machine instructions.",
        "Tides follow the pull of the moon on the oceans.",
        "Bees communicate the location of flowers with a waggle dance.",
        "Glaciers carve valleys as they slowly slide downhill.",
        "Vaccines train the immune system to recognise a pathogen.",
    ]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        sentences = [topics[int(i)] for i in rng.integers(0, len(topics), size=12)]
        body = (
            f"Document {number}.\n\n" + " ".join(sentences[:6]) + "\n\n" + " ".join(sentences[6:])
        )
        path = folder / f"doc-{number:04d}.txt"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths
