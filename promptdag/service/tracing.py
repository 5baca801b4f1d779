"""Wiring tracing into the service: the SQLite trace writer (and OTLP export when asked), and
the Hamilton adapter that feeds it, started at startup and flushed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptdag.service.settings import ServiceSettings

__all__ = ["ServiceTracing", "start_tracing"]


@dataclass
class ServiceTracing:
    writer: Any
    adapter: Any
    exporter: Any = None

    def close(self) -> None:
        """Drain the queue and close the store (and flush OTLP): no trace lost on a graceful stop."""
        self.writer.close()
        if self.exporter is not None:
            self.exporter.shutdown()


def start_tracing(settings: ServiceSettings) -> ServiceTracing:
    from promptdag.tracing.adapter import TraceAdapter
    from promptdag.tracing.store import trace_writer

    exporter = None
    if settings.otlp_endpoint:
        from promptdag.tracing.otlp import OtlpExporter

        exporter = OtlpExporter(settings.otlp_endpoint)
    try:
        writer = trace_writer(
            settings.project,
            redact=settings.redact,
            retain_days=settings.retain_days,
            exporter=exporter,
        )
    except BaseException:
        if exporter is not None:
            exporter.shutdown()
        raise
    return ServiceTracing(writer=writer, adapter=TraceAdapter(writer), exporter=exporter)
