"""The one mapping of exceptions to HTTP responses: RFC 9457 problem-details JSON, with the status
each error class answers with (see `ragsvc.errors` for the table)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from indexes import IndexesError, ModelMismatch, NotFound
from ragsvc.answering.chat import BackendError
from ragsvc.answering.extractive import StructuredOutputUnsupported
from ragsvc.errors import ServiceError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger(__name__)


class Problem(msgspec.Struct, frozen=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    502: "Bad gateway",
    500: "Internal server error",
}


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    title = _TITLES.get(status, "Error")
    slug = title.lower().replace(" ", "-")
    return Response(
        Problem(f"about:blank#{slug}", title, status, detail, request.url.path),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def status_of(error: Exception) -> tuple[int, str]:
    """The HTTP status an exception answers with, and the detail it says (500: none)."""
    if isinstance(error, ServiceError):
        return error.status, str(error)
    if isinstance(error, StructuredOutputUnsupported):
        return 400, str(error)
    if isinstance(error, BackendError):
        return 502, str(error)
    if isinstance(error, NotFound):
        return 404, str(error)
    if isinstance(error, ModelMismatch):
        return 409, str(error)
    if isinstance(error, ValidationException):
        return 400, _validation_detail(error)
    if isinstance(error, HTTPException):
        if error.status_code == 400 and error.detail == "Request Entity Too Large":
            # Litestar's multipart parser past one of its limits (kept a 400 there), which it
            # does not name: the number of parts or the size of one part's headers.
            return 413, (
                "an upload past the form's limits: more files than max_files_per_upload "
                "(setting), or a part whose headers pass 4,096 bytes (a file name that long)"
            )
        return error.status_code, str(error.detail)
    if isinstance(error, IndexesError):
        return 409, str(error)
    return 500, "an internal error occurred; it has been logged"


def handle_exception(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """The one place where exceptions become HTTP responses."""
    status, detail = status_of(error)
    if status == 500:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
    headers = error.response_headers() if isinstance(error, ServiceError) else None
    return problem(request, status, detail, headers or None)


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
