"""What oversized uploads cost the server: a 2 GB upload, then six parallel 150 MB ones.

    python benchmarks/bench_uploads.py [--big-mb 2048] [--parallel 6] [--each-mb 150]

A fresh data folder and a real `ragsvc serve` (default limits: 50 MB a file, 200 MB a
request). The 2 GB upload is streamed without a length (chunked), so the server cannot refuse
it by its header and has to count; the 150 MB ones carry their length and fit the request
limit, so they are read (the multipart parser spools files to disk) and refused by the
per-file limit. For each, the answer and the server's resident memory: before, peak
(sampled every 20 ms) and after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragsvc.api.server_process import ServerProcess  # noqa: E402

MB = 1_000_000


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss(pid)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))


def multipart(name: str, size: int, boundary: str = "ragsvc-bench") -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    block = b"x" * (1 << 20)
    for _ in range(size // len(block)):
        yield block
    yield b"x" * (size % len(block))
    yield f"\r\n--{boundary}--\r\n".encode()


def upload(url: str, size: int, *, chunked: bool) -> int:
    headers = {"Content-Type": "multipart/form-data; boundary=ragsvc-bench"}
    body: Iterator[bytes] | bytes = multipart("big.txt", size)
    if not chunked:
        body = b"".join(multipart("big.txt", size))
    try:
        response = httpx.post(f"{url}/documents", content=body, headers=headers, timeout=600)
    except httpx.HTTPError:  # the connection closed before an answer
        return -1
    return response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--each-mb", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as scratch:
        server = ServerProcess(Path(scratch) / "data", Path(scratch) / "server.log", cwd=ROOT)
        server.start()
        assert server.process is not None
        pid = server.process.pid
        rows = []
        try:
            big = [args.big_mb * MB]
            each = [args.each_mb * MB] * args.parallel
            cases = [
                (f"1 x {args.big_mb} MB, chunked", big, True),
                (f"{args.parallel} x {args.each_mb} MB, parallel", each, False),
            ]
            for label, sizes, chunked in cases:
                time.sleep(1.0)
                before = rss(pid)
                sampler = Sampler(pid)
                sampler.start()
                statuses: list[int] = []

                def send(size: int, chunked: bool, statuses: list[int] = statuses) -> None:
                    statuses.append(upload(server.url, size, chunked=chunked))

                threads = [threading.Thread(target=send, args=(size, chunked)) for size in sizes]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                seconds = time.perf_counter() - started
                time.sleep(1.0)
                sampler.stop.set()
                sampler.join()
                after = rss(pid)
                documents = httpx.get(f"{server.url}/ready", timeout=30).json()["documents"]
                rows.append(
                    [label, ",".join(map(str, sorted(set(statuses)))), f"{seconds:.1f}",
                     f"{before / MB:.0f}", f"{(sampler.peak - before) / MB:+.0f}",
                     f"{(after - before) / MB:+.0f}", str(documents)]
                )  # fmt: skip
        finally:
            server.stop()
    headers = ["upload", "status", "seconds", "RSS before MB", "peak growth MB", "after MB", "docs"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
