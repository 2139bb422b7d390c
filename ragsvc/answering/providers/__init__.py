"""LLM providers, one module each, keyed by the name the settings use."""

from ragsvc.answering.providers.anthropic import AnthropicClient
from ragsvc.answering.providers.base import HttpChatClient
from ragsvc.answering.providers.cohere import CohereClient
from ragsvc.answering.providers.gemini import GeminiClient
from ragsvc.answering.providers.ollama import OllamaClient
from ragsvc.answering.providers.openai import OpenAIClient

PROVIDERS: dict[str, type[HttpChatClient]] = {
    client.name: client
    for client in (OpenAIClient, OllamaClient, AnthropicClient, GeminiClient, CohereClient)
}

__all__ = ["PROVIDERS", "HttpChatClient"]
