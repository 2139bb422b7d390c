"""Service errors and their one mapping to RFC 9457 problem-details JSON.

    ServiceError                      (this module; status on the class)
    ├── BadRequest              400   malformed metadata, empty upload, bad parameters
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

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from indexes import IndexesError, ModelMismatch, NotFound
from ragsvc.answering.chat import BackendError
from ragsvc.answering.extractive import StructuredOutputUnsupported

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger(__name__)


class Problem(msgspec.Struct, frozen=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str


class ServiceError(Exception):
    status = 400
    title = "Bad request"


class BadRequest(ServiceError):
    pass


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"


_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    502: "Bad gateway",
    500: "Internal server error",
}


def problem(request: Request[Any, Any, Any], status: int, detail: str) -> Response[Problem]:
    title = _TITLES.get(status, "Error")
    slug = title.lower().replace(" ", "-")
    return Response(
        Problem(f"about:blank#{slug}", title, status, detail, request.url.path),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def handle_exception(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """The one place where exceptions become HTTP responses."""
    if isinstance(error, ServiceError):
        return problem(request, error.status, str(error))
    if isinstance(error, StructuredOutputUnsupported):
        return problem(request, 400, str(error))
    if isinstance(error, BackendError):
        return problem(request, 502, str(error))
    if isinstance(error, NotFound):
        return problem(request, 404, str(error))
    if isinstance(error, ModelMismatch):
        return problem(request, 409, str(error))
    if isinstance(error, ValidationException):
        return problem(request, 400, _validation_detail(error))
    if isinstance(error, HTTPException):
        return problem(request, error.status_code, str(error.detail))
    if isinstance(error, IndexesError):
        return problem(request, 409, str(error))
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(request, 500, "an internal error occurred; it has been logged")


def _validation_detail(error: ValidationException) -> str:
    extra = error.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                where = item.get("key") or item.get("source") or ""
                parts.append(f"{where}: {item.get('message', '')}".strip(": "))
        if parts:
            return "; ".join(parts)
    return str(error.detail)
