"""Prometheus metrics of the service, by variant: requests, errors, latency, tokens and cost."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300)


class ServiceMetrics:
    """One registry per app, so two apps in one process (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "promptdag_requests",
            "Summary requests by variant and outcome.",
            ["variant", "status"],
            registry=r,
        )
        self.errors = Counter(
            "promptdag_errors",
            "Failed summary requests by variant and error type.",
            ["variant", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "promptdag_request_seconds",
            "Summary request latency.",
            ["variant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "promptdag_llm_tokens",
            "LLM tokens by variant and direction.",
            ["variant", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "promptdag_llm_cost_usd", "Estimated LLM cost in USD.", ["variant"], registry=r
        )
        self.in_flight = Gauge(
            "promptdag_in_flight", "Summary requests being processed.", registry=r
        )
        self.rejected = Counter(
            "promptdag_rejected",
            "Requests refused before running (auth, overload, size).",
            ["reason"],
            registry=r,
        )

    def observe_ok(self, variant: str, seconds: float, usage: dict[str, Any]) -> None:
        self.requests.labels(variant, "ok").inc()
        self.latency.labels(variant).observe(seconds)
        self.tokens.labels(variant, "input").inc(usage.get("input_tokens") or 0)
        self.tokens.labels(variant, "output").inc(usage.get("output_tokens") or 0)
        if usage.get("cost_usd") is not None:
            self.cost.labels(variant).inc(usage["cost_usd"])

    def observe_error(self, variant: str, seconds: float, error: str) -> None:
        self.requests.labels(variant, "error").inc()
        self.errors.labels(variant, error).inc()
        self.latency.labels(variant).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
