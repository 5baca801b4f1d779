"""OTLP export: a span per request and a child `chat` span per LLM call, with GenAI semantic
convention attributes and the rows' own times; no prompt or response text unless asked, and
never under redaction. No network: the SDK's in-memory exporter stands in for the collector."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from promptdag.tracing.otlp import OtlpExporter, traces_url
from promptdag.tracing.store import TraceWriter
from tests.promptdag.tracing.rows import call_row, request_row

PROMPT = "Summarize: the professor sent a cat over the wire."
RESPONSE = "A cat travelled by telegraph."


def export_through_writer(
    tmp_path: Path, *, redact: bool = False, capture_content: bool = False, **request: object
) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    exporter = OtlpExporter(capture_content=capture_content, span_exporter=memory)
    writer = TraceWriter(tmp_path / "traces.sqlite", redact=redact, exporter=exporter).start()
    calls = [
        call_row(chunk_index=0, prompt_text=PROMPT, response_text=RESPONSE, attempts=2),
        call_row(step="final_summary", chunk_index=None, prompt_node="final_summary_prompt"),
    ]
    asyncio.run(writer.submit(request_row("req-1", conversation_id="conv-3", **request), calls))
    writer.close()
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    return memory


def test_a_request_span_with_a_chat_span_per_call(tmp_path: Path) -> None:
    row = request_row("req-1")
    spans = export_through_writer(
        tmp_path, started_ts=row["started_ts"], finished_ts=row["finished_ts"]
    ).get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    children = [s for s in spans if s.parent is not None]
    assert len(spans) == 3 and len(children) == 2
    assert all(c.parent is not None and c.parent.span_id == root.context.span_id for c in children)
    assert all(c.context.trace_id == root.context.trace_id for c in children)
    assert root.start_time == int(row["started_ts"] * 1e9)
    assert root.end_time == int(row["finished_ts"] * 1e9)
    assert root.attributes is not None and root.attributes["promptdag.request_id"] == "req-1"
    assert root.attributes["promptdag.variant"] == "baseline"
    assert root.resource.attributes["service.name"] == "promptdag"

    chat = children[0]
    assert chat.name == "chat offline-extractive" and chat.kind == SpanKind.CLIENT
    assert chat.end_time is not None and chat.start_time is not None
    assert chat.end_time - chat.start_time == int(0.5 * 1e9)
    attrs = dict(chat.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "promptdag.offline"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "offline-extractive"
    assert attrs["gen_ai.usage.input_tokens"] == 100 and attrs["gen_ai.usage.output_tokens"] == 20
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.conversation.id"] == "conv-3"
    assert attrs["promptdag.prompt.node"] == "chunk_summary_prompt"
    assert attrs["promptdag.prompt.version"] == "v2"
    assert attrs["promptdag.prompt.source_sha256"] == "b" * 64
    assert attrs["promptdag.git.sha"] == "a" * 40 and attrs["promptdag.request_id"] == "req-1"
    assert attrs["promptdag.retries"] == 1
    assert "gen_ai.input.messages" not in attrs  # content capture is opt-in


def test_content_is_captured_only_when_asked(tmp_path: Path) -> None:
    spans = export_through_writer(tmp_path, capture_content=True).get_finished_spans()
    attrs = dict(next(s for s in spans if s.name.startswith("chat")).attributes or {})
    assert PROMPT in str(attrs["gen_ai.input.messages"])
    assert RESPONSE in str(attrs["gen_ai.output.messages"])


def test_redaction_keeps_text_out_of_spans(tmp_path: Path) -> None:
    spans = export_through_writer(tmp_path, redact=True, capture_content=True).get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert PROMPT not in values and RESPONSE not in values
        assert "gen_ai.input.messages" not in (span.attributes or {})


def test_a_failed_request_span_has_error_status(tmp_path: Path) -> None:
    spans = export_through_writer(
        tmp_path, status="error", error_type="InputError", error_message="no text"
    ).get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    assert root.status.status_code == StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "InputError"


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/custom/path", "https://otel.example/custom/path"),
    ],
)
def test_the_collector_url_gets_the_traces_path(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_the_otlp_http_exporter_builds_without_network() -> None:
    exporter = OtlpExporter("http://127.0.0.1:9")
    exporter.shutdown()
