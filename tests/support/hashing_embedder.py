"""A fast, honest `Embedder` for tests whose subject is not the model: words hashed into 64
dimensions. Similar texts get similar vectors, so retrieval on it is meaningful."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class HashingEmbedder:
    """An honest, fast `Embedder`: words hashed into 64 dimensions, L2-normalised."""

    model_id = "test/hashing-64"
    dimension = 64
    max_tokens = 64
    special_tokens = 2

    def __init__(self, model: str = "", **_: object) -> None:
        """Loadable as the `embedder` setting ("tests.support.hashing_embedder:HashingEmbedder");
        the model name and options are ignored."""

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()) or ["empty"]:
                digest = hashlib.blake2b(word.encode(), digest_size=2).digest()
                vectors[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
