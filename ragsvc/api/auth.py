"""Who may do what: the guard every route passes, and the keyless loopback mode.

    request ──▶ authorize (app guard) ──▶ handler(principal=...)
                  │  route opt {"public": True} (/health): no check
                  ├─ keys exist: `Authorization: Bearer KEY` or `X-API-Key: KEY`
                  │     none, unknown or revoked ─▶ 401      scope too small ─▶ 403
                  │     over the key's requests per second ─▶ 429 + Retry-After
                  └─ no keys: the loopback user (admin); a foreign `Host` (DNS rebinding)
                        or an `Origin` not the server's own (another site's page) ─▶ 403

A route states the scope it needs in its `opt` (`{"scope": "write"}`; `read` when silent).
Handlers take the `Principal` as a dependency: a key limited to collections gets 404 for
everything outside them, exactly as for ids that do not exist, so existence does not leak.
Without keys, `ragsvc serve` binds loopback only (`check_bind`). A refused write is written to
the audit log with the reason.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import anyio
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from indexes import CollectionNotFound
from ragsvc.api.problems import status_of
from ragsvc.errors import Forbidden, RagsvcError, ServiceError, TooManyRequests, Unauthorized
from ragsvc.security.audit import AuditEntry
from ragsvc.security.keys import LOOPBACK_USER, KeyStore, Principal, Scope, principal_of

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BindRefused(RagsvcError):
    """`ragsvc serve` was asked to listen beyond loopback with no API key."""


def check_bind(host: str, keys: KeyStore) -> None:
    """Refuse to serve beyond loopback with no key to ask for."""
    if not is_loopback(host) and not keys.has_keys():
        raise BindRefused(
            f"refusing to serve on {host} without API keys: anyone who can reach the port could "
            "read and delete every document. Create one with `ragsvc keys create --name NAME "
            "--scope admin`, or serve on 127.0.0.1"
        )


def _host_name(host_header: str) -> str:
    """`Host` without its port (`[::1]:8000` → `::1`)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    authorization = connection.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = connection.headers.get("x-api-key", "").strip()
    return api_key or None


def _keyless(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    host = connection.headers.get("host", "")
    if not is_loopback(_host_name(host)):
        raise Forbidden(
            f"Host {host!r} is not this server's: without API keys it answers only requests "
            "addressed to localhost (create a key to serve other names)"
        )
    origin = connection.headers.get("origin")
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        raise Forbidden(
            f"cross-site request refused (Origin {origin!r}): without API keys only this "
            "server's own pages may call it"
        )
    if connection.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("cross-site request refused: without API keys only this server may call it")
    return LOOPBACK_USER


class RateLimiter:
    """A token bucket per key: `rate` requests per second, in bursts of up to `rate`."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, key_id: str, rate: float) -> float:
        """0 when the request may go ahead (and counts), else the seconds until it may."""
        now = time.monotonic()
        capacity = max(rate, 1.0)
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / rate


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app's guard: who the request acts for, and whether the route allows it."""
    if handler.opt.get("public"):
        return
    services = connection.app.state.services
    needed: Scope = handler.opt.get("scope", "read")
    actor = "anonymous"
    try:
        principal = _principal(connection, services.keys)
        actor = principal.key_id or "loopback"
        if not principal.can(needed):
            raise Forbidden(f"this key's scope is {principal.scope}; this route needs {needed}")
        rate = services.settings.key_rate_limit
        if principal.rate_limit is not None:
            rate = principal.rate_limit
        if principal.key_id is not None and rate > 0:
            wait = services.limiter.wait(principal.key_id, rate)
            if wait > 0:
                raise TooManyRequests(f"over this key's {rate:g} requests per second", wait)
    except ServiceError as error:
        if needed != "read":
            entry = AuditEntry(
                actor=error.actor if isinstance(error, RevokedKey) else actor,
                action=str(handler.opt.get("action", connection.scope["path"])),
                target=f"{connection.scope.get('method', '')} {connection.scope['path']}",
                client=client_address(connection),
                outcome=f"{error.status}: {error}",
            )
            await anyio.to_thread.run_sync(services.audit.record, entry)
            mark_audited(error)
        raise
    connection.state.principal = principal


def mark_audited(error: Exception) -> None:
    """Note that `error`'s refusal is in the audit log, so `audit_refusal` skips it."""
    error.__dict__["audited"] = True


async def audit_refusal(error: Exception, scope: Any) -> None:
    """The app's after-exception hook: a write refused before its handler ran (a form past
    its limits, a body that could not be decoded) is audited like one refused inside it."""
    route = scope.get("route_handler")
    if route is None or error.__dict__.get("audited"):
        return
    needed = route.opt.get("scope", "read")
    state = scope.get("state") or {}
    principal = state.get("principal")
    services = getattr(scope["app"].state, "services", None)
    if needed == "read" or principal is None or services is None:
        return
    status, detail = status_of(error)
    if status >= 500:
        return  # a server error is logged, not a refusal
    entry = AuditEntry(
        actor=principal.key_id or "loopback",
        action=str(route.opt.get("action", scope["path"])),
        target=f"{scope.get('method', '')} {scope['path']}",
        client=scope["client"][0] if scope.get("client") else "unknown",
        outcome=f"{status}: {detail}",
    )
    await anyio.to_thread.run_sync(services.audit.record, entry)


def _principal(connection: ASGIConnection[Any, Any, Any, Any], keys: KeyStore) -> Principal:
    active = keys.active()  # read once per request
    if not active:
        return _keyless(connection)
    token = _token(connection)
    if token is None:
        raise Unauthorized("an API key is required (Authorization: Bearer KEY or X-API-Key)")
    key = keys.authenticate(token, active)
    if key is None:
        revoked = keys.revoked_id(token)
        if revoked is not None:
            raise RevokedKey(revoked)
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    return principal_of(key)


class RevokedKey(Unauthorized):
    """A key that was revoked: refused like an unknown one, but audited under its id."""

    def __init__(self, key_id: str) -> None:
        super().__init__("the API key is not valid (unknown or revoked)")
        self.actor = f"{key_id} (revoked)"


def current_principal(request: Request[Any, Any, Any]) -> Principal:
    """The dependency handlers declare as `principal: Principal`."""
    principal: Principal = request.state.principal
    return principal


def visible(principal: Principal, collection: str | None) -> str | None:
    """`collection` when the principal may see it; a collection it may not is not found."""
    if collection is not None and not principal.sees(collection):
        raise CollectionNotFound(collection)
    return collection


def visible_collections(principal: Principal, collection: str | None) -> list[str] | None:
    """The collections a search or listing may look in: None for every collection."""
    if visible(principal, collection) is not None or principal.collections is None:
        return None
    return sorted(principal.collections)
