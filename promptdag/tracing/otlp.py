"""OTLP/HTTP export of committed traces, named by the OpenTelemetry GenAI semantic conventions:
one span per request, a child `chat {model}` span per LLM call, with the start and end times
recorded in the rows (a call's end is when its node finished; a fan-out's calls end by then).

Prompt and response text goes into spans only with `capture_content=True` (the conventions make
it opt-in) and never when the store redacts (the rows then carry hashes only). Spans use their
own TracerProvider, not the global one, and `shutdown()` flushes the batch queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["OtlpExporter", "traces_url"]

_PROVIDERS = {"openai": "openai", "offline": "promptdag.offline"}


def traces_url(endpoint: str) -> str:
    """`http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is kept as is."""
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes cannot be None."""
    return {k: v for k, v in attributes.items() if v is not None and v != ""}


def _request_attributes(request: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(
        {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.conversation.id": request.get("conversation_id"),
            "gen_ai.request.model": request.get("model"),
            "gen_ai.usage.input_tokens": request.get("input_tokens"),
            "gen_ai.usage.output_tokens": request.get("output_tokens"),
            "error.type": request.get("error_type"),
            "promptdag.request_id": request["request_id"],
            "promptdag.source": request.get("source"),
            "promptdag.variant": request.get("variant"),
            "promptdag.assignment": request.get("assignment"),
            "promptdag.dataflow": request.get("dataflow"),
            "promptdag.prompts": request.get("prompt_set"),
            "promptdag.git.sha": request.get("git_sha"),
            "promptdag.git.dirty": request.get("git_dirty"),
            "promptdag.fingerprint": request.get("fingerprint_id"),
            "promptdag.cost_usd": request.get("cost_usd"),
            "promptdag.calls": request.get("calls"),
        }
    )


def _call_attributes(
    request: Mapping[str, Any], call: Mapping[str, Any], capture_content: bool
) -> dict[str, Any]:
    provider = _PROVIDERS.get(request.get("backend") or "", request.get("backend"))
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": request.get("model") or call.get("model"),
        "gen_ai.response.model": call.get("model"),
        "gen_ai.response.finish_reasons": [call["finish_reason"]]
        if call.get("finish_reason")
        else None,
        "gen_ai.usage.input_tokens": call.get("input_tokens"),
        "gen_ai.usage.output_tokens": call.get("output_tokens"),
        "gen_ai.conversation.id": request.get("conversation_id"),
        "promptdag.request_id": request["request_id"],
        "promptdag.variant": request.get("variant"),
        "promptdag.git.sha": request.get("git_sha"),
        "promptdag.node": call.get("node"),
        "promptdag.chunk_index": call.get("chunk_index"),
        "promptdag.prompt.node": call.get("prompt_node"),
        "promptdag.prompt.version": call.get("prompt_version"),
        "promptdag.prompt.source_sha256": call.get("prompt_source_sha256"),
        "promptdag.prompt.sha256": call.get("prompt_sha256"),
        "promptdag.response.sha256": call.get("response_sha256"),
        "promptdag.cost_usd": call.get("cost_usd"),
        "promptdag.cached": bool(call.get("cached")),
        "promptdag.retries": call.get("retries"),
    }
    if capture_content and not call.get("redacted"):
        attributes.update(_messages(call))
    return _clean(attributes)


def _messages(call: Mapping[str, Any]) -> dict[str, str | None]:
    def text(role: str, content: str, **extra: Any) -> str:
        return json.dumps(
            [{"role": role, "parts": [{"type": "text", "content": content}], **extra}]
        )

    prompt, response = call.get("prompt_text"), call.get("response_text")
    return {
        "gen_ai.input.messages": None if prompt is None else text("user", prompt),
        "gen_ai.output.messages": None
        if response is None
        else text("assistant", response, finish_reason=call.get("finish_reason") or ""),
    }


class OtlpExporter:
    """Turns committed request and call rows into spans, batched to an OTLP/HTTP collector.

    `endpoint` is the collector (`http://host:4318`, `/v1/traces` is added) or the full traces
    URL; `span_exporter` replaces the OTLP one (tests pass an InMemorySpanExporter).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        service_name: str = "promptdag",
        *,
        capture_content: bool = False,
        span_exporter: SpanExporter | None = None,
    ):
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(endpoint=traces_url(endpoint) if endpoint else None)
        self.capture_content = capture_content
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(span_exporter))
        self.tracer = self.provider.get_tracer("promptdag.tracing")
        self._closed = False

    def export(self, request: Mapping[str, Any], calls: Sequence[Mapping[str, Any]]) -> None:
        """One request's spans (called by the TraceWriter after the rows are committed)."""
        if self._closed:
            return
        root = self.tracer.start_span(
            f"promptdag {request.get('dataflow') or 'run'}",
            kind=SpanKind.INTERNAL,
            attributes=_request_attributes(request),
            start_time=_ns(request["started_ts"]),
        )
        if request.get("status") == "error":
            root.set_status(Status(StatusCode.ERROR, f"{request.get('error_type')}"))
        parent = trace.set_span_in_context(root)
        for call in calls:
            end = _ns(call.get("finished_ts") or request["finished_ts"])
            span = self.tracer.start_span(
                f"chat {call.get('model')}",
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=_call_attributes(request, call, self.capture_content),
                start_time=end - _ns(call.get("latency_s") or 0.0),
            )
            span.end(end_time=end)
        root.end(end_time=_ns(request["finished_ts"]))

    def force_flush(self, timeout_ms: int = 30_000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush the queued spans and stop. Idempotent."""
        if not self._closed:
            self._closed = True
            self.provider.shutdown()
