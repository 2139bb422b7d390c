"""What a JSON request may be before it is decoded (how deep it nests, whether it is text),
and the one parser of document metadata, for the API and the CLI alike.

Depth: msgspec's decoder recurses once per level and meets Python's recursion limit near a
thousand levels, a `RecursionError` that would be a 500. Every JSON request body (`check_json_body`,
run before the route decodes it) and the upload's `metadata` field are measured here first:
past `MAX_JSON_DEPTH` levels the request is a 400 that names the field, and nothing is
decoded. Measuring is linear and runs in C where it can: strings are blanked by one regular
expression, brackets are counted with numpy.

Text: a string escape of half a UTF-16 surrogate pair (`"\\ud800"` alone) is valid JSON
syntax but not text; the decoder's own complaint ("Input data was truncated") would mislead,
so such a body is a 400 that says what it holds.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import numpy as np
from litestar import Request

from ragsvc.api.schemas import MAX_METADATA_KEYS
from ragsvc.errors import BadRequest

MAX_JSON_DEPTH = 64
"""Levels of arrays and objects a request's JSON may nest (a response schema included)."""
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(rb'("(?:[^"\\]|\\.)*")\s*(:)?|([\[\]{}])', re.DOTALL)
# A high surrogate escape and the low one after it, or a low one alone; "\\\\ud800" (an
# escaped backslash before "ud800") is text, hence the even run of backslashes before.
_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(?:(\\u[dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|(\\u[dD][c-fC-F][0-9a-fA-F]{2}))"
)
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


def lone_surrogate(raw: bytes) -> str | None:
    """The first escape of half a surrogate pair in `raw`, if there is one."""
    for match in _SURROGATE.finditer(raw):
        high, low, lone_low = match.groups()
        if high and not low:
            return str(high.decode())
        if lone_low:
            return str(lone_low.decode())
    return None


async def check_json_body(request: Request) -> None:
    """Refuse a JSON body that nests past `MAX_JSON_DEPTH`, or that escapes half a
    surrogate pair, before the route decodes it."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.headers.get("content-type", "").startswith("multipart/"):
        return
    body = await request.body()
    if body[:1] in b"[{ \t\r\n" and body.strip()[:1] in (b"[", b"{"):
        reason = too_deep(body, "the request body")
        if reason:
            raise BadRequest(reason)
        half = lone_surrogate(body)
        if half:
            raise BadRequest(
                f"the request body escapes half a UTF-16 surrogate pair ({half}) with no "
                "other half: not text"
            )


MAX_METADATA_CHARS = 65_536


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """A document's metadata as a client sends it (the upload's `metadata` field, `ragsvc
    ingest --metadata`): a JSON object of at most `MAX_METADATA_KEYS` keys and
    `MAX_METADATA_CHARS` characters, nesting at most `MAX_JSON_DEPTH` levels, of text, with
    64-bit integers. Anything else is a `BadRequest` that says why."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise BadRequest(f"metadata is {len(raw)} characters; the limit is {MAX_METADATA_CHARS}")
    encoded = raw.encode("utf-8", "surrogatepass")
    reason = too_deep(encoded, "metadata")
    if reason:
        raise BadRequest(reason)
    half = lone_surrogate(encoded)
    if half:
        raise BadRequest(f"metadata escapes half a UTF-16 surrogate pair ({half}): not text")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise BadRequest(f"metadata is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object")
    if len(value) > MAX_METADATA_KEYS:
        raise BadRequest(f"metadata has {len(value)} keys; the limit is {MAX_METADATA_KEYS}")
    _check_integers(value)
    return value


def _check_integers(value: Any) -> None:
    """SQLite's JSON functions hold 64-bit integers: refuse wider ones here."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise BadRequest(f"metadata integer {value} is out of the 64-bit range")
    if isinstance(value, dict):
        for item in value.values():
            _check_integers(item)
    elif isinstance(value, list):
        for item in value:
            _check_integers(item)
