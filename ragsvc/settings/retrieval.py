"""Settings of the vector and lexical indexes, and how retrieval ranks chunks.

Each field carries its bounds, default and meaning (`Meta(description=...)`); the manual's
settings page is generated from them (`ragsvc.settings.table`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from ragsvc.settings.embedding import EmbeddingSettings


class RetrievalSettings(EmbeddingSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index_type: Annotated[
        Literal["auto", "flat", "hnsw", "ivf", "ivf_sq8"],
        Meta(
            description=(
                "Vector index: `auto` (exact `flat` below `index_auto_threshold` vectors, "
                "`ivf` from there, `ivf_sq8` from `index_compress_threshold`; the server "
                "rebuilds aside and swaps when a store crosses one), or a kind by name: "
                "`flat`, `hnsw`, `ivf`, `ivf_sq8` (IVF over one byte per dimension: a quarter "
                "of the memory, recall@10 0.973 against 0.994 at a million vectors). `ragsvc "
                "rebuild --index-type` changes an existing one."
            )
        ),
    ] = "auto"
    index_auto_threshold: Annotated[
        int,
        Meta(
            ge=1,
            description=(
                "Vectors from which `auto` builds IVF instead of exact search (measured: "
                "`benchmarks/bench_index.py`)."
            ),
        ),
    ] = 25_000
    index_compress_threshold: Annotated[
        int,
        Meta(
            ge=1,
            description=(
                "Vectors from which `auto` builds `ivf_sq8` (4 million float32 vectors of "
                "384 dimensions are 6 GB; their 8-bit codes, 1.5 GB)."
            ),
        ),
    ] = 4_000_000
    index_hnsw_m: Annotated[
        int, Meta(ge=4, le=128, description="HNSW: neighbours per node (`M`).")
    ] = 32
    index_hnsw_ef_construction: Annotated[
        int,
        Meta(ge=8, le=2000, description="HNSW: candidate list while building (`efConstruction`)."),
    ] = 80
    index_hnsw_ef_search: Annotated[
        int, Meta(ge=8, le=5000, description="HNSW: candidate list while searching (`efSearch`).")
    ] = 128
    index_ivf_nlist: Annotated[
        int, Meta(ge=0, description="IVF: lists (k-means cells); 0: about 4·sqrt(vectors).")
    ] = 0
    index_ivf_nprobe: Annotated[
        int,
        Meta(
            ge=0,
            description="IVF: lists a search visits; 0: 32 (measured: `benchmarks/RESULTS.md`).",
        ),
    ] = 0
    vector_backend: Annotated[
        Literal["faiss", "milvus"],
        Meta(
            description=(
                "Where vectors are searched: `faiss` (in the serving process) or `milvus` "
                "(a Milvus collection per index build, derived from the store like the "
                "FAISS index). See docs/scaling.md."
            )
        ),
    ] = "faiss"
    milvus_uri: Annotated[
        str,
        Meta(
            description=(
                "Milvus to use with `vector_backend = milvus`: a server "
                "(`http://host:19530`) or a milvus-lite file; empty: `milvus.db` in the "
                "data directory (milvus-lite, one process)."
            )
        ),
    ] = ""
    milvus_token: Annotated[
        str, Meta(description="Milvus credentials (`user:password` or an API key); never logged.")
    ] = ""
    retrieval_mode: Annotated[
        Literal["dense", "lexical", "hybrid"],
        Meta(
            description=(
                "Default retrieval for search and query: `dense` (FAISS), `lexical` (BM25) "
                "or `hybrid` (both, fused). Requests and `ragsvc search --mode` may "
                "override it."
            )
        ),
    ] = "hybrid"
    # Retrieval defaults chosen by `ragsvc eval tune` on SciFact's training split (809 queries),
    # reported on its test split (benchmarks/RESULTS.md, "Retrieval settings chosen on train").
    lexical_k1: Annotated[
        float,
        Meta(ge=0, le=10, description="BM25 term-frequency saturation `k1` of lexical retrieval."),
    ] = 1.2
    lexical_b: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="BM25 length normalisation `b` of lexical retrieval (0: none, 1: full).",
        ),
    ] = 0.3
    fusion: Annotated[
        Literal["rrf", "weighted"],
        Meta(
            description=(
                "How hybrid retrieval fuses the two lists: `rrf` (reciprocal rank fusion) "
                "or `weighted` (scores normalised by `fusion_normalisation`, weighted by "
                "`fusion_dense_weight`). `ragsvc eval tune` chooses these on labelled "
                "queries."
            )
        ),
    ] = "weighted"
    fusion_rrf_k: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="The k constant of reciprocal rank fusion: score = sum of 1 / (k + rank).",
        ),
    ] = 60
    fusion_dense_weight: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="Weight of the dense scores in weighted fusion (lexical gets the rest).",
        ),
    ] = 0.5
    fusion_normalisation: Annotated[
        Literal["minmax", "max", "zscore"],
        Meta(
            description=(
                "How weighted fusion puts the two lists' scores on one scale: `minmax` "
                "(each list onto [0, 1]), `max` (divided by the list's best score) or "
                "`zscore`."
            )
        ),
    ] = "max"
    fusion_candidates: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="Candidates taken from each retriever before hybrid fusion.",
        ),
    ] = 200
    eval_document_share: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description=(
                "How `ragsvc eval` ranks a document from its chunks: its best chunk's score "
                "plus this share of its other chunks' (0: the best chunk alone)."
            ),
        ),
    ] = 0.0
    reranker: Annotated[
        str,
        Meta(
            description=(
                "A local sentence-transformers cross-encoder folder (or "
                "`package.module:Class`) that orders the top `reranker_candidates` hits of "
                "every search and query again; empty: none. It runs on torch in the server "
                "(about 300 MB more; cost per query in `benchmarks/RESULTS.md`)."
            )
        ),
    ] = ""
    reranker_candidates: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description=(
                "The top hits the reranker reads and orders again per search; when k is "
                "larger, the hits below them follow in their own order."
            ),
        ),
    ] = 20
    mmr_lambda: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description=(
                "Maximal marginal relevance for `/query` context: 1 keeps the relevance "
                "order (off); lower values trade relevance for diversity among 3·k "
                "candidates."
            ),
        ),
    ] = 1.0
    context_neighbours: Annotated[
        int,
        Meta(
            ge=0,
            le=10,
            description=(
                "Chunks on each side of a retrieved chunk, from the same document, added to "
                "its passage in the `/query` context (0: none)."
            ),
        ),
    ] = 0
