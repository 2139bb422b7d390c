"""Logging of the service: one JSON object per line, each with the request it belongs to.

`REQUEST_ID` holds the id of the request being served (the request middleware sets it from
`X-Request-ID`, or makes one); the worker sets it to the id of the upload that made the job
it runs, so one id follows an upload from its request into the worker's log lines and a
question into the interaction log. `configure_logging` installs the formatter for
`ragsvc serve` and its worker (setting `log_format`; `text` for people at a terminal).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from ingest.embed import show_export_progress

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# LogRecord's own attributes: everything else on a record came through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


def request_id_from(header: str | None) -> str:
    """The client's id when it is a plausible one (printable, short), else a new one."""
    if header and _VALID_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str, *, process: str = "server") -> None:
    """Root logging for a service process: JSON lines (or text) on stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(levelname)s %(name)s[{process}]: %(message)s [%(request_id)s]")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    show_export_progress(level)
    if level != "debug":
        # pypdf logs every repair it makes to a malformed file; failures are reported anyway.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
