"""An embedder that records what it embedded, for tests of what is (not) embedded again."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest import Embedder


class RecordingEmbedder:
    """An `Embedder` that delegates to the real model and keeps every text it embedded."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.special_tokens = inner.special_tokens
        self.embedded: list[str] = []

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._inner.token_offsets(text)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._inner.embed_query(text)
