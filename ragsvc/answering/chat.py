"""Chat clients: the one small interface each LLM provider implements, and what wraps it.

A `ChatClient` turns (system, user) messages into a `Completion`, or into a stream of text
pieces. Each provider module (openai, ollama, anthropic, gemini, cohere) implements it over
its own HTTP protocol; everything else (retries, the circuit breaker, prompts, citations,
confidence) is shared and provider-agnostic.

    BackendError                 the LLM could not give an answer
    ├── BackendUnavailable       transport error, timeout, 5xx, or a stream cut short
    │   └── RateLimited          429; `retry_after` seconds when the server said
    ├── BackendRejected          4xx other than 429 (bad key, bad model, bad request): no retry
    ├── BadResponse              a body that is not the protocol's shape (malformed JSON)
    └── CircuitOpen              too many recent failures; calls are not attempted
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx
import msgspec

from ragsvc.errors import RagsvcError

T = TypeVar("T")


class BackendError(RagsvcError):
    """The LLM backend could not produce an answer."""


class BackendUnavailable(BackendError):
    pass


class RateLimited(BackendUnavailable):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendRejected(BackendError):
    pass


class BadResponse(BackendError):
    pass


class CircuitOpen(BackendError):
    pass


class Completion(msgspec.Struct, frozen=True):
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatRequest(msgspec.Struct, frozen=True):
    system: str
    user: str
    json_schema: dict[str, Any] | None = None
    """Ask for JSON matching this schema (in the provider's native JSON mode where it has one)."""
    temperature: float = 0.0
    max_tokens: int = 512


class ChatClient(Protocol):
    name: str
    model: str

    def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """Text pieces as the provider produces them; closing the iterator cancels the call."""
        ...


# -- HTTP helpers shared by the providers --------------------------------------------------


def raise_for_status(response: httpx.Response, provider: str) -> None:
    """Map an HTTP error status to the error tree (reading the body for its message)."""
    if response.status_code < 400:
        return
    try:
        body = response.read().decode("utf-8", errors="replace")[:500]
    except httpx.HTTPError:
        body = ""
    message = f"{provider} answered {response.status_code}: {body or response.reason_phrase}"
    if response.status_code == 429:
        raise RateLimited(message, parse_retry_after(response.headers.get("retry-after")))
    if response.status_code >= 500:
        raise BackendUnavailable(message)
    raise BackendRejected(message)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def decode_json(raw: bytes | str, provider: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise BadResponse(f"{provider} sent malformed JSON: {error}") from None


def sse_data(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """(event, data) of each Server-Sent Event in a line stream."""
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


def transport_errors(provider: str) -> Callable[[Exception], BackendError]:
    def convert(error: Exception) -> BackendError:
        if isinstance(error, httpx.TimeoutException):
            return BackendUnavailable(f"{provider} timed out: {error}")
        return BackendUnavailable(f"cannot reach {provider}: {error}")

    return convert


# -- resilience ----------------------------------------------------------------------------


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, error: BackendError) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        backoff = self.base_delay * (2**attempt)
        return min(self.max_delay, backoff * (0.5 + random.random() / 2))


def with_retries(
    call: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run `call`, retrying unavailable or rate-limited backends with backoff."""
    for attempt in range(policy.attempts):
        try:
            return call()
        except BackendUnavailable as error:
            if attempt + 1 >= policy.attempts:
                raise
            sleep(policy.delay(attempt, error))
    raise AssertionError("unreachable")


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after `reset_after`
    seconds (one trial call) → closed on success, open again on failure."""

    def __init__(self, threshold: int = 5, reset_after: float = 30.0) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def before(self) -> None:
        """Raise `CircuitOpen` unless a call may go ahead (in half-open state, one trial)."""
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half-open" and self._trial_running):
                raise CircuitOpen("the backend failed repeatedly; not calling it for now")
            self._trial_running = state == "half-open"

    def call(self, action: Callable[[], T]) -> T:
        self.before()
        try:
            result = action()
        except (BackendUnavailable, BadResponse):
            self.record_failure()
            raise
        self.record_success()
        return result

    def record_failure(self) -> None:
        with self._lock:
            self._trial_running = False
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = time.monotonic()

    def record_success(self) -> None:
        with self._lock:
            self._trial_running = False
            self._failures = 0
            self._opened_at = None
