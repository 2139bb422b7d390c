"""OpenVINO as a query runtime for `exported.ExportedEmbedder`: the same exported model,
compiled for this CPU, in bfloat16 where the CPU computes it natively (AVX512-BF16, AMX) and
fp32 elsewhere or when `precision = "fp32"`.

It reads its own copy of the export with weights stored in float16 (`openvino/`, made on first
use: 60 MB less held in memory). For one short query it answered in about two thirds of ONNX
Runtime's time here (5.2 against 7.7 ms p50 with idle time between queries, 2 threads), with
vectors at cosine 0.99997 to torch's fp32. An infer request is not safe to use from two threads
at once, so calls take turns (the service's micro-batcher makes them from one thread anyway).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ingest.embed.exported import ArithmeticHint
from ingest.errors import EmbedderUnavailable

RUNTIME_CACHE_SHAPES = 128
IR_FOLDER = "openvino"


class OpenVinoForward:
    def __init__(self, model_path: Path, threads: int, precision: ArithmeticHint) -> None:
        try:
            import openvino
        except ImportError as error:
            raise EmbedderUnavailable(f"openvino is not installed ({error})") from None
        core = openvino.Core()
        capable = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        bf16 = precision != "fp32" and capable
        config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # Kernels prepared per input shape (batch x tokens) are kept for reuse; the default
            # (5,000) let a server under varied load grow by 200 MB, while 128 keeps one
            # query's latency (16 cost 40% on queries of every length).
            "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_SHAPES,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        model = core.read_model(str(_half_precision_copy(openvino, core, model_path)))
        self.inputs = [name for port in model.inputs for name in port.get_names()]
        self._request = core.compile_model(model, "CPU", config).create_infer_request()
        # Batches (queries that waited for each other: the server is busy) run on one thread:
        # threads that split one small pass spend a third of their CPU waiting on each other.
        self._batch_request = self._request
        if threads != 1 and (threads or os.cpu_count() or 1) > 1:
            lean = {**config, "INFERENCE_NUM_THREADS": 1}
            self._batch_request = core.compile_model(model, "CPU", lean).create_infer_request()
        self._lock = threading.Lock()
        self.name = f"openvino-{'bf16' if bf16 else 'fp32'}"

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        single = len(next(iter(feeds.values()))) == 1
        with self._lock:
            request = self._request if single else self._batch_request
            # The request owns its output buffer: copy before the next call overwrites it.
            return np.array(request.infer(feeds)[0], dtype=np.float32, copy=True)


def _half_precision_copy(openvino: Any, core: Any, model_path: Path) -> Path:
    """OpenVINO's own copy of the export with weights stored in float16 (made once, beside
    the export): the process holds 60 MB less, and the load-time check still holds every
    vector to torch's. The export itself where the folder cannot be written."""
    target = model_path.parent / IR_FOLDER / "model.xml"
    if target.exists():
        return target
    work = Path(tempfile.mkdtemp(prefix=".openvino-", dir=model_path.parent))
    try:
        openvino.save_model(core.read_model(str(model_path)), str(work / "model.xml"),
                            compress_to_fp16=True)  # fmt: skip
        os.replace(work, target.parent)
    except OSError:
        return target if target.exists() else model_path  # another process made it first
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def load(model_path: Path, threads: int, precision: ArithmeticHint) -> OpenVinoForward:
    return OpenVinoForward(model_path, threads, precision)
