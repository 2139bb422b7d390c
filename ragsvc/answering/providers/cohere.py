"""Cohere's v2 chat API (`/v2/chat`), streaming typed Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragsvc.answering.chat import BackendRejected, ChatRequest, Completion, decode_json, sse_data
from ragsvc.answering.providers.base import HttpChatClient, bearer, chat_messages, truncated


class CohereClient(HttpChatClient):
    name = "cohere"
    default_base_url = "https://api.cohere.com"

    def url(self, stream: bool) -> str:
        return f"{self.base_url}/v2/chat"

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
            body["response_format"] = {"type": "json_object", "json_schema": request.json_schema}
        return body

    def parse(self, payload: Any) -> Completion:
        content = payload["message"]["content"]
        text = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        tokens = (payload.get("usage") or {}).get("tokens") or {}
        return Completion(text, tokens.get("input_tokens"), tokens.get("output_tokens"))

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for _, data in sse_data(lines):
            payload = decode_json(data, self.name)
            kind = payload.get("type")
            if kind == "content-delta":
                text = payload["delta"]["message"]["content"].get("text")
                if text:
                    yield text
            elif kind == "message-end":
                return
            elif kind == "error":
                raise BackendRejected(f"{self.name} stream error: {payload}")
        raise truncated(self.name)
