"""Traces, when wanted: a span per request with a child per stage (OpenTelemetry, optional).

Off by default (setting `tracing`). On, spans go to an OTLP exporter configured by the
standard `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...), which
needs `pip install 'ragsvc[otel]'`; tests hand `create_app` their own tracer provider (an
in-memory exporter). A `/query` makes this tree:

    POST /query
    ├── embed            the question's vector
    ├── dense            FAISS search
    ├── lexical          BM25
    ├── fuse             fusion and the hits' rows
    └── answer           the backend
        └── llm          each call to an LLM server (generative backends)

Without OpenTelemetry, or with tracing off, every span is a no-op costing one function call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

logger = logging.getLogger(__name__)


class Tracer:
    """Spans of one app; `span(name)` is a no-op unless a tracer provider is set."""

    def __init__(self, provider: Any = None) -> None:
        self._tracer = None if provider is None else provider.get_tracer("ragsvc")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]:
        if self._tracer is None:
            return nullcontext()
        return self._span(name, attributes)

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def stage(self, name: str) -> AbstractContextManager[Any]:
        """A child span for a stage of retrieval (the `indexes.reader.StageTimer` hook)."""
        return self.span(name)


def otlp_provider() -> Any:
    """A tracer provider exporting over OTLP, configured by the `OTEL_*` variables."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise RuntimeError(
            f"tracing is on but OpenTelemetry is not installed (pip install 'ragsvc[otel]'): "
            f"{error}"
        ) from None
    resource = Resource.create({"service.name": "ragsvc"}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
