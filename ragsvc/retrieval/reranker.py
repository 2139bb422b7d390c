"""Reranking as a plug-in: a cross-encoder reads the question with each of the top candidates
and orders them again (setting `reranker`, off by default).

    load_reranker("path/to/cross-encoder")        a sentence-transformers `CrossEncoder` folder
    load_reranker("package.module:Class")          any class with `rerank(query, texts)`

The cross-encoder runs on torch, so a server with a reranker holds torch beside the query
encoder (about 300 MB more) and spends one forward pass over every (question, chunk) pair per
query: with a MiniLM-L6-sized model and 20 candidates, about 1.2 s on two CPU cores
(`benchmarks/RESULTS.md`, "Reranker cost"). Hits it reorders get its score as `score`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.plugins import plugin_class
from ragsvc.errors import ConfigurationError


class RerankerUnavailable(ConfigurationError):
    """The configured reranker cannot be loaded."""


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text (higher is more relevant), in input order."""
        ...


class CrossEncoderReranker:
    def __init__(self, folder: str, *, batch_size: int = 32) -> None:
        if not Path(folder).is_dir():
            raise RerankerUnavailable(
                f"reranker {folder!r} is not a local model folder (nothing is downloaded)"
            )
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as error:
            raise RerankerUnavailable(f"sentence-transformers is not installed ({error})") from None
        try:
            self._model = CrossEncoder(folder, device="cpu", local_files_only=True)
        except Exception as error:
            raise RerankerUnavailable(
                f"cannot load cross-encoder {folder!r}: {type(error).__name__}: {error}"
            ) from None
        self.name = folder
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def rerank(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            scores = self._model.predict(
                [(query, text) for text in texts],
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, 0]


def load_reranker(spec: str) -> Reranker | None:
    """The reranker `spec` names ("" for none)."""
    if not spec:
        return None
    if ":" in spec and not Path(spec).exists():
        cls = plugin_class(spec, "reranker", RerankerUnavailable)
        custom: Reranker = cls()
        return custom
    return CrossEncoderReranker(spec)
