"""Wiring tracing into the service: the SQLite trace writer (and OTLP export when asked), and
the Hamilton adapter that feeds it, started at startup and flushed at shutdown; and the health
of the trace store, which /readyz reports: unready from a failed write until a write succeeds,
or `hold_s` without another failure (then traffic may come back and test it again)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hamilton.lifecycle.base import BasePostGraphExecute

from promptdag.service.audit import current_audit
from promptdag.service.settings import ServiceSettings

__all__ = ["RunTraced", "ServiceTracing", "TraceHealth", "start_tracing"]

log = logging.getLogger("promptdag.service")


@dataclass
class TraceHealth:
    """Whether the trace store is writing. A failure is logged in full (path and cause) once
    per outage; clients only ever learn that traces cannot be recorded."""

    hold_s: float = 10.0
    failed_at: float | None = None  # time.monotonic() of the latest failure of this outage
    failures: int = 0
    reason: str = ""

    def failed(self, error: BaseException) -> None:
        if self.failed_at is None:
            log.error("the trace store cannot write; /readyz reports unready: %s", error)
        self.failed_at, self.reason = time.monotonic(), type(error).__name__
        self.failures += 1

    def ok(self) -> None:
        if self.failed_at is not None:
            log.warning("the trace store writes again after %d failed write(s)", self.failures)
            self.failed_at, self.failures = None, 0

    def problem(self) -> str | None:
        """Why the store is not healthy, for /readyz (no path, no cause text), or None."""
        if self.failed_at is None:
            return None
        ago = time.monotonic() - self.failed_at
        if ago >= self.hold_s:
            return None
        return (
            f"the trace store could not write {ago:.0f} s ago ({self.failures} failed "
            f"write(s), {self.reason}); runs cannot be answered until it writes again. The "
            "server log says why."
        )


class RunTraced(BasePostGraphExecute):
    """Marks the request's Audit as traced when a run ends: the trace adapter's own
    post_graph_execute (async) is called right after this one (sync hooks first) and writes the
    run's row, so the service must not write another. Sync: no task per run."""

    def post_graph_execute(self, **kwargs: Any) -> None:
        audit = current_audit()
        if audit is not None:
            audit.traced = True


@dataclass
class ServiceTracing:
    writer: Any
    adapter: Any
    exporter: Any = None
    health: TraceHealth = field(default_factory=TraceHealth)

    @property
    def adapters(self) -> list[Any]:
        """The lifecycle adapters every served pipeline gets, in this order."""
        return [self.adapter, RunTraced()]

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
