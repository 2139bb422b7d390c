"""An `Embedder` over a model exported by `onnx_export`, run without torch by a runtime
chosen by name: OpenVINO (bfloat16 on CPUs that compute it natively) or ONNX Runtime.

    load_export(folder, runtime)   tokenizer.json ─▶ runtime (model.onnx) ─▶ mean pooling, L2
                                   └─ refused unless it reproduces check.npy (torch's vectors)

Made for short inputs one at a time (queries): the process never imports torch, so a server
holding it stays small. Tokenisation is the model's own `tokenizer.json` (the `tokenizers`
library); pooling and normalisation are done in numpy, exactly as sentence-transformers does
them (mean over real tokens, then L2). Every load embeds the export's check texts and compares
them with the vectors torch gave at export time, so a runtime (or an arithmetic) that embeds
differently is refused at start-up, not discovered in the rankings.

A runtime is one module with a `load(model_path, threads, precision) -> Forward` function,
registered in `RUNTIMES`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from ingest.errors import EmbedderUnavailable

ArithmeticHint = Literal["auto", "fp32", "bf16"]
RUNTIMES = {
    "openvino": "ingest.embed.openvino_runtime",
    "onnx": "ingest.embed.onnx_runtime",
}
"""Runtime name → module with `load(model_path, threads, precision) -> Forward`."""
CHECK_FILE = "check.npy"
MIN_COSINE = 0.9999


class Forward(Protocol):
    name: str
    """What runs the model and in which arithmetic, e.g. `openvino-bf16`."""

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The last hidden state, (batch, tokens, dimension) float32, for the given inputs."""
        ...


class ExportedEmbedder:
    def __init__(self, folder: Path, model_id: str, *, max_tokens: int, forward: Forward) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise EmbedderUnavailable(f"tokenizers is not installed ({error})") from None
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.runtime = forward.name
        self._forward = forward
        self._inputs = set(getattr(forward, "inputs", ()))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._offsets = Tokenizer.from_str(tokenizer.to_str())
        self._offsets.no_padding()
        self._offsets.no_truncation()
        tokenizer.enable_truncation(max_tokens)
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        self.special_tokens = len(tokenizer.encode("").ids)
        self.dimension = int(self.embed_query("dimension").shape[0])

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._offsets.encode(text, add_special_tokens=False).offsets)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dimension", 0)), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        if self._inputs:
            feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        hidden = self._forward(feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def check_texts() -> list[str]:
    """Texts every runtime must embed as torch does: short, multilingual, and one longer
    than the model reads (truncation)."""
    texts = [
        "What causes tides?",
        "0-dimensional biomaterials show inductive properties.",
        "A deficiency of vitamin B12 increases blood levels of homocysteine.",
        "Die Gezeiten entstehen durch die Anziehungskraft des Mondes.",
        "数学是研究数量、结构、变化以及空间等概念的一门学科。",
        "x",
    ]
    return [*texts, " ".join(texts[2].split() * 60)]


def min_cosine(embedder: ExportedEmbedder, expected: np.ndarray) -> float:
    """The lowest cosine to `expected` over the check texts, one at a time and batched."""
    texts = check_texts()
    one_by_one = np.stack([embedder.embed_query(t) for t in texts])
    batched = embedder.embed_documents(texts)
    return float(min((one_by_one * expected).sum(1).min(), (batched * expected).sum(1).min()))


def forward_for(runtime: str, model_path: Path, threads: int, precision: ArithmeticHint) -> Forward:
    """Load `model_path` on `runtime` (a `RUNTIMES` name or "package.module")."""
    module_name = RUNTIMES.get(runtime, runtime)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        known = ", ".join(RUNTIMES)
        raise EmbedderUnavailable(
            f"query runtime {runtime!r} unavailable ({error}); known: {known}"
        ) from None
    load: Callable[[Path, int, ArithmeticHint], Forward] = module.load
    return load(model_path, threads, precision)


def load_export(
    folder: Path, *, runtime: str = "onnx", threads: int = 0, precision: ArithmeticHint = "auto"
) -> ExportedEmbedder:
    """The export in `folder` on `runtime`; raises `EmbedderUnavailable` when the runtime is
    missing or embeds the check texts at a cosine below `MIN_COSINE` to torch."""
    manifest = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    forward = forward_for(runtime, folder / "model.onnx", threads, precision)
    embedder = ExportedEmbedder(
        folder, manifest["model_id"], max_tokens=int(manifest["max_tokens"]), forward=forward
    )
    expected = np.load(folder / CHECK_FILE, allow_pickle=False)
    cosine = min_cosine(embedder, expected)
    if cosine < MIN_COSINE:
        raise EmbedderUnavailable(
            f"{forward.name} embeds differently from torch (min cosine {cosine:.6f} < {MIN_COSINE})"
        )
    return embedder
