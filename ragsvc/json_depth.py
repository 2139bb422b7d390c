"""How deep a JSON text nests, measured before any decoder recurses into it.

msgspec's decoder recurses once per level and meets Python's recursion limit near a thousand
levels, a `RecursionError` that would be a 500. Every JSON request body (`bound_json_depth`,
run before the route decodes it) and the upload's `metadata` field are measured here first:
past `MAX_JSON_DEPTH` levels the request is a 400 that names the field, and nothing is
decoded. Measuring is linear and runs in C where it can: strings are blanked by one regular
expression, brackets are counted with numpy.
"""

from __future__ import annotations

import re

import numpy as np
from litestar import Request

from ragsvc.errors import BadRequest

MAX_JSON_DEPTH = 64
"""Levels of arrays and objects a request's JSON may nest (a response schema included)."""
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(rb'("(?:[^"\\]|\\.)*")\s*(:)?|([\[\]{}])', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in `raw` (0 for a scalar)."""
    blanked = _STRING.sub(b'""', raw)
    if not blanked:
        return 0
    steps = _OPEN[np.frombuffer(blanked, dtype=np.uint8)].astype(np.int32)
    return int(max(0, np.cumsum(steps).max()))


def too_deep(raw: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why `raw` may not be decoded, or None: it nests past `limit` levels, said of the
    field of the top-level object where it does (or of `what` as a whole)."""
    levels = depth(raw)
    if levels <= limit:
        return None
    field = _deep_field(raw, limit)
    where = f"{what} field {field!r}" if field else what
    return f"{where} nests {levels} levels deep; the limit is {limit}"


def _deep_field(raw: bytes, limit: int) -> str | None:
    """The top-level object's key under which the nesting passes `limit`, if there is one."""
    level = 0
    key: str | None = None
    for match in _TOKEN.finditer(raw):
        string, colon, bracket = match.groups()
        if string is not None:
            if colon and level == 1:
                key = string[1:-1].decode("utf-8", "replace")
            continue
        level += 1 if bracket in b"[{" else -1
        if level > limit:
            return key if raw.lstrip()[:1] == b"{" else None
    return None


async def bound_json_depth(request: Request) -> None:
    """Refuse a JSON body that nests past `MAX_JSON_DEPTH`, before the route decodes it."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.headers.get("content-type", "").startswith("multipart/"):
        return
    body = await request.body()
    if body[:1] in b"[{ \t\r\n" and body.strip()[:1] in (b"[", b"{"):
        reason = too_deep(body, "the request body")
        if reason:
            raise BadRequest(reason)
