"""ONNX Runtime as a query runtime for `exported.ExportedEmbedder` (fp32, any CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.embed.exported import ArithmeticHint
from ingest.errors import EmbedderUnavailable


class OnnxForward:
    name = "onnxruntime-fp32"

    def __init__(self, model_path: Path, threads: int) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise EmbedderUnavailable(f"onnxruntime is not installed ({error})") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads that spin between queries keep the cores busy at normal priority, starving
        # an ingestion worker below it; waking them costs well under a millisecond.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self._session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        hidden: np.ndarray = self._session.run(None, feeds)[0]
        return hidden


def load(model_path: Path, threads: int, precision: ArithmeticHint) -> OnnxForward:
    return OnnxForward(model_path, threads)
