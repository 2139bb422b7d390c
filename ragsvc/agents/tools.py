"""The MCP tools and resources, and the client of the HTTP API they call.

    search            the top chunks for a query: document, pages, location, snippet, scores
    ask               an answer with its sources, `answerable` and `confidence` (as `/query`)
    list_documents    documents, paginated, optionally in one collection
    read_document     a document's chunks, optionally a page range, paginated
    list_collections  collections with their counts
    add_document      text or a base64 file, through the upload path (write scope)

A document is also a resource, `ragsvc://documents/{id}`: its text, chunk by chunk. An error
of the API (a 4xx with its reason) reaches the agent as a tool error that says what to do;
the session goes on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field

from ragsvc import __version__

SNIPPET_CHARS = 300
MAX_TOOL_TEXT = 2_000_000
"""Characters of text `add_document` takes (a file's bytes go through `max_file_bytes`)."""

ClientFactory = Callable[[Context[Any, Any]], AbstractAsyncContextManager[httpx.AsyncClient]]
"""Opens the API client for one tool call, with the caller's key when it has one."""

_HINTS = {
    400: "fix the argument the message names",
    401: "the MCP client needs an API key (Authorization: Bearer KEY)",
    403: "this key's scope or collections do not allow it; use a key that does",
    404: "list_documents or list_collections gives the ids and names there are",
    409: "it conflicts with what is stored; the message says how",
    413: "send less at once",
    415: "send a PDF, Office, EPUB, HTML, Markdown or text document",
    429: "wait and try again",
}

INSTRUCTIONS = (
    "Search and answer questions from the user's own documents. `ask` answers with verified "
    "citations and a calibrated confidence, and says 'not in the documents' when they do not "
    "hold the answer: prefer it for questions. `search` returns passages to read yourself; "
    "`read_document` pages through one document."
)


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; a refusal becomes a tool error with the API's reason and a hint."""
    response = await client.request(method, path, **kwargs)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        hint = _HINTS.get(response.status_code, "the service failed; try again later")
        raise ToolError(f"{response.status_code}: {detail} ({hint})")
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


@asynccontextmanager
async def in_process_client(app: Any, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the ASGI `app` in this process (no socket), as a loopback caller."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers=headers, timeout=None
    ) as client:
        yield client


def _pages(item: dict[str, Any]) -> dict[str, Any]:
    return {"page_start": item.get("page_start"), "page_end": item.get("page_end")}


def build_server(open_client: ClientFactory) -> MCPServer[Any]:
    """The MCP server, each tool calling the API through `open_client`."""
    server: MCPServer[Any] = MCPServer(
        name="ragsvc", version=__version__, instructions=INSTRUCTIONS
    )

    @server.tool(description="Passages of the documents that match a query, best first.")
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=4000, description="What to find")],
        ctx: Context[Any, Any],
        k: Annotated[int, Field(ge=1, le=100, description="How many passages")] = 5,
        collection: Annotated[str | None, Field(max_length=200)] = None,
        mode: Literal["dense", "lexical", "hybrid"] | None = None,
        document_ids: Annotated[list[int] | None, Field(max_length=1000)] = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, "k": k, "collection": collection, "mode": mode}
        if document_ids:
            body["filters"] = {"document_ids": document_ids}
        async with open_client(ctx) as client:
            found = await call(client, "POST", "/search", json=_present(body))
        return [
            {
                "document_id": hit["document_id"],
                "source_name": hit["source_name"],
                "collection": hit["collection"],
                **_pages(hit),
                "location": hit.get("location"),
                "snippet": " ".join(hit["text"].split())[:SNIPPET_CHARS],
                "score": hit["score"],
                "similarity": hit.get("similarity"),
            }
            for hit in found["results"]
        ]

    @server.tool(
        description="Answer a question from the documents, with numbered sources (document, "
        "pages, the quoted passage, `cited`), `answerable` and a calibrated `confidence`. When "
        "the documents do not hold the answer, `answerable` is false: say so, do not guess."
    )
    async def ask(
        question: Annotated[str, Field(min_length=1, max_length=4000)],
        ctx: Context[Any, Any],
        k: Annotated[int, Field(ge=1, le=100, description="Passages to answer from")] = 5,
        collection: Annotated[str | None, Field(max_length=200)] = None,
    ) -> dict[str, Any]:
        body = _present({"question": question, "k": k, "collection": collection})
        async with open_client(ctx) as client:
            answer = await call(client, "POST", "/query", json=body)
        return {
            "answer": answer["answer"],
            "answerable": answer["answerable"],
            "confidence": answer["confidence"],
            "sources": [
                {
                    "number": s["number"],
                    "document_id": s["document_id"],
                    "source_name": s["source_name"],
                    **_pages(s),
                    "location": s.get("location"),
                    "snippet": s["snippet"],
                    "quote": s.get("quote"),
                    "cited": s["cited"],
                    "score": s["score"],
                }
                for s in answer["sources"]
            ],
            "request_id": answer["request_id"],
        }

    @server.tool(description="Documents the key may read, newest id last, paginated.")
    async def list_documents(
        ctx: Context[Any, Any],
        collection: Annotated[str | None, Field(max_length=200)] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 50,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> dict[str, Any]:
        params = _present({"collection": collection, "limit": limit, "offset": offset})
        async with open_client(ctx) as client:
            page = await call(client, "GET", "/documents", params=params)
        return {
            "documents": [
                {
                    "document_id": d["id"],
                    "source_name": d["source_name"],
                    "collection": d["collection"],
                    "media_type": d["media_type"],
                    "pages": d["page_count"],
                    "chunks": d["chunk_count"],
                }
                for d in page["documents"]
            ],
            "next_offset": page["next_offset"],
        }

    @server.tool(
        description="Read one document: its chunks in order with pages and location, "
        "optionally only those on pages page_start to page_end, paginated by chunk."
    )
    async def read_document(
        document_id: Annotated[int, Field(ge=1, le=2**63 - 1)],
        ctx: Context[Any, Any],
        page_start: Annotated[int | None, Field(ge=1)] = None,
        page_end: Annotated[int | None, Field(ge=1)] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> dict[str, Any]:
        path = f"/documents/{document_id}/chunks"
        async with open_client(ctx) as client:
            if page_start is None and page_end is None:  # the API pages it
                page = await call(client, "GET", path, params={"limit": limit, "offset": offset})
                chunks, next_offset = page["chunks"], page["next_offset"]
            else:  # a page range: the chunks on those pages, paged here
                every = (await call(client, "GET", path))["chunks"]
                on_pages = [c for c in every if _on_pages(c, page_start, page_end)]
                chunks = on_pages[offset : offset + limit]
                next_offset = offset + limit if offset + limit < len(on_pages) else None
        return {
            "document_id": document_id,
            "chunks": [_chunk(c) for c in chunks],
            "next_offset": next_offset,
        }

    @server.tool(description="Collections the key may read, with document and chunk counts.")
    async def list_collections(ctx: Context[Any, Any]) -> list[dict[str, Any]]:
        async with open_client(ctx) as client:
            found = await call(client, "GET", "/collections")
        return list(found["collections"])

    @server.tool(
        description="Add a document (needs a write key): `text` with a `name` such as "
        "notes.md, or a file as `content_base64` with its file `name`. It is extracted, "
        "chunked and indexed as an upload is; the result says whether it is ready."
    )
    async def add_document(
        name: Annotated[str, Field(min_length=1, max_length=255, description="File name")],
        ctx: Context[Any, Any],
        text: Annotated[str | None, Field(max_length=MAX_TOOL_TEXT)] = None,
        content_base64: str | None = None,
        collection: Annotated[str | None, Field(max_length=200)] = None,
    ) -> dict[str, Any]:
        if (text is None) == (content_base64 is None):
            raise ToolError("give exactly one of text and content_base64")
        if text is not None:
            content = text.encode("utf-8", "surrogatepass")
        else:
            try:
                content = base64.b64decode(content_base64 or "", validate=True)
            except (binascii.Error, ValueError):
                raise ToolError("content_base64 is not valid base64") from None
        form = _present({"collection": collection})
        async with open_client(ctx) as client:
            jobs = await call(
                client,
                "POST",
                "/documents",
                params={"wait": "true"},
                files={"files": (name, content)},
                data=form,
            )
        job = jobs["jobs"][0]
        return {
            "job_id": job["id"],
            "state": job["state"],
            "document_id": job.get("document_id"),
            "outcome": job.get("outcome"),
            "error": job.get("error"),
            "warning": job.get("warning"),
        }

    @server.resource(
        "ragsvc://documents/{document_id}",
        name="document",
        description="A document's text, chunk by chunk, with page markers.",
        mime_type="text/plain",
    )
    async def document_text(document_id: str, ctx: Context[Any, Any]) -> str:
        if not document_id.isdigit():
            raise ResourceError(f"{document_id!r} is not a document id")
        async with open_client(ctx) as client:
            try:
                chunks = await call(client, "GET", f"/documents/{int(document_id)}/chunks")
            except ToolError as error:
                raise ResourceError(str(error)) from None
        return "\n\n".join(
            (f"[p. {c['page_start']}] " if c.get("page_start") else "") + c["text"]
            for c in chunks["chunks"]
        )

    return server


def _on_pages(chunk: dict[str, Any], first: int | None, last: int | None) -> bool:
    start = chunk["page_start"] or 0
    end = chunk["page_end"] or start
    return (first is None or end >= first) and (last is None or start <= last)


def _chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    return {
        "ordinal": chunk["ordinal"],
        **_pages(chunk),
        "location": chunk.get("location"),
        "text": chunk["text"],
    }


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
