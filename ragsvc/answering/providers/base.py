"""What every HTTP chat provider shares: one httpx client, error mapping, streamed lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from ragsvc.answering.chat import (
    BackendUnavailable,
    BadResponse,
    ChatRequest,
    Completion,
    decode_json,
    raise_for_status,
    transport_errors,
)


class HttpChatClient:
    """A `ChatClient` over HTTP; subclasses describe their protocol."""

    name = "http"
    default_base_url = ""

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.model = model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._api_key = api_key
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        self._errors = transport_errors(self.name)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # -- what a provider defines -------------------------------------------------------------

    def url(self, stream: bool) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    def body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, payload: Any) -> Completion:
        raise NotImplementedError

    def pieces(self, lines: Iterator[str]) -> Iterator[str]:
        """Text pieces from the streamed body's lines; raise when the stream is cut short."""
        raise NotImplementedError

    # -- the ChatClient interface ------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        try:
            response = self._http.post(
                self.url(False), json=self.body(request, False), headers=self.headers()
            )
        except httpx.HTTPError as error:
            raise self._errors(error) from None
        raise_for_status(response, self.name)
        try:
            return self.parse(decode_json(response.content, self.name))
        except (KeyError, IndexError, TypeError) as error:
            raise BadResponse(f"{self.name} answered in an unexpected shape: {error!r}") from None

    def stream(self, request: ChatRequest) -> Iterator[str]:
        try:
            with self._http.stream(
                "POST", self.url(True), json=self.body(request, True), headers=self.headers()
            ) as response:
                raise_for_status(response, self.name)
                try:
                    yield from self.pieces(response.iter_lines())
                except (KeyError, IndexError, TypeError) as error:
                    raise BadResponse(
                        f"{self.name} streamed an unexpected shape: {error!r}"
                    ) from None
        except httpx.HTTPError as error:
            raise self._errors(error) from None


def chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The system and user messages, as the chat-completions family of APIs takes them."""
    return [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.user},
    ]


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def truncated(provider: str) -> BackendUnavailable:
    return BackendUnavailable(f"{provider} stream ended before its final event")
