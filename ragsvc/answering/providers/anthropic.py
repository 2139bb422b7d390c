"""Anthropic's Messages API. It has no JSON mode, so a schema is asked for in the prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ragsvc.answering.chat import (
    BackendRejected,
    BackendUnavailable,
    ChatRequest,
    Completion,
    decode_json,
    sse_data,
)
from ragsvc.answering.providers.base import HttpChatClient, truncated

API_VERSION = "2023-06-01"


class AnthropicClient(HttpChatClient):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def url(self, stream: bool) -> str:
        return f"{self.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        system = request.system
        if request.json_schema is not None:
            system += (
                "\n\nReply with one JSON object only, no prose, matching this JSON Schema:\n"
                + json.dumps(request.json_schema)
            )
        return {
            "model": self.model,
            "system": system,
            "messages": [{"role": "user", "content": request.user}],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }

    def parse(self, payload: Any) -> Completion:
        text = "".join(b.get("text", "") for b in payload["content"] if b.get("type") == "text")
        usage = payload.get("usage") or {}
        return Completion(text, usage.get("input_tokens"), usage.get("output_tokens"))

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for event, data in sse_data(lines):
            payload = decode_json(data, self.name)
            kind = event or payload.get("type")
            if kind == "content_block_delta":
                delta = payload["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield delta["text"]
            elif kind == "message_stop":
                return
            elif kind == "error":
                error = payload.get("error") or {}
                message = f"{self.name} stream error: {error.get('message', data)}"
                if error.get("type") in ("overloaded_error", "api_error"):
                    raise BackendUnavailable(message)
                raise BackendRejected(message)
        raise truncated(self.name)
