"""Prometheus metrics of the service, by pipeline and variant: requests, errors, latency, tokens
and cost; requests refused before running (auth, limits, overload, size, invalid input) by
reason; and every response the service sent, by pipeline and HTTP status.

With `promptdag serve --workers N`, the master sets PROMETHEUS_MULTIPROC_DIR (a fresh private
directory) before any worker starts: prometheus_client then keeps each worker's values in files
there, `/metrics` on any worker reads them all (counters and histograms summed over the workers,
dead ones included; the in-flight gauge summed over the live ones), and the master marks a
worker dead when it exits."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MULTIPROC_ENV", "ServiceMetrics", "multiprocess_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory the workers' metrics are shared through, or None in a single process.
    prometheus_client reads the same variable once, when it is first imported."""
    return os.environ.get(MULTIPROC_ENV) or None


_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300)


class ServiceMetrics:
    """One registry per app, so two apps in one process (tests) never share counters. The
    `pipeline` label is empty on refusals that name no pipeline (auth on an ops endpoint).
    In a worker of `serve --workers N`, `render` reports every worker's values."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "promptdag_requests",
            "Pipeline runs by pipeline, variant and outcome.",
            ["pipeline", "variant", "status"],
            registry=r,
        )
        self.errors = Counter(
            "promptdag_errors",
            "Failed pipeline runs by pipeline, variant and error type.",
            ["pipeline", "variant", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "promptdag_request_seconds",
            "Pipeline run latency.",
            ["pipeline", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "promptdag_llm_tokens",
            "LLM tokens by pipeline, variant and direction.",
            ["pipeline", "variant", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "promptdag_llm_cost_usd",
            "Estimated LLM cost in USD.",
            ["pipeline", "variant"],
            registry=r,
        )
        self.in_flight = Gauge(
            "promptdag_in_flight",
            "Run requests being processed, by pipeline.",
            ["pipeline"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "promptdag_rejected",
            "Requests refused before running (auth, limits, overload, size, invalid input).",
            ["pipeline", "reason"],
            registry=r,
        )
        self.responses = Counter(
            "promptdag_responses",
            "Every response, by pipeline (empty for other paths) and HTTP status.",
            ["pipeline", "status"],
            registry=r,
        )

    def observe_ok(
        self, pipeline: str, variant: str, seconds: float, usage: dict[str, Any]
    ) -> None:
        self.requests.labels(pipeline, variant, "ok").inc()
        self.latency.labels(pipeline, variant).observe(seconds)
        self.tokens.labels(pipeline, variant, "input").inc(usage.get("input_tokens") or 0)
        self.tokens.labels(pipeline, variant, "output").inc(usage.get("output_tokens") or 0)
        if usage.get("cost_usd") is not None:
            self.cost.labels(pipeline, variant).inc(usage["cost_usd"])

    def observe_error(self, pipeline: str, variant: str, seconds: float, error: str) -> None:
        self.requests.labels(pipeline, variant, "error").inc()
        self.errors.labels(pipeline, variant, error).inc()
        self.latency.labels(pipeline, variant).observe(seconds)

    def reject(self, pipeline: str, reason: str) -> None:
        self.rejected.labels(pipeline, reason).inc()

    def respond(self, pipeline: str, status: int) -> None:
        self.responses.labels(pipeline, str(status)).inc()

    def render(self) -> bytes:
        shared = multiprocess_dir()
        if shared is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)
        return generate_latest(registry)
