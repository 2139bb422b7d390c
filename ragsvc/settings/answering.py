"""Settings of answers, LLM backends, prompts and the interaction log.

Each field carries its bounds, default and meaning (`Meta(description=...)`); the manual's
settings page is generated from them (`ragsvc.settings.table`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from ragsvc.settings.service import ServiceSettings


class AnsweringSettings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    answer_backend: Annotated[
        Literal["extractive", "openai", "ollama", "anthropic", "gemini", "cohere"],
        Meta(
            description=(
                "Answering backend for `/query`: `extractive` (offline, no LLM), `openai` "
                "(any OpenAI-compatible server: OpenAI, vLLM, llama.cpp, LM Studio), "
                "`ollama`, `anthropic`, `gemini` or `cohere`. A request may ask for "
                "`extractive` or this one."
            )
        ),
    ] = "extractive"
    answer_min_confidence: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description=(
                "Confidence below which `/query` answers `answerable: false` (not found in "
                "the documents). The extractive answerer's confidence is the chance its "
                "answer is right; 0.3 was chosen on held-apart questions as the most that "
                "withholds at most 2 in 100 answers that cite a gold answer."
            ),
        ),
    ] = 0.3
    answer_sentence_vectors: Annotated[
        Literal["stored", "rerank", "encode"],
        Meta(
            description=(
                "Where the extractive answerer gets sentence vectors: `stored` (pooled at "
                "ingestion from each chunk's own forward pass; no model call beyond the "
                "question's), `rerank` (stored vectors shortlist `answer_rerank_sentences` "
                "sentences, which are embedded and scored again) or `encode` (every "
                "sentence of the retrieved passages embedded per answer)."
            )
        ),
    ] = "stored"
    answer_rerank_sentences: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description=(
                "How many sentences stored vectors shortlist for embedding when "
                "`answer_sentence_vectors` is `rerank`."
            ),
        ),
    ] = 4
    llm_model: Annotated[
        str,
        Meta(
            description=(
                "Model name sent to the LLM backend (required unless the backend is extractive)."
            )
        ),
    ] = ""
    llm_base_url: Annotated[
        str,
        Meta(
            description=(
                "Base URL of the LLM API; empty means the provider's own (OpenAI "
                "`https://api.openai.com/v1`, Ollama `http://127.0.0.1:11434`, ...)."
            )
        ),
    ] = ""
    llm_api_key: Annotated[
        str,
        Meta(
            description=(
                "API key for the LLM backend. When empty, the provider's usual variable is "
                "read (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, "
                "`CO_API_KEY`). Never logged or returned."
            )
        ),
    ] = ""
    llm_timeout: Annotated[
        float, Meta(gt=0, description="Seconds before an LLM call times out.")
    ] = 60.0
    llm_retries: Annotated[
        int,
        Meta(
            ge=0,
            le=10,
            description=(
                "Retries after a timeout, 429 or 5xx, with backoff that honours `Retry-After`."
            ),
        ),
    ] = 2
    llm_breaker_failures: Annotated[
        int,
        Meta(
            ge=1,
            description=(
                "Consecutive failures that open the circuit breaker; while open, `/query` "
                "answers with the extractive backend and says so in `fallback_reason`."
            ),
        ),
    ] = 5
    llm_breaker_reset: Annotated[
        float,
        Meta(gt=0, description="Seconds the breaker stays open before one trial call (half-open)."),
    ] = 30.0
    llm_context_tokens: Annotated[
        int,
        Meta(
            ge=64, description="Token budget for the passages packed into the prompt, best first."
        ),
    ] = 3000
    llm_max_answer_tokens: Annotated[
        int, Meta(ge=1, description="Most tokens the LLM may generate for an answer.")
    ] = 512
    llm_temperature: Annotated[
        float,
        Meta(
            ge=0,
            le=2,
            description="Sampling temperature; at 0, answers are deterministic and cached.",
        ),
    ] = 0.0
    prompt_template: Annotated[
        str, Meta(description="Name of the QA prompt template (see `GET /templates`).")
    ] = "qa"
    prompt_templates_dir: Annotated[
        str,
        Meta(
            description=(
                "Folder of extra `*.toml` templates (they may override built-in ones by "
                "name); checked at start-up."
            )
        ),
    ] = ""
    answer_cache_size: Annotated[
        int,
        Meta(
            ge=0,
            description=(
                "Answers to deterministic requests kept in memory, keyed by backend, model, "
                "prompt and store generation (0 turns the cache off)."
            ),
        ),
    ] = 1024
    conversation_max_turns: Annotated[
        int,
        Meta(
            ge=0,
            le=100,
            description=(
                "Earlier messages of a conversation (`/query`'s `messages`, the OpenAI "
                "route's) a follow-up is read with; the oldest beyond go. 0: none."
            ),
        ),
    ] = 8
    conversation_max_chars: Annotated[
        int,
        Meta(
            ge=0,
            le=1_000_000,
            description="Characters of those messages at most; the oldest beyond go.",
        ),
    ] = 4000
    interaction_log: Annotated[
        Literal["sqlite", "jsonl", "off"],
        Meta(
            description=(
                "Where every `/query` is recorded (request id, question, chunk ids and "
                "scores, template, backend and model, tokens, latency per stage, "
                "confidence, error): `sqlite` (`interactions.sqlite3` in the data folder), "
                "`jsonl` (`interactions.jsonl`) or `off`. `ragsvc log tail` shows it."
            )
        ),
    ] = "sqlite"
    interaction_log_redact: Annotated[
        bool,
        Meta(
            description=(
                "Replace e-mail addresses, card numbers and phone numbers in logged "
                "questions and errors with `[email]`, `[card]`, `[phone]`."
            )
        ),
    ] = False
    interaction_log_retention_days: Annotated[
        int,
        Meta(
            ge=0,
            le=36_500,
            description=(
                "Delete interaction records older than this many days (checked at start and "
                "hourly); 0 keeps them."
            ),
        ),
    ] = 0
