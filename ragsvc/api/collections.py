"""Routes for collections: list them with their counts, create and delete them."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from ragsvc.api.auth import (
    visible,
)
from ragsvc.api.common import AuditedWrite, Caller, CollectionPath, in_thread, services_of
from ragsvc.api.schemas import (
    CollectionInfo,
    CollectionList,
    NewCollection,
)
from ragsvc.errors import (
    BadRequest,
    Conflict,
)


@get("/collections", summary="Collections with their document and chunk counts")
async def list_collections(state: State, principal: Caller) -> CollectionList:
    names = None if principal.collections is None else sorted(principal.collections)
    rows = await services_of(state).reads.collections(names)
    return CollectionList([CollectionInfo(*row) for row in rows])


@post(
    "/collections",
    status_code=201,
    summary="Create an empty collection",
    opt={"scope": "admin", "action": "collection.create"},
)
async def create_collection(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    data: JSONBody[NewCollection],
) -> CollectionInfo:
    services = services_of(state)
    name = data.name.strip()
    async with AuditedWrite(
        services, principal, request, "collection.create", f"collection {name}"
    ):
        if not name:
            raise BadRequest("name is empty")
        visible(principal, name)
        if not await in_thread(services.catalog.create_collection, name):
            raise Conflict(f"collection {name!r} already exists")
    return CollectionInfo(name, 0, 0)


@delete(
    "/collections/{name:str}",
    summary="Delete a collection with all its documents, chunks and vectors",
    opt={"scope": "admin", "action": "collection.delete"},
)
async def delete_collection(
    state: State, principal: Caller, request: Request[Any, Any, Any], name: CollectionPath
) -> None:
    services = services_of(state)
    target = f"collection {name}"
    async with AuditedWrite(services, principal, request, "collection.delete", target) as audit:
        visible(principal, name)
        documents, chunks = await in_thread(services.catalog.delete_collection, name)
        audit.target = f"collection {name} ({documents} documents, {chunks} chunks)"
