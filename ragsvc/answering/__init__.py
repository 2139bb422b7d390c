"""Answering: the `LLMBackend` contract, its backends keyed by name, prompts and the cache.

`build_backends(settings, embedder)` returns the backends a service offers: always
`extractive`, plus the configured LLM backend (`answer_backend`) when it is another one.
"""

from __future__ import annotations

import os

from ingest import Embedder
from ragsvc.answering.base import NOT_FOUND, Answer, LLMBackend, Passage
from ragsvc.answering.chat import CircuitBreaker, RetryPolicy
from ragsvc.answering.extractive import ExtractiveBackend, StructuredOutputUnsupported
from ragsvc.answering.generative import GenerativeBackend, SchemaMismatch
from ragsvc.answering.prompts import Template, TemplateError, load_templates
from ragsvc.answering.providers import PROVIDERS
from ragsvc.settings import Settings

# Where each provider's key is usually found when `llm_api_key` is not set.
KEY_VARIABLES = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "cohere": ("CO_API_KEY", "COHERE_API_KEY"),
    "ollama": (),
}


def api_key(settings: Settings) -> str | None:
    if settings.llm_api_key:
        return settings.llm_api_key
    for variable in KEY_VARIABLES.get(settings.answer_backend, ()):
        if os.environ.get(variable):
            return os.environ[variable]
    return None


def build_backends(
    settings: Settings, embedder: Embedder, templates: dict[str, Template] | None = None
) -> dict[str, LLMBackend]:
    extractive = ExtractiveBackend(
        embedder,
        min_confidence=settings.answer_min_confidence,
        sentence_vectors=settings.answer_sentence_vectors,
        rerank=settings.answer_rerank_sentences,
    )
    backends: dict[str, LLMBackend] = {"extractive": extractive}
    if settings.answer_backend == "extractive":
        return backends
    templates = templates if templates is not None else load_templates(settings.templates_path)
    if settings.prompt_template not in templates:
        raise TemplateError(
            f"prompt_template {settings.prompt_template!r} not found; have {sorted(templates)}"
        )
    if not settings.llm_model:
        raise TemplateError(f"answer_backend {settings.answer_backend!r} needs llm_model set")
    client = PROVIDERS[settings.answer_backend](
        model=settings.llm_model,
        base_url=settings.llm_base_url or None,
        api_key=api_key(settings),
        timeout=settings.llm_timeout,
    )
    backends[settings.answer_backend] = GenerativeBackend(
        client,
        templates[settings.prompt_template],
        embedder,
        extractive,
        context_tokens=settings.llm_context_tokens,
        max_answer_tokens=settings.llm_max_answer_tokens,
        temperature=settings.llm_temperature,
        min_confidence=settings.answer_min_confidence,
        retry=RetryPolicy(attempts=settings.llm_retries + 1),
        breaker=CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset),
        condenser=templates.get("condense"),
        cache_size=settings.answer_cache_size,
    )
    return backends


__all__ = [
    "NOT_FOUND",
    "Answer",
    "ExtractiveBackend",
    "GenerativeBackend",
    "LLMBackend",
    "Passage",
    "SchemaMismatch",
    "StructuredOutputUnsupported",
    "Template",
    "TemplateError",
    "build_backends",
    "load_templates",
]
