"""A lean HTTP/1.1 load generator for the benchmarks: asyncio, keep-alive, JSON bodies.

The benchmarks run the client on the same two cores as the server, so the client must cost
little: each connection writes a prepared request and parses only the status line, headers
and `Content-Length` body. Latency is measured per request, from write to last byte.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        return await self._round_trip(head + payload)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self._round_trip(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        )

    async def _round_trip(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self._reader.readexactly(length) if length else b""
        return status, body


async def run_load(
    host: str,
    port: int,
    path: str,
    make_body: Callable[[int], Any],
    *,
    clients: int,
    seconds: float,
) -> LoadResult:
    """`clients` connections posting `make_body(n)` (n counts requests) back to back."""
    result = LoadResult()
    counter = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal counter
        connection = Connection(host, port)
        await connection.open()
        try:
            while time.perf_counter() < deadline:
                number = counter
                counter += 1
                sent = time.perf_counter()
                try:
                    status, body = await connection.post_json(path, make_body(number))
                except (ConnectionError, asyncio.IncompleteReadError) as error:
                    result.errors.append(repr(error))
                    await connection.close()
                    connection = Connection(host, port)
                    await connection.open()
                    continue
                if status != 200:
                    result.errors.append(f"{status}: {body[:200]!r}")
                    continue
                result.latencies.append(time.perf_counter() - sent)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
