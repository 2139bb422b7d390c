"""Loopback HTTP servers that speak each LLM provider's protocol, for tests.

Each `FakeLLM` implements one provider faithfully enough for a real client: the request path
and auth header it checks, the response body, the streaming framing (SSE events or NDJSON)
and the error body. What it answers is computed from the prompt: the first sentence of
passage 1, cited as [1] (or a JSON object when JSON output was asked for). A `script` of
behaviours makes the next requests fail in chosen ways: "429" (with Retry-After: 1), "500",
"stall" (answer after `stall_seconds`), "truncate" (a stream cut before its final event),
"malformed" (a body that is not JSON), "bad-json" (JSON that misses the requested schema).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ragsvc.settings import Settings

API_KEY = "test-key-123"
PROVIDERS = ("openai", "ollama", "anthropic", "gemini", "cohere")


def default_answer(system: str, user: str, wants_json: bool) -> str:
    if "<conversation>" in user:  # the condense template: a follow-up made to stand alone
        previous = re.findall(r'<turn role="user">\n(.*?)\n</turn>', user, re.S)[-1]
        question = re.search(r"Last question: (.*)", user).group(1).strip()  # type: ignore[union-attr]
        return f"{question.rstrip('?')}, about this: {previous}"
    match = re.search(r'<passage number="1"[^>]*>\n(.*?)\n</passage>', user, re.S)
    if wants_json:
        return json.dumps({"answer": "from the passages", "passage": 1})
    if match is None:
        return "NOT_FOUND"
    first = re.split(r"(?<=[.!?])\s+", match.group(1).strip())[0]
    return f"{first} [1]"


class FakeLLM:
    def __init__(self, provider: str, *, token_delay: float = 0.0) -> None:
        assert provider in PROVIDERS
        self.provider = provider
        self.token_delay = token_delay
        self.script: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.cancelled = threading.Event()
        self.stall_seconds = 3.0
        self.answer: Callable[[str, str, bool], str] = default_answer
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        root = f"http://{host}:{port}"
        return {"openai": f"{root}/v1", "gemini": f"{root}/v1beta"}.get(self.provider, root)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the protocol ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length)
        body = json.loads(raw)
        self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
        route = self._route(handler.path)
        if route is None:
            return self._error(handler, 404, "not found")
        if not self._authorised(handler):
            return self._error(handler, 401, "invalid api key")
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "429":
            return self._error(handler, 429, "rate limited", {"Retry-After": "1"})
        if behaviour == "500":
            return self._error(handler, 500, "internal error")
        if behaviour == "stall":
            time.sleep(self.stall_seconds)
        system, user, wants_json = self._prompt(body)
        text = self.answer(system, user, wants_json)
        if behaviour == "bad-json":
            text = json.dumps({"unexpected": True})
        if route == "stream":
            return self._stream(handler, text, truncate=behaviour == "truncate")
        if behaviour == "malformed":
            return self._send(handler, 200, b'{"choices": [{"message": ', "application/json")
        return self._send(
            handler, 200, json.dumps(self._complete(text)).encode(), "application/json"
        )

    def _route(self, path: str) -> str | None:
        """'complete' or 'stream' for this provider's endpoint, None for any other path."""
        if self.provider == "openai" and path == "/v1/chat/completions":
            return "stream" if self.requests[-1]["body"].get("stream") else "complete"
        if self.provider == "ollama" and path == "/api/chat":
            return "stream" if self.requests[-1]["body"].get("stream", True) else "complete"
        if self.provider == "anthropic" and path == "/v1/messages":
            return "stream" if self.requests[-1]["body"].get("stream") else "complete"
        if self.provider == "cohere" and path == "/v2/chat":
            return "stream" if self.requests[-1]["body"].get("stream") else "complete"
        if self.provider == "gemini":
            if re.fullmatch(r"/v1beta/models/[^/:]+:generateContent", path):
                return "complete"
            if re.fullmatch(r"/v1beta/models/[^/:]+:streamGenerateContent\?alt=sse", path):
                return "stream"
        return None

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        headers = handler.headers
        if self.provider in ("openai", "cohere"):
            return headers.get("authorization") == f"Bearer {API_KEY}"
        if self.provider == "anthropic":
            return headers.get("x-api-key") == API_KEY and bool(headers.get("anthropic-version"))
        if self.provider == "gemini":
            return headers.get("x-goog-api-key") == API_KEY
        return True  # Ollama has no authentication

    def _prompt(self, body: dict[str, Any]) -> tuple[str, str, bool]:
        if self.provider == "anthropic":
            return body["system"], body["messages"][0]["content"], "JSON Schema" in body["system"]
        if self.provider == "gemini":
            config = body.get("generationConfig", {})
            return (
                body["systemInstruction"]["parts"][0]["text"],
                body["contents"][0]["parts"][0]["text"],
                config.get("responseMimeType") == "application/json",
            )
        messages = {m["role"]: m["content"] for m in body["messages"]}
        wants_json = "response_format" in body or "format" in body
        return messages["system"], messages["user"], wants_json

    def _complete(self, text: str) -> dict[str, Any]:
        prompt_tokens, output_tokens = 120, len(text.split())
        if self.provider == "openai":
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": prompt_tokens + output_tokens,
                },
            }
        if self.provider == "ollama":
            return {
                "model": "fake",
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": prompt_tokens,
                "eval_count": output_tokens,
            }
        if self.provider == "anthropic":
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "fake",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
            }
        if self.provider == "gemini":
            return {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": output_tokens,
                },
            }
        return {
            "id": "c1",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"tokens": {"input_tokens": prompt_tokens, "output_tokens": output_tokens}},
        }

    def _frames(self, pieces: list[str]) -> Iterator[bytes]:
        """The provider's streaming frames for `pieces`; the last frame is the final event."""

        def sse(data: Any, event: str | None = None) -> bytes:
            head = f"event: {event}\n" if event else ""
            return f"{head}data: {json.dumps(data)}\n\n".encode()

        if self.provider == "openai":
            for piece in pieces:
                yield sse(
                    {
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": piece}}],
                    }
                )
            yield sse(
                {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
            yield b"data: [DONE]\n\n"
        elif self.provider == "ollama":
            for piece in pieces:
                yield (
                    json.dumps(
                        {
                            "model": "fake",
                            "message": {"role": "assistant", "content": piece},
                            "done": False,
                        }
                    )
                    + "\n"
                ).encode()
            yield (
                json.dumps(
                    {
                        "model": "fake",
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                    }
                )
                + "\n"
            ).encode()
        elif self.provider == "anthropic":
            yield sse(
                {"type": "message_start", "message": {"id": "msg_1", "content": []}},
                "message_start",
            )
            yield sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            )
            yield sse({"type": "ping"}, "ping")
            for piece in pieces:
                yield sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                    "content_block_delta",
                )
            yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield sse(
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta"
            )
            yield sse({"type": "message_stop"}, "message_stop")
        elif self.provider == "gemini":
            for piece in pieces:
                yield sse(
                    {"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}}]}
                )
            yield sse(
                {
                    "candidates": [
                        {
                            "content": {"parts": [{"text": ""}], "role": "model"},
                            "finishReason": "STOP",
                        }
                    ]
                }
            )
        else:
            yield sse(
                {"type": "message-start", "delta": {"message": {"role": "assistant"}}},
                "message-start",
            )
            for piece in pieces:
                yield sse(
                    {
                        "type": "content-delta",
                        "index": 0,
                        "delta": {"message": {"content": {"text": piece}}},
                    },
                    "content-delta",
                )
            yield sse(
                {"type": "message-end", "delta": {"finish_reason": "COMPLETE"}}, "message-end"
            )

    def _stream(self, handler: BaseHTTPRequestHandler, text: str, *, truncate: bool) -> None:
        words = text.split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        frames = list(self._frames(pieces))
        if truncate:
            frames = frames[: max(2, len(frames) // 2)]
        media = "application/x-ndjson" if self.provider == "ollama" else "text/event-stream"
        handler.send_response(200)
        handler.send_header("content-type", media)
        handler.send_header("connection", "close")
        handler.end_headers()
        try:
            for frame in frames:
                handler.wfile.write(frame)
                handler.wfile.flush()
                if self.token_delay:
                    time.sleep(self.token_delay)
        except (BrokenPipeError, ConnectionResetError):
            self.cancelled.set()

    def _error(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        bodies = {
            "openai": {"error": {"message": message, "type": "api_error", "code": status}},
            "ollama": {"error": message},
            "anthropic": {"type": "error", "error": {"type": "api_error", "message": message}},
            "gemini": {"error": {"code": status, "message": message, "status": "UNAVAILABLE"}},
            "cohere": {"message": message},
        }
        self._send(
            handler, status, json.dumps(bodies[self.provider]).encode(), "application/json", headers
        )

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        media: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("content-type", media)
        handler.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)


def llm_settings(tmp_path: Path, fake: FakeLLM, **overrides: Any) -> Settings:
    """Settings of a thread-worker service answering through `fake`."""
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "answer_backend": fake.provider,
        "llm_model": "fake-model",
        "llm_base_url": fake.base_url,
        "llm_api_key": API_KEY,
        "llm_timeout": 1.0,
        "llm_retries": 1,
        "ingest_worker": "thread",
        **overrides,
    }
    return Settings(**values)
