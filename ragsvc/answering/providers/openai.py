"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp's server, LM Studio, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragsvc.answering.chat import BackendRejected, ChatRequest, Completion, decode_json, sse_data
from ragsvc.answering.providers.base import HttpChatClient, bearer, chat_messages, truncated


class OpenAIClient(HttpChatClient):
    name = "openai"
    default_base_url = "https://api.openai.com/v1"

    def url(self, stream: bool) -> str:
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        return bearer(self._api_key)

    def body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(request),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": stream,
        }
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.json_schema},
            }
        return body

    def parse(self, payload: Any) -> Completion:
        usage = payload.get("usage") or {}
        return Completion(
            payload["choices"][0]["message"]["content"] or "",
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
        )

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for _, data in sse_data(lines):
            if data == "[DONE]":
                return
            chunk = decode_json(data, self.name)
            if "error" in chunk:
                raise BackendRejected(f"{self.name} stream error: {chunk['error']}")
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text
        raise truncated(self.name)
