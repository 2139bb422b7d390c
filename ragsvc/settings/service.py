"""Settings of the ingestion worker, extraction limits, the HTTP server and keys.

Each field carries its bounds, default and meaning (`Meta(description=...)`); the manual's
settings page is generated from them (`ragsvc.settings.table`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from ragsvc.settings.retrieval import RetrievalSettings


class ServiceSettings(RetrievalSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index_save_interval: Annotated[
        float,
        Meta(
            ge=0,
            description=(
                "Seconds between saves of the vector index file during writes (it is always "
                "saved at the end of a command; after a crash it is caught up from the "
                "store)."
            ),
        ),
    ] = 30.0
    refresh_interval: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description=(
                "Seconds between the server's looks at the store's change log: documents "
                "committed by the worker or a CLI command become searchable within this, "
                "and a rebuild made elsewhere is picked up and swapped in."
            ),
        ),
    ] = 0.25
    ingest_worker: Annotated[
        Literal["process", "thread"],
        Meta(
            description=(
                "Where the server runs ingestion jobs: `process` (a worker process it "
                "starts and restarts, at lower CPU priority, the single writer of "
                "documents) or `thread` (inside the server process, for tests and small "
                "set-ups)."
            )
        ),
    ] = "process"
    worker_nice: Annotated[
        int,
        Meta(
            ge=0,
            le=19,
            description=(
                "Niceness added to the ingestion worker and to `ragsvc ingest` and "
                "`rebuild`, so queries keep their CPU while documents are embedded (0: "
                "none, 19: most)."
            ),
        ),
    ] = 10
    ingest_engine: Annotated[
        Literal["local", "ray"],
        Meta(
            description=(
                "Where the worker and `ragsvc ingest` extract, chunk and embed: `local` (in "
                "the process) or `ray` (Ray Data batches on an actor pool that holds the "
                "model; needs `pip install 'ragsvc[ray]'`). The process stays the single "
                "writer either way."
            )
        ),
    ] = "local"
    ray_address: Annotated[
        str,
        Meta(
            description=(
                'The Ray cluster for `ingest_engine = "ray"`: `HOST:PORT` of a cluster this '
                "machine is a node of, `ray://HOST:10001` (Ray Client) or `auto`; empty "
                "starts a local Ray inside the process."
            )
        ),
    ] = ""
    ray_actors: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="Embedding actors on Ray, each holding one copy of the model.",
        ),
    ] = 1
    ray_actor_cpus: Annotated[
        float,
        Meta(gt=0, le=1024, description="CPUs each Ray actor reserves (and its torch threads)."),
    ] = 2.0
    ray_batch_documents: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Documents per Ray actor call (one Ray Data batch)."),
    ] = 32
    ray_commit_chunks: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "Chunks per store transaction when results come back from Ray: a document "
                "is acknowledged once its transaction commits."
            ),
        ),
    ] = 512
    job_max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=100,
            description=(
                "Attempts after which an ingestion job that keeps stopping the worker (a "
                "crash, a kill) fails for good with the reason."
            ),
        ),
    ] = 3
    default_collection: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=200,
            description="Collection used when a command or request names none.",
        ),
    ] = "default"
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        Meta(description="Logging level: `debug`, `info`, `warning` or `error`."),
    ] = "warning"
    log_format: Annotated[
        Literal["json", "text"],
        Meta(
            description=(
                "How `ragsvc serve` and its worker log: `json` (one object per line, with "
                "`request_id`) or `text`. Other commands log text."
            )
        ),
    ] = "json"
    tracing: Annotated[
        bool,
        Meta(
            description=(
                "Send OpenTelemetry traces (a span per request, children per stage) over "
                "OTLP, configured by the standard `OTEL_*` variables (`pip install "
                "'ragsvc[otel]'`)."
            )
        ),
    ] = False
    host: Annotated[
        str,
        Meta(
            description=(
                "Address `ragsvc serve` binds to; loopback by default. Use `0.0.0.0` to expose it."
            )
        ),
    ] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535, description="Port `ragsvc serve` listens on.")] = 8000
    search_threads: Annotated[
        int,
        Meta(
            ge=0,
            le=256,
            description=(
                "Searches the server runs at once (0: one per core); more requests wait "
                "their turn. Threads beyond the cores only contend: at 32 clients on 2 "
                "cores, one per core served 287 requests/s against 222 with a thread each."
            ),
        ),
    ] = 0
    max_file_bytes: Annotated[
        int, Meta(ge=1, description="Largest uploaded file, in bytes (larger ones get 413).")
    ] = 50_000_000
    max_request_bytes: Annotated[
        int, Meta(ge=1, description="Largest upload request, all files together, in bytes (413).")
    ] = 200_000_000
    max_files_per_upload: Annotated[
        int, Meta(ge=1, le=100_000, description="Most files in one upload request (more get 413).")
    ] = 1000
    extract_sandbox: Annotated[
        bool,
        Meta(
            description=(
                "Extract documents in a child process with the limits below, so a hostile "
                "file fails its own job; false extracts in the ingesting process (faster "
                "for trusted files)."
            )
        ),
    ] = True
    extract_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Seconds one document's extraction may take; then it stops and the job fails."
            ),
        ),
    ] = 120.0
    extract_max_memory: Annotated[
        int,
        Meta(
            ge=100_000_000,
            description=(
                "Bytes of address space of the extraction process (past it, the job fails)."
            ),
        ),
    ] = 2_000_000_000
    extract_max_pages: Annotated[
        int,
        Meta(
            ge=1,
            description=(
                "Pages read from one PDF; a longer one is indexed up to here, noted capped."
            ),
        ),
    ] = 2_000
    extract_max_stream_bytes: Annotated[
        int,
        Meta(
            ge=1_000,
            description="Bytes one PDF stream may decompress to (a bigger one fails its page).",
        ),
    ] = 50_000_000
    extract_max_decompressed_bytes: Annotated[
        int,
        Meta(
            ge=1_000,
            description=(
                "Bytes all the page contents of one PDF may decompress to; past it the "
                "document is capped."
            ),
        ),
    ] = 200_000_000
    extract_max_chars: Annotated[
        int,
        Meta(
            ge=1_000,
            description="Characters of text kept from one document; past it, it is capped.",
        ),
    ] = 5_000_000
    ocr: Annotated[
        bool,
        Meta(
            description=(
                "Read scanned PDF pages (no text layer) by OCR of their images, with "
                "RapidOCR on ONNX Runtime (`pip install 'ragsvc[ocr]'`; models come with "
                'the package). Off: such a PDF fails with "no extractable text".'
            )
        ),
    ] = False
    key_rate_limit: Annotated[
        float,
        Meta(
            ge=0,
            description=(
                "Requests per second an API key may make, with bursts of as many (more get "
                "429 with `Retry-After`); 0: unlimited. `ragsvc keys create --rate` sets it "
                "for one key."
            ),
        ),
    ] = 50.0
    key_upload_bytes_per_day: Annotated[
        int,
        Meta(
            ge=0,
            description=(
                "Bytes an API key may upload per UTC day (more get 429 with `Retry-After`); "
                "0: unlimited. `ragsvc keys create --upload-quota` sets it for one key."
            ),
        ),
    ] = 0
    allowed_types: Annotated[
        tuple[str, ...],
        Meta(
            description=(
                "Media types accepted for upload, decided by content sniffing (others get "
                "415). In the environment: a comma-separated list."
            )
        ),
    ] = (
        "application/pdf",
        "text/plain",
        "text/markdown",
        "text/html",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/epub+zip",
    )
    upload_wait_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Seconds `POST /documents?wait=true` waits for its jobs before answering "
                "202 anyway."
            ),
        ),
    ] = 300.0
