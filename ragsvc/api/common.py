"""What the route modules share: the injected caller, path parameters with their bounds, running
blocking work in a thread (retrieval in its own bounded set), and the audit entry every write
records."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import PathParameter

from ragsvc.api.auth import (
    client_address,
    mark_audited,
)
from ragsvc.api.problems import status_of
from ragsvc.api.services import Services
from ragsvc.security.audit import AuditEntry
from ragsvc.security.keys import Principal

DocumentId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="A document id")]
JobId = Annotated[str, PathParameter(min_length=1, max_length=64, description="A job id")]
Caller = NamedDependency[Principal]
"""The principal a handler acts for, injected by name (see `auth.authorize`)."""
CollectionPath = Annotated[
    str, PathParameter(min_length=1, max_length=200, description="A collection name")
]
T = TypeVar("T")


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


async def in_search_thread(
    services: Services, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """`in_thread` for retrieval: at most `search_threads` searches run at once. More
    threads than cores only contend for the interpreter lock and the caches (under 32
    clients, BM25 and row fetches cost twice their one-client CPU with a thread each)."""
    call = functools.partial(function, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, limiter=services.search_slots)


class AuditedWrite:
    """One write's audit entry, recorded when its outcome is known:

        async with AuditedWrite(services, principal, request, "delete", "document 7") as audit:
            ...                          # raising records the refusal, with its status
            audit.target = "document 7 (a.pdf) in docs"   # what the entry names when done

    The caller is the key (or "loopback"); the CLI records its own writes with `cli`."""

    def __init__(
        self,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
        action: str,
        target: str,
    ) -> None:
        self.audit = services.audit
        self.target = target
        self.entry = AuditEntry(
            actor=principal.key_id or "loopback",
            action=action,
            target=target,
            client=client_address(request),
            outcome="",
        )

    async def __aenter__(self) -> AuditedWrite:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if error is None:
            await self._record("ok")
        elif isinstance(error, Exception):
            status, detail = status_of(error)
            mark_audited(error)
            await self._record(f"{status}: {detail}")

    async def _record(self, outcome: str) -> None:
        entry = msgspec.structs.replace(self.entry, outcome=outcome, target=self.target)
        await in_thread(self.audit.record, entry)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
