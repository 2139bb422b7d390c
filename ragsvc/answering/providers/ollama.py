"""Ollama's native chat API (`/api/chat`), streaming newline-delimited JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragsvc.answering.chat import BackendRejected, ChatRequest, Completion, decode_json
from ragsvc.answering.providers.base import HttpChatClient, chat_messages, truncated


class OllamaClient(HttpChatClient):
    name = "ollama"
    default_base_url = "http://127.0.0.1:11434"

    def url(self, stream: bool) -> str:
        return f"{self.base_url}/api/chat"

    def body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(request),
            "stream": stream,
            "options": {"temperature": request.temperature, "num_predict": request.max_tokens},
        }
        if request.json_schema is not None:
            body["format"] = request.json_schema
        return body

    def parse(self, payload: Any) -> Completion:
        return Completion(
            payload["message"]["content"],
            payload.get("prompt_eval_count"),
            payload.get("eval_count"),
        )

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            if not line.strip():
                continue
            chunk = decode_json(line, self.name)
            if "error" in chunk:
                raise BackendRejected(f"{self.name} stream error: {chunk['error']}")
            text = (chunk.get("message") or {}).get("content")
            if text:
                yield text
            if chunk.get("done"):
                return
        raise truncated(self.name)
