"""Google's Gemini API (`generateContent`, and `streamGenerateContent?alt=sse`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragsvc.answering.chat import BackendRejected, ChatRequest, Completion, decode_json, sse_data
from ragsvc.answering.providers.base import HttpChatClient, truncated


class GeminiClient(HttpChatClient):
    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"

    def url(self, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.base_url}/models/{self.model}:{method}"

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        config: dict[str, Any] = {
            "temperature": request.temperature,
            "maxOutputTokens": request.max_tokens,
        }
        if request.json_schema is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = request.json_schema
        return {
            "systemInstruction": {"parts": [{"text": request.system}]},
            "contents": [{"role": "user", "parts": [{"text": request.user}]}],
            "generationConfig": config,
        }

    @staticmethod
    def _text(payload: Any) -> str:
        candidates = payload.get("candidates") or []
        if not candidates:
            return ""
        parts = (candidates[0].get("content") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts)

    def parse(self, payload: Any) -> Completion:
        if not payload.get("candidates"):
            raise BackendRejected(f"{self.name} returned no candidates: {payload}")
        usage = payload.get("usageMetadata") or {}
        return Completion(
            self._text(payload), usage.get("promptTokenCount"), usage.get("candidatesTokenCount")
        )

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for _, data in sse_data(lines):
            payload = decode_json(data, self.name)
            if "error" in payload:
                raise BackendRejected(f"{self.name} stream error: {payload['error']}")
            text = self._text(payload)
            if text:
                yield text
            candidates = payload.get("candidates") or [{}]
            if candidates[0].get("finishReason"):
                return
        raise truncated(self.name)
