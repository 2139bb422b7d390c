"""Embedders: a registry keyed by name, plus a `package.module:Class` escape hatch."""

from __future__ import annotations

import importlib

from ingest.embed.base import Embedder
from ingest.embed.sentence_transformer import DEFAULT_MODEL, SentenceTransformerEmbedder
from ingest.errors import EmbedderUnavailable

EMBEDDERS: dict[str, type] = {"sentence-transformers": SentenceTransformerEmbedder}


def load_embedder(
    backend: str, model: str = DEFAULT_MODEL, *, device: str = "cpu", batch_size: int = 32
) -> Embedder:
    """Construct the embedder `backend` names: a registry key or "package.module:Class"."""
    if backend in EMBEDDERS:
        cls = EMBEDDERS[backend]
    elif ":" in backend:
        module_name, _, class_name = backend.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise EmbedderUnavailable(
                f"cannot import embedder {backend!r} ({error}); install the package that "
                f"provides {module_name!r}"
            ) from None
    else:
        known = ", ".join(sorted(EMBEDDERS))
        raise EmbedderUnavailable(
            f"unknown embedder {backend!r}; use one of: {known}, or 'package.module:Class'"
        )
    embedder: Embedder = cls(model, device=device, batch_size=batch_size)
    return embedder


__all__ = ["DEFAULT_MODEL", "EMBEDDERS", "Embedder", "SentenceTransformerEmbedder", "load_embedder"]
