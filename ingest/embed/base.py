"""The `Embedder` contract: the model's tokenizer (for chunking) and its encoder.

An embedder that can also pool sentence vectors from the same forward pass that embeds a
chunk (as in late chunking) implements `SentenceEmbedder`; the pipeline stores those vectors
beside the chunk's, so the extractive answerer needs no model call beyond the question's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from indexes import ChunkEmbedding


class Embedder(Protocol):
    model_id: str
    """Stable name of the model; embeddings are stored under it."""
    dimension: int
    max_tokens: int
    """Longest input the model reads, counting its special tokens."""
    special_tokens: int
    """Tokens the model adds to every input ([CLS] and [SEP] for BERT)."""

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of `text`, without special tokens or truncation."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dimension), in input order."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """One L2-normalised float32 vector, shape (dimension,)."""
        ...


@runtime_checkable
class SentenceEmbedder(Protocol):
    def embed_chunks(
        self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]]
    ) -> list[ChunkEmbedding]:
        """Each text's vector and, pooled from the same forward pass over the text's own
        token embeddings, one vector per given sentence span (character offsets)."""
        ...
