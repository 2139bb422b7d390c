"""Prometheus metrics of one service: `Metrics`, scraped at `GET /metrics`.

Each app has its own registry (two apps in one process never share counters). What happens
in a request is counted as it happens (the request middleware); what the service *is* (jobs
by state, index size, caches, breakers) is read at scrape time from the parts that know it,
so nothing has to be kept in step. The ingestion worker is another process: it writes its
embedding counts to `worker-metrics.json` in the data directory after every batch
(`EmbeddingStats`), and the server reads that file at scrape time.

    ragsvc_http_requests_total{route, method, status}          counter
    ragsvc_http_request_seconds{route, method, status}         histogram
    ragsvc_jobs{state}, ragsvc_job_queue_depth                 gauges
    ragsvc_chunks_embedded_total, ragsvc_embedding_batch_seconds   the worker's
    ragsvc_index_vectors, ragsvc_index_lexical_entries, ragsvc_documents   gauges
    ragsvc_llm_calls_total{backend}, ragsvc_llm_errors_total{backend}, ragsvc_llm_breaker_state
    ragsvc_query_embedding_cache_{hits,misses}_total, ragsvc_answer_cache_{hits,misses}_total
"""

from __future__ import annotations

import json
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WORKER_METRICS = "worker-metrics.json"
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class EmbeddingStats:
    """Chunks embedded and batch latencies, saved as JSON for the server to read."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.chunks = 0
        self.batches = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BATCH_BUCKETS) + 1)
        self._lock = threading.Lock()

    def record(self, chunks: int, seconds: float) -> None:
        with self._lock:
            self.chunks += chunks
            self.batches += 1
            self.seconds += seconds
            self.buckets[bisect_left(BATCH_BUCKETS, seconds)] += 1
            snapshot = self.snapshot()
        if self.path is not None:
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(snapshot), encoding="utf-8")
            os.replace(temporary, self.path)

    def snapshot(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "batches": self.batches,
            "seconds": self.seconds,
            "buckets": list(self.buckets),
            "pid": os.getpid(),
            "updated": time.time(),
        }

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "method", "status")
        self.requests = Counter(
            "ragsvc_http_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "ragsvc_http_request_seconds",
            "Time to answer an HTTP request (to the end of its body)",
            labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def watch(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Add metrics read at scrape time from `read`."""
        self.registry.register(_Reader(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Reader(Collector):
    def __init__(self, read: Callable[[], Iterator[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        return self._read()

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to check at registration


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: dict[str, float],
) -> Metric:
    family = kind(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def labelled_gauge(name: str, documentation: str, label: str, values: dict[str, float]) -> Metric:
    return _labelled(GaugeMetricFamily, name, documentation, label, values)


def labelled_counter(name: str, documentation: str, label: str, values: dict[str, float]) -> Metric:
    return _labelled(CounterMetricFamily, name, documentation, label, values)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def embedding_metrics(stats: dict[str, Any] | None) -> Iterator[Metric]:
    """The worker's embedding counters, from its snapshot (zeros before its first batch)."""
    stats = stats or {"chunks": 0, "batches": 0, "seconds": 0.0, "buckets": []}
    yield counter(
        "ragsvc_chunks_embedded", "Chunks embedded by the ingestion worker", stats["chunks"]
    )
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    counts = list(stats["buckets"]) + [0] * (len(BATCH_BUCKETS) + 1 - len(stats["buckets"]))
    for bound, count in zip((*BATCH_BUCKETS, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    yield HistogramMetricFamily(
        "ragsvc_embedding_batch_seconds",
        "Time the ingestion worker took to embed one batch of chunks",
        buckets=buckets,
        sum_value=stats["seconds"],
    )
