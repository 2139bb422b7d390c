"""The service's errors, under one root, `RagsvcError`, as `indexes` has `IndexesError` and
`ingest` has `IngestError`: the CLI refuses (exit 2) on any of the three roots, and
`api.problems` maps the service's and the index's to RFC 9457 problem-details JSON.

    RagsvcError
    ├── ConfigurationError     a setting, template or reranker that cannot be used
    ├── ServiceError           a refused request, its status on the class (below)
    ├── answering.chat.BackendError, answering.StructuredOutputUnsupported
    ├── jobs.queue.JobNotCancellable, interactions.log.FeedbackUnavailable
    └── api.auth.BindRefused, jobs.worker.WorkerBusy, cli.common.CommandError

The HTTP statuses:

    ServiceError                      (this module; status on the class)
    ├── BadRequest              400   malformed metadata, empty upload, bad parameters, JSON
    │                                 nested past `json_limits.MAX_JSON_DEPTH`
    ├── Unauthorized            401   no API key, or one unknown or revoked
    ├── Forbidden               403   a key's scope too small; keyless cross-site or foreign Host
    ├── AnswerNotFound          404   feedback for an answer the caller cannot see, or none
    ├── Conflict                409   a collection that already exists; feedback without an
    │                                 SQLite interaction log
    ├── TooManyRequests         429   a key over its rate limit or daily upload quota
    ├── PayloadTooLarge         413   a file or request over its limit
    └── UnsupportedMediaType    415   content sniffing found no extractor
    answering.StructuredOutputUnsupported  400   a response schema for the extractive backend
    answering.SchemaMismatch    502   the LLM's reply does not match the response schema
    answering.chat.BackendError 502   the LLM failed where no fallback applies
    indexes.NotFound            404   unknown document, collection or job
    indexes.ModelMismatch       409   the store was embedded with another model
    litestar HTTPException      its own status (validation 400, unknown route 404, ...)
    anything else               500   logged with a request id; no internals in the body

Every error body is `{"type", "title", "status", "detail", "instance"}` with media type
`application/problem+json`; a test pins the shape.
"""

from __future__ import annotations

import math
from typing import ClassVar


class RagsvcError(Exception):
    """The root of the service's own errors."""


class ConfigurationError(RagsvcError):
    """A setting, prompt template or reranker that cannot be used: the service does not start,
    and a command refuses (exit 2)."""


class ServiceError(RagsvcError):
    """A request refused, with its HTTP status on the class (`api.problems` maps it)."""

    status = 400
    title = "Bad request"
    headers: ClassVar[dict[str, str]] = {}

    def response_headers(self) -> dict[str, str]:
        return self.headers


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="ragsvc"'}


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class AnswerNotFound(ServiceError):
    status = 404
    title = "Not found"


class TooManyRequests(ServiceError):
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"
