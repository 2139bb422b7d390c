"""The MCP server through the official `mcp` client: over streamable HTTP against a real
server process, and over stdio against `ragsvc mcp` started as the docs print it. The six tools
with their schemas, cited answers, scopes, tenants kept apart through every tool, and bad
input that leaves the session, the server and the store as they were."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from ragsvc.security.keys import KeyStore
from tests.support.data import NAACL, QUESTION, ROOT, dataset
from tests.support.processes import Server

pytestmark = pytest.mark.slow

TOOLS = {"search", "ask", "list_documents", "read_document", "list_collections", "add_document"}
SECRET_B = "The vault code of team B is 4471; it is kept in the cellar behind the wine racks."


class Deployment:
    """A server with two tenants: A (collection a, the sample PDF), B (collection b)."""

    def __init__(self, server: Server, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys
        self.pdf_document = 0


@asynccontextmanager
async def session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as opened,
    ):
        await opened.initialize()
        yield opened


def result(called: Any) -> Any:
    assert not called.is_error, called.content
    structured = called.structured_content
    return structured["result"] if set(structured) == {"result"} else structured


def error_text(called: Any) -> str:
    assert called.is_error, called
    return str(called.content[0].text)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    pdf = dataset(*NAACL)
    root = tmp_path_factory.mktemp("mcp")
    data = root / "data"
    keys = KeyStore.open(data)
    try:
        secrets = {
            "a": keys.create("team a", "write", ["a"]),
            "b": keys.create("team b", "write", ["b"]),
            "reader_a": keys.create("a dashboard", "read", ["a"]),
        }
    finally:
        keys.close()
    server = Server(data, root / "server.log").start()
    try:
        deployed = Deployment(server, secrets)

        async def populate() -> None:
            async with session(server.url, secrets["a"]) as a:
                added = result(
                    await a.call_tool(
                        "add_document",
                        {
                            "name": pdf.name,
                            "content_base64": base64.b64encode(pdf.read_bytes()).decode(),
                            "collection": "a",
                        },
                    )
                )
                assert added["state"] == "ready", added
                deployed.pdf_document = added["document_id"]
            async with session(server.url, secrets["b"]) as b:
                added = result(
                    await b.call_tool(
                        "add_document", {"name": "vault.txt", "text": SECRET_B, "collection": "b"}
                    )
                )
                assert added["state"] == "ready", added

        anyio.run(populate)
        yield deployed
    finally:
        server.stop()


def test_tools_search_and_cited_answers_over_http(deployment: Deployment) -> None:
    async def check() -> None:
        async with session(deployment.server.url, deployment.keys["a"]) as a:
            tools = {tool.name: tool for tool in (await a.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.description and tool.input_schema["type"] == "object"
            assert tools["search"].input_schema["properties"]["k"]["maximum"] == 100
            hits = result(await a.call_tool("search", {"query": QUESTION, "k": 3}))
            assert hits and hits[0]["document_id"] == deployment.pdf_document
            assert hits[0]["page_start"] is not None and hits[0]["snippet"]
            answer = result(await a.call_tool("ask", {"question": QUESTION}))
            assert answer["answerable"] is True and 0 < answer["confidence"] <= 1
            cited = [s for s in answer["sources"] if s["cited"]]
            assert cited and cited[0]["page_start"] is not None and cited[0]["quote"]
            listed = result(await a.call_tool("list_documents", {}))
            assert [d["document_id"] for d in listed["documents"]] == [deployment.pdf_document]
            page = result(
                await a.call_tool(
                    "read_document",
                    {"document_id": deployment.pdf_document, "page_start": 2, "page_end": 2},
                )
            )
            assert page["chunks"] and all(c["page_start"] <= 2 for c in page["chunks"])
            first = result(
                await a.call_tool(
                    "read_document", {"document_id": deployment.pdf_document, "limit": 2}
                )
            )
            assert [c["ordinal"] for c in first["chunks"]] == [0, 1]
            assert first["next_offset"] == 2
            text = await a.read_resource(f"ragsvc://documents/{deployment.pdf_document}")
            assert "HMM-based" in re.sub(r"\s+", " ", text.contents[0].text)

    anyio.run(check)


def test_a_read_key_cannot_add_a_document(deployment: Deployment) -> None:
    async def check() -> None:
        async with session(deployment.server.url, deployment.keys["reader_a"]) as reader:
            refused = await reader.call_tool("add_document", {"name": "x.txt", "text": "x"})
            message = error_text(refused)
            assert "403" in message and "scope is read" in message and "write" in message
            assert result(await reader.call_tool("list_collections", {}))  # still usable

    anyio.run(check)


def test_tenant_b_sees_nothing_of_tenant_a_through_any_tool(deployment: Deployment) -> None:
    """The HTTP routes' isolation, tool by tool: what B's key gets when it reaches for A's
    collection or document."""
    a_doc = deployment.pdf_document
    reaching_for_a: dict[str, dict[str, Any]] = {
        "search": {"query": QUESTION, "collection": "a"},
        "ask": {"question": QUESTION, "collection": "a"},
        "list_documents": {"collection": "a"},
        "read_document": {"document_id": a_doc},
        "add_document": {"name": "x.txt", "text": "planted", "collection": "a"},
    }
    assert set(reaching_for_a) | {"list_collections"} == TOOLS

    async def check() -> None:
        async with session(deployment.server.url, deployment.keys["b"]) as b:
            for tool, arguments in reaching_for_a.items():
                message = error_text(await b.call_tool(tool, arguments))
                assert re.match(r"(403|404): ", message.split("tool " + tool + ": ")[-1]), message
            # Without naming a collection: only B's own.
            hits = result(await b.call_tool("search", {"query": QUESTION, "k": 10}))
            assert hits and {h["collection"] for h in hits} == {"b"}
            answer = result(await b.call_tool("ask", {"question": QUESTION}))
            assert all(s["document_id"] != a_doc for s in answer["sources"])
            listed = result(await b.call_tool("list_documents", {}))
            assert {d["collection"] for d in listed["documents"]} == {"b"}
            assert [c["name"] for c in result(await b.call_tool("list_collections", {}))] == ["b"]
            with pytest.raises(Exception, match="404"):
                await b.read_resource(f"ragsvc://documents/{a_doc}")

    anyio.run(check)


def test_bad_input_leaves_the_session_the_server_and_the_store_as_they_were(
    deployment: Deployment,
) -> None:
    url, key = deployment.server.url, deployment.keys["a"]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        before = http.get("/documents").json()["documents"]

    async def check() -> None:
        async with session(url, key) as a:
            bad: list[tuple[str, dict[str, Any], str]] = [
                ("no_such_tool", {}, "no_such_tool"),
                ("search", {"query": "x", "k": "five"}, "k"),
                ("search", {"query": "x", "k": 0}, "greater than or equal to 1"),
                ("search", {"query": "x" * 10_000_000}, "at most 4000 characters"),
                ("read_document", {"document_id": "seven"}, "document_id"),
                ("add_document", {"name": "x.txt"}, "exactly one of text and content_base64"),
                ("add_document", {"name": "x.bin", "content_base64": "!!"}, "not valid base64"),
            ]
            for tool, arguments, expected in bad:
                assert expected in error_text(await a.call_tool(tool, arguments)), tool
            assert result(await a.call_tool("list_collections", {}))  # the session goes on

    anyio.run(check)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        malformed = http.post(
            "/mcp",
            content=b'{"jsonrpc": "2.0", "id": 1, "method": ',
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        assert 400 <= malformed.status_code < 500
        assert malformed.json()["error"]["code"] == -32700  # parse error, said in JSON-RPC
        assert http.get("/health").status_code == 200
        assert http.get("/documents").json()["documents"] == before  # nothing stored


def _claude_desktop_config() -> dict[str, Any]:
    text = (ROOT / "docs" / "agents.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- claude-desktop-config -->\n```json\n(.*?)```", text, re.S)
    assert match, "docs/agents.md has no Claude Desktop snippet"
    config: dict[str, Any] = json.loads(match.group(1))
    return config["mcpServers"]["ragsvc"]


def test_the_docs_claude_desktop_snippet_starts_the_stdio_server(tmp_path: Path) -> None:
    """The command line exactly as the docs print it; only the data folder, a placeholder
    there, is this test's own."""
    entry = _claude_desktop_config()
    assert set(entry["env"]) == {"RAGSVC_DATA_DIR"}
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAGSVC_DATA_DIR": str(tmp_path / "data"),
    }
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], env=environment, cwd=tmp_path
    )

    async def check() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as opened:
            await opened.initialize()
            assert {tool.name for tool in (await opened.list_tools()).tools} == TOOLS
            added = result(
                await opened.call_tool(
                    "add_document", {"name": "vault.txt", "text": SECRET_B, "collection": "b"}
                )
            )
            assert added["state"] == "ready", added
            answer = result(await opened.call_tool("ask", {"question": "What is the vault code?"}))
            assert answer["answerable"] and "4471" in answer["answer"]
            assert any(s["cited"] for s in answer["sources"])
            message = error_text(await opened.call_tool("read_document", {"document_id": 99}))
            assert "404" in message

    anyio.run(check)


def test_stdio_against_a_running_server_uses_the_key(deployment: Deployment) -> None:
    """`ragsvc mcp --url` with B's key in `$RAGSVC_API_KEY`: the tools are the server's, seen
    through B's key."""
    environment = {**os.environ, "RAGSVC_API_KEY": deployment.keys["b"]}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ragsvc", "mcp", "--url", deployment.server.url],
        env=environment,
    )

    async def check() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as opened:
            await opened.initialize()
            assert [c["name"] for c in result(await opened.call_tool("list_collections", {}))] == [
                "b"
            ]
            answer = result(await opened.call_tool("ask", {"question": "What is the vault code?"}))
            assert "4471" in answer["answer"]

    anyio.run(check)
