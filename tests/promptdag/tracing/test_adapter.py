"""The TraceAdapter on real pipelines: one request row with the build's provenance and one row
per LLM call, failures recorded with their error, no per-run state left behind, no key stored;
against a scripted model, a run that fails part-way keeps every attempted call and its cost,
incomplete and malformed answers are typed errors (or flagged, when allowed), on both example
projects, and credentials in the base URL never reach the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdag.errors import (
    InputError,
    LLMIncompleteError,
    LLMMalformedResponseError,
    LLMRequestError,
    LLMUnavailableError,
)
from promptdag.factory import build_pipeline
from promptdag.llm.client import LLMCall, run_scope
from promptdag.pipeline import Pipeline, RunResult
from promptdag.provenance import sha256_text
from promptdag.tracing.adapter import TraceAdapter
from promptdag.tracing.context import RequestContext, request_scope
from promptdag.tracing.store import TraceWriter
from tests.fakes.openai_server import HTML_PAGE, OpenAIServer
from tests.promptdag.test_pipeline import STORY

REPO = Path(__file__).resolve().parents[3]
SMALL_CHUNKS = {"chunk_tokens": 60, "chunk_overlap_tokens": 10}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(REPO)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "traces.sqlite"


@pytest.fixture
def writer(db: Path) -> Iterator[TraceWriter]:
    w = TraceWriter(db).start()
    yield w
    w.close()


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def context(pipeline: Pipeline, request_id: str = "req-1") -> RequestContext:
    return RequestContext(
        request_id=request_id,
        variant=pipeline.variant,
        assignment="sticky",
        subject_id="user-7",
        conversation_id="conv-3",
        build=pipeline.build_info(),
    )


def run(adapter: TraceAdapter, text: str, ctx: bool = True, **overrides: Any) -> RunResult:
    async def go() -> RunResult:
        pipeline = build_pipeline(overrides={**SMALL_CHUNKS, **overrides}, adapters=[adapter])
        try:
            if not ctx:
                return await pipeline.run({"text": text})
            with request_scope(context(pipeline)):
                return await pipeline.run({"text": text})
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


def test_a_request_and_each_llm_call_are_committed_with_their_provenance(
    writer: TraceWriter, db: Path
) -> None:
    adapter = TraceAdapter(writer)
    result = run(adapter, STORY)
    [req] = rows(db, "SELECT * FROM requests")
    fp, usage, chunks = result.fingerprint, result.usage, len(result.outputs["chunk_summaries"])
    records = [c.record() for c in result.llm_calls]
    assert req["request_id"] == "req-1" and req["source"] == "service"
    assert (req["variant"], req["assignment"], req["subject_id"], req["conversation_id"]) == (
        "baseline",
        "sticky",
        "user-7",
        "conv-3",
    )
    assert req["git_sha"] == fp["git"]["sha"] and req["git_dirty"] == int(fp["git"]["dirty"])
    assert req["fingerprint_id"] == fp["id"]
    assert (
        req["graph_version"] == fp["graph_version"] and req["config_sha256"] == fp["config_sha256"]
    )
    versions = json.loads(req["prompt_versions"])
    assert {n: v["version"] for n, v in versions.items()} == {
        "chunk_summary_prompt": "v2",
        "final_summary_prompt": "v1",
    }
    assert req["prompt_set"] == "chunk_summary_prompt@v2 final_summary_prompt@v1"
    assert req["status"] == "ok" and req["error_type"] is None
    assert req["calls"] == usage["calls"] == chunks + 1
    assert req["input_tokens"] == usage["input_tokens"]
    assert req["output_tokens"] == usage["output_tokens"]
    assert req["dataflow"] == "dataflows.chunking,dataflows.ingest,dataflows.summarize"
    assert req["model"] == "offline-extractive" and req["backend"] == "offline"
    assert req["started_ts"] < req["finished_ts"] and req["latency_s"] > 0

    calls = rows(db, "SELECT * FROM llm_calls ORDER BY call_index")
    assert [c["step"] for c in calls] == ["chunk_summary"] * chunks + ["final_summary"]
    assert [c["chunk_index"] for c in calls[:-1]] == list(range(chunks))
    declared = {"chunk_summary": "chunk_summary_prompt", "final_summary": "final_summary_prompt"}
    for call, record in zip(calls, records, strict=True):
        meta = versions[call["prompt_node"]]
        assert call["prompt_node"] == declared[call["step"]]  # the contract's link, not a name
        assert call["prompt_version"] == meta["version"]
        assert call["prompt_source_sha256"] == meta["source_sha256"]
        assert call["prompt_sha256"] == sha256_text(call["prompt_text"])
        assert call["response_sha256"] == sha256_text(call["response_text"])
        assert call["input_tokens"] == record["input_tokens"] > 0
        assert call["output_tokens"] == record["output_tokens"]
        assert call["cache_key"] == record["request_key"] and call["retries"] == 0
    assert (
        calls[0]["node"] == "chunk_summary_responses"
        and calls[0]["dataflow"] == "dataflows.summarize"
    )
    assert calls[-1]["prompt_text"] == result.prompts["final_summary_prompt"]
    assert calls[-1]["response_text"].strip() == result.answer
    assert adapter.runs == {}


def test_a_failed_run_is_recorded_with_its_error(writer: TraceWriter, db: Path) -> None:
    adapter = TraceAdapter(writer)
    with pytest.raises(InputError) as info:  # raised inside the DAG, by the document_tokens node
        run(adapter, STORY, max_document_tokens=5)
    [req] = rows(db, "SELECT * FROM requests")
    assert (req["request_id"], req["status"], req["error_type"]) == (
        "req-1",
        "error",
        "LimitExceededError",
    )
    assert req["error_message"] == str(info.value)
    assert req["calls"] == 0 and req["fingerprint_id"] is None and req["variant"] == "baseline"
    assert rows(db, "SELECT * FROM llm_calls") == []
    assert adapter.runs == {}


def test_runs_outside_a_request_are_recorded_as_library_runs(writer: TraceWriter, db: Path) -> None:
    adapter = TraceAdapter(writer)
    result = run(adapter, STORY, ctx=False, chunk_summary_prompt_version="v3")
    [req] = rows(db, "SELECT * FROM requests")
    assert req["source"] == "library" and len(req["request_id"]) == 32
    assert req["variant"] == "baseline" and req["fingerprint_id"] == result.fingerprint["id"]
    assert req["prompt_set"] == "chunk_summary_prompt@v3 final_summary_prompt@v1"
    versions = json.loads(req["prompt_versions"])
    for node, meta in result.fingerprint["prompts"].items():
        assert versions[node]["source_sha256"] == meta["source_sha256"]
    [call] = rows(db, "SELECT * FROM llm_calls WHERE step = 'final_summary'")
    assert call["prompt_version"] == "v1"


def fake_call(i: int) -> LLMCall:
    return LLMCall(
        step="chunk_summary",
        index=i,
        model="m",
        text="t",
        finish_reason="stop",
        input_tokens=3,
        output_tokens=1,
        cost_usd=0.0,
        latency_s=0.01,
        cached=False,
        attempts=1,
        request_key="k",
        prompt="p",
    )


def test_no_per_run_state_survives_a_thousand_runs(writer: TraceWriter, db: Path) -> None:
    pipeline = build_pipeline(overrides=SMALL_CHUNKS)
    graph = pipeline.driver.graph
    adapter = TraceAdapter(writer)

    async def one(i: int) -> None:
        run_id = f"run-{i}"
        adapter.pre_graph_execute(
            run_id=run_id, graph=graph, final_vars=["summary"], inputs={}, overrides={}
        )
        failed = i % 3 == 0
        with request_scope(context(pipeline, f"req-{i}")):  # a bare Driver: no run scope
            await adapter.post_graph_execute(
                run_id=run_id,
                graph=graph,
                success=not failed,
                error=RuntimeError("boom") if failed else None,
                results=None if failed else {"chunk_summary_responses": [fake_call(0)]},
            )

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(1000)))

    asyncio.run(main())
    asyncio.run(pipeline.aclose())
    assert adapter.runs == {}
    assert rows(db, "SELECT count(*) AS n FROM requests") == [{"n": 1000}]
    assert rows(db, "SELECT count(*) AS n FROM requests WHERE status = 'error'") == [{"n": 334}]
    # the calls a bare Driver's run returned among its outputs, with their node
    assert rows(db, "SELECT count(*) AS n, min(node) AS node FROM llm_calls") == [
        {"n": 666, "node": "chunk_summary_responses"}
    ]


def test_a_run_ending_while_others_are_in_flight_tells_the_writer_more_are_coming(
    db: Path,
) -> None:
    """The writer may hold a busy submit for its commit interval to commit several runs in one
    transaction; a run with no other in flight (one client) is never held."""
    pipeline = build_pipeline(overrides=SMALL_CHUNKS)
    graph = pipeline.driver.graph

    seen: list[tuple[str, bool]] = []

    class Recording(TraceWriter):
        async def submit(
            self, request_row: Any, call_rows: Any = (), *, busy: bool = False
        ) -> None:
            seen.append((request_row["request_id"], busy))
            await super().submit(request_row, call_rows, busy=busy)

    writer = Recording(db).start()
    adapter = TraceAdapter(writer)

    def start(run_id: str) -> None:
        adapter.pre_graph_execute(
            run_id=run_id, graph=graph, final_vars=["summary"], inputs={}, overrides={}
        )

    async def end(run_id: str) -> None:
        with request_scope(context(pipeline, f"req-{run_id}")):
            await adapter.post_graph_execute(
                run_id=run_id, graph=graph, success=True, error=None, results={}
            )

    async def main() -> None:
        start("1")
        start("2")
        await end("1")  # run 2 still in flight
        await end("2")  # the last one
        start("3")
        await end("3")  # alone

    try:
        asyncio.run(main())
    finally:
        writer.close()
        asyncio.run(pipeline.aclose())
    assert seen == [("req-1", True), ("req-2", False), ("req-3", False)]
    assert rows(db, "SELECT count(*) AS n FROM requests") == [{"n": 3}]


def test_the_adapter_adds_no_per_node_hook_and_computes_the_fingerprint_once(
    writer: TraceWriter, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptdag.pipeline

    ids: list[str] = []
    real = promptdag.pipeline.fingerprint_id_of

    def counted(members: dict[str, str]) -> str:
        ids.append(real(members))
        return ids[-1]

    monkeypatch.setattr(promptdag.pipeline, "fingerprint_id_of", counted)
    adapter = TraceAdapter(writer)

    async def go() -> RunResult:
        pipeline = build_pipeline(overrides=SMALL_CHUNKS, adapters=[adapter])
        hooks = pipeline.driver.adapter
        # The async driver starts a task for every async node hook of every node: none here.
        assert not hooks.does_hook("post_node_execute", is_async=True)
        assert not hooks.does_hook("pre_graph_execute", is_async=True)
        try:
            ctx = RequestContext("req-once", pipeline.variant, "sticky")  # as the service's
            with request_scope(ctx):
                return await pipeline.run({"text": STORY})
        finally:
            await pipeline.aclose()

    result = asyncio.run(go())
    [req] = rows(db, "SELECT fingerprint_id FROM requests")
    assert ids == [result.fingerprint["id"]] == [req["fingerprint_id"]]


def test_the_api_key_never_reaches_the_store(
    writer: TraceWriter, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789SECRETKEY"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    run(TraceAdapter(writer), STORY, llm_cache="off")
    writer.close()
    assert rows(db, "SELECT count(*) AS n FROM llm_calls")[0]["n"] > 1
    for file in db.parent.glob("traces.sqlite*"):
        assert secret.encode() not in file.read_bytes()
        assert b"0123456789SECRET" not in file.read_bytes()


def test_a_cancelled_run_is_recorded_as_past_its_deadline_or_cancelled(
    writer: TraceWriter, db: Path
) -> None:
    pipeline = build_pipeline(overrides=SMALL_CHUNKS)
    graph = pipeline.driver.graph
    adapter = TraceAdapter(writer)

    async def main() -> None:
        for run_id, deadline in (("late", 0.0), ("stopped", None)):
            adapter.pre_graph_execute(
                run_id=run_id, graph=graph, final_vars=["summary"], inputs={}, overrides={}
            )
            with run_scope(deadline), request_scope(context(pipeline, run_id)):
                await adapter.post_graph_execute(
                    run_id=run_id, graph=graph, success=False, error=None, results=None
                )
        await pipeline.aclose()

    asyncio.run(main())
    assert rows(db, "SELECT request_id, status, error_type FROM requests ORDER BY request_id") == [
        {"request_id": "late", "status": "error", "error_type": "DeadlineExceededError"},
        {"request_id": "stopped", "status": "error", "error_type": "CancelledError"},
    ]


# --- every attempted call, against a scripted model ------------------------------------------

TRIAGE = REPO / "examples" / "ticket-triage"


@pytest.fixture
def app_modules_restored() -> Iterator[None]:
    """Building ticket-triage in this process replaces the summarizer's `dataflows` and
    `prompts` in sys.modules (its root is inside this repository's, so loading the summarizer
    again would not evict them); put the originals back for the tests after."""
    tops = ("dataflows", "prompts")
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in tops}
    yield
    for name in [k for k in sys.modules if k.split(".")[0] in tops]:
        del sys.modules[name]
    sys.modules.update(saved)


TICKET = "The app crashes on login since the last update. Please help, it is urgent."
PRICE = (0.15, 0.60)  # gpt-4o-mini in both examples' [prices]


def openai_run(
    adapter: TraceAdapter,
    server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    inputs: dict[str, Any],
    project: Path | None = None,
    request_id: str = "req-1",
    **overrides: Any,
) -> RunResult:
    """One traced run of the summarizer (or `project`) against the fake server, as request
    `request_id` of subject user-7."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    config = {
        "llm_backend": "openai",
        "llm_model": "gpt-4o-mini",
        "llm_base_url": server.base_url,
        "llm_cache": "off",
        "llm_max_retries": 0,
        **({} if project else SMALL_CHUNKS),
        **overrides,
    }

    async def go() -> RunResult:
        pipeline = build_pipeline(overrides=config, adapters=[adapter], project=project)
        try:
            with request_scope(context(pipeline, request_id)):
                return await pipeline.run(inputs)
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


def cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE[0] + output_tokens * PRICE[1]) / 1_000_000


def test_a_fan_out_that_fails_part_way_is_traced_with_every_call_and_its_cost(
    writer: TraceWriter, db: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 1 is rejected after the other chunks were answered (and billed): the request row
    counts every call and its cost, each answered call is stored with its tokens, the rejected
    one with its error."""
    openai_server.enqueue(status=400, delay_s=0.5, when="only his head arrived")
    with pytest.raises(LLMRequestError):
        openai_run(TraceAdapter(writer), openai_server, monkeypatch, {"text": STORY})

    sent = openai_server.history
    answered = [r for r in sent if r["status"] == 200]
    assert len(answered) >= 3 and len(sent) == len(answered) + 1
    [req] = rows(db, "SELECT * FROM requests")
    calls = rows(db, "SELECT * FROM llm_calls ORDER BY call_index")
    ok = [c for c in calls if c["error_type"] is None]
    [failed] = [c for c in calls if c["error_type"] is not None]
    assert (req["status"], req["error_type"], req["http_status"]) == (
        "error",
        "LLMRequestError",
        502,
    )
    assert req["calls"] == len(calls) == len(sent)
    assert len(ok) == len(answered) and all(c["step"] == "chunk_summary" for c in calls)
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in ok)
    assert all(
        c["cost_usd"] == pytest.approx(cost(c["input_tokens"], c["output_tokens"])) for c in ok
    )
    assert req["input_tokens"] == sum(c["input_tokens"] for c in ok) > 0
    assert req["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in ok)) and req["cost_usd"] > 0
    assert (failed["error_type"], failed["attempts"], failed["input_tokens"]) == (
        "LLMRequestError",
        1,
        0,
    )
    assert "rejected the request (400)" in failed["error_message"]
    assert failed["response_text"] is None and failed["node"] == "chunk_summary_responses"
    assert [c["chunk_index"] for c in calls] == sorted(c["chunk_index"] for c in calls)
    assert len({c["chunk_index"] for c in calls}) == len(calls)


def test_a_failed_call_is_traced_with_its_retries(
    writer: TraceWriter, db: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.enqueue(status=503, headers={"retry-after-ms": "10"}, times=50)
    with pytest.raises(LLMUnavailableError):
        openai_run(
            TraceAdapter(writer),
            openai_server,
            monkeypatch,
            {"text": STORY},
            llm_max_retries=2,
            llm_max_concurrency=1,
        )
    calls = rows(db, "SELECT * FROM llm_calls ORDER BY call_index")
    [req] = rows(db, "SELECT * FROM requests")
    assert calls[0]["error_type"] == "LLMUnavailableError"
    assert (calls[0]["attempts"], calls[0]["retries"]) == (3, 2)
    assert req["calls"] == len(calls) >= 1 and req["cost_usd"] == 0.0


@pytest.mark.usefixtures("app_modules_restored")
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"text": '{"category": "bug", "urg', "finish_reason": "length"}, "length"),
        ({"finish_reason": "content_filter"}, "content_filter"),
        ({"refusal": "I cannot triage this ticket."}, "refusal"),
    ],
)
def test_an_incomplete_triage_answer_fails_the_run_and_is_traced(
    writer: TraceWriter,
    db: Path,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    reply: dict[str, Any],
    reason: str,
) -> None:
    openai_server.enqueue(**reply)
    with pytest.raises(LLMIncompleteError) as info:
        openai_run(TraceAdapter(writer), openai_server, monkeypatch, {"ticket": TICKET}, TRIAGE)
    assert (info.value.reason, info.value.step) == (reason, "triage")
    assert str(info.value).startswith("triage: openai backend, model gpt-4o-mini")
    [req] = rows(db, "SELECT * FROM requests")
    [call] = rows(db, "SELECT * FROM llm_calls")
    assert (req["status"], req["error_type"], req["http_status"]) == (
        "error",
        "LLMIncompleteError",
        502,
    )
    assert (req["calls"], req["input_tokens"]) == (1, call["input_tokens"])
    assert call["input_tokens"] > 0 and call["cost_usd"] > 0
    assert req["cost_usd"] == pytest.approx(call["cost_usd"])
    assert call["error_type"] == "LLMIncompleteError" and call["prompt_node"] == "triage_prompt"
    if reason == "refusal":
        assert call["response_text"] == "I cannot triage this ticket."


def test_an_allowed_incomplete_answer_is_flagged_in_the_result_and_the_trace(
    writer: TraceWriter, db: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.enqueue(text="The professor sent a cat and then", finish_reason="length")
    result = openai_run(
        TraceAdapter(writer),
        openai_server,
        monkeypatch,
        {"text": STORY},
        llm_allow_incomplete="true",
        llm_max_concurrency=1,
    )
    assert result.incomplete and result.as_dict()["incomplete"] is True
    assert [c.incomplete for c in result.llm_calls].count(True) == 1
    [req] = rows(db, "SELECT * FROM requests")
    flags = [c["incomplete"] for c in rows(db, "SELECT * FROM llm_calls ORDER BY call_index")]
    assert (req["status"], req["incomplete"]) == ("ok", 1)
    assert flags.count(1) == 1 and flags.count(0) == len(flags) - 1


def test_a_complete_run_is_not_flagged_incomplete(writer: TraceWriter, db: Path) -> None:
    result = run(TraceAdapter(writer), STORY)
    assert not result.incomplete and result.as_dict()["incomplete"] is False
    [req] = rows(db, "SELECT * FROM requests")
    assert req["incomplete"] == 0
    assert {c["incomplete"] for c in rows(db, "SELECT * FROM llm_calls")} == {0}


@pytest.mark.usefixtures("app_modules_restored")
@pytest.mark.parametrize("project", [None, TRIAGE], ids=["summarizer", "ticket-triage"])
def test_a_malformed_model_response_is_a_model_error_in_the_trace(
    writer: TraceWriter,
    db: Path,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    project: Path | None,
) -> None:
    openai_server.enqueue(body=HTML_PAGE, content_type="text/html", times=50)
    inputs = {"ticket": TICKET} if project else {"text": STORY}
    with pytest.raises(LLMMalformedResponseError) as info:
        openai_run(TraceAdapter(writer), openai_server, monkeypatch, inputs, project)
    assert info.value.exit_code == 4 and "HTML page" in str(info.value)
    [req] = rows(db, "SELECT * FROM requests")
    assert (req["error_type"], req["http_status"]) == ("LLMMalformedResponseError", 502)
    assert req["calls"] >= 1


def test_credentials_in_the_base_url_are_never_stored_or_printed(
    writer: TraceWriter, db: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = openai_server.base_url.replace("http://", "http://alice:hunter2-pw@")
    result = openai_run(
        TraceAdapter(writer), openai_server, monkeypatch, {"text": STORY}, llm_base_url=url
    )
    shown = json.dumps(result.as_dict())
    assert result.fingerprint["config"]["llm_base_url"].startswith("http://<redacted>@127.0.0.1")
    openai_server.enqueue(status=500, body={"error": {"message": f"proxy {url} refused"}}, times=50)
    with pytest.raises(LLMUnavailableError) as info:
        openai_run(
            TraceAdapter(writer),
            openai_server,
            monkeypatch,
            {"text": STORY},
            request_id="req-2",
            llm_base_url=url,
        )
    writer.close()
    [error] = rows(db, "SELECT error_message FROM requests WHERE request_id = 'req-2'")
    assert "proxy http://<redacted>@127.0.0.1" in error["error_message"]
    for text in (shown, str(info.value)):
        assert "hunter2" not in text and "alice" not in text
    for file in db.parent.glob("*.sqlite*"):
        assert b"hunter2" not in file.read_bytes()
