"""Runs refused by the input checks before their graph starts: a library run with a trace
adapter attached is traced (a request row with the error, its HTTP status and the build, no
calls); a caller that traces its own refusals (the service) gets no second row."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from promptdag.errors import InputError
from promptdag.factory import build_pipeline
from promptdag.tracing.adapter import TraceAdapter
from promptdag.tracing.context import RequestContext, request_scope
from promptdag.tracing.store import TraceWriter

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(REPO)


def _rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def _refused_run(db: Path, inputs: dict[str, Any], ctx: RequestContext | None = None) -> str:
    """Run the summarizer on `inputs` (refused by the checks); the InputError's message."""
    writer = TraceWriter(db).start()

    async def go() -> str:
        pipeline = build_pipeline(adapters=[TraceAdapter(writer)])
        try:
            with pytest.raises(InputError) as info:
                if ctx is None:
                    await pipeline.run(inputs)
                else:
                    with request_scope(ctx):
                        await pipeline.run(inputs)
            return str(info.value)
        finally:
            await pipeline.aclose()

    try:
        return asyncio.run(go())
    finally:
        writer.close()


def test_a_library_run_refused_by_the_input_checks_is_traced(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    message = _refused_run(db, {"text": "a document", "no_such_input": 1})
    [req] = _rows(db, "SELECT * FROM requests")
    assert (req["source"], req["status"], req["http_status"]) == ("library", "error", 422)
    assert req["error_type"] == "ForbiddenInputError"
    assert req["error_message"] == message and "no_such_input" in message
    assert (req["calls"], req["input_tokens"], req["cost_usd"]) == (0, 0, 0.0)
    assert req["variant"] == "baseline" and req["pipeline"] == "summarize"
    assert req["fingerprint_id"] is None and req["graph_version"]
    assert set(json.loads(req["prompt_versions"])) == {
        "chunk_summary_prompt",
        "final_summary_prompt",
    }
    assert req["started_ts"] <= req["finished_ts"] and req["latency_s"] >= 0
    assert _rows(db, "SELECT * FROM llm_calls") == []


def test_a_refusal_in_a_request_context_keeps_its_request_id_and_key_id(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    ctx = RequestContext("req-refused", "baseline", "sticky", key_id="k1", source="batch")
    _refused_run(db, {}, ctx)  # neither text nor a PDF
    [req] = _rows(db, "SELECT * FROM requests")
    assert (req["request_id"], req["key_id"], req["source"]) == ("req-refused", "k1", "batch")
    assert req["http_status"] == 422


def test_a_caller_that_traces_its_own_refusals_gets_no_row_from_the_pipeline(
    tmp_path: Path,
) -> None:
    db = tmp_path / "traces.sqlite"
    ctx = RequestContext("req-svc", "baseline", "sticky", caller_traces_refusals=True)
    _refused_run(db, {"text": "a document", "no_such_input": 1}, ctx)
    assert _rows(db, "SELECT * FROM requests") == []
