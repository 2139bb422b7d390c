"""An `Embedder` on ONNX Runtime: the same model as sentence-transformers, without torch.

Made for short inputs one at a time (queries): a model exported by `onnx_export` runs in
about a third of torch's time for one query here, and the process never imports torch, so a
server holding it stays small. Tokenisation is the model's own `tokenizer.json` (the
`tokenizers` library), pooling and normalisation are done in numpy, exactly as
sentence-transformers does them (mean over real tokens, then L2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ingest.errors import EmbedderUnavailable


class OnnxEmbedder:
    def __init__(self, folder: Path, model_id: str, *, max_tokens: int, threads: int = 0) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as error:
            raise EmbedderUnavailable(f"onnxruntime is not installed ({error})") from None
        self.model_id = model_id
        self.max_tokens = max_tokens
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads that spin between queries keep the cores busy at normal priority, starving
        # an ingestion worker below it; waking them costs well under a millisecond.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
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
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def load_export(folder: Path, *, threads: int = 0) -> OnnxEmbedder:
    manifest = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    return OnnxEmbedder(
        folder, manifest["model_id"], max_tokens=int(manifest["max_tokens"]), threads=threads
    )
