"""The audit trail, at the ASGI level: a request id on every response whatever its status, every
response counted by status, a trace row for every run admitted (refusals and failures too) with
the key id and never the key, one JSON access log line per request, /readyz while the trace
store cannot write, problem bodies without server paths, --protect-ops on the docs, and
deeply nested JSON refused as a 422. On the summarizer and on examples/ticket-triage."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from promptdag.errors import (
    LLMIncompleteError,
    LLMMalformedResponseError,
    OverloadedError,
    TraceStoreError,
)
from promptdag.service.keys import derived_key_id
from promptdag.tracing.query import list_requests, show_request
from tests.promptdag.service.conftest import (
    AUTH,
    KEY,
    SAMPLE,
    SUMMARIZE,
    TEXT,
    TICKET,
    TRIAGE,
    TRIAGE_RUNS,
    assert_problem,
)

OTHER_KEY = "other-key-abcdefghijkl"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def ids_of(response) -> tuple[str, str]:
    """(X-Request-Id, X-Promptdag-Request-Id) of a response; both must be there."""
    return response.headers["X-Request-Id"], response.headers["X-Promptdag-Request-Id"]


def db_of(tmp_path: Path) -> Path:
    return tmp_path / "data" / "traces.sqlite"


def trace(tmp_path: Path, request_id: str) -> dict:
    return show_request(db_of(tmp_path), request_id)[0]


def metric(client, pipeline: str, status: int) -> float:
    text = client.get("/metrics").text
    found = re.search(
        rf'^promptdag_responses_total\{{pipeline="{pipeline}",status="{status}"\}} (\S+)$',
        text,
        re.M,
    )
    return float(found[1]) if found else 0.0


def fail_runs(client, monkeypatch, error: BaseException) -> None:
    """Make every served pipeline raise `error` when run."""

    async def boom(inputs):
        raise error

    for variants in client.app.state.promptdag.pipelines.values():
        for pipeline in variants.values():
            monkeypatch.setattr(pipeline, "run", boom)


def test_every_status_carries_a_request_id_is_counted_and_runs_are_traced(
    make_client, tmp_path, monkeypatch
) -> None:
    client = make_client(max_upload_bytes=4096)
    pdf = {"Content-Type": "application/pdf"}
    cases = [  # (status, a request that gets it, whether it is a traced run)
        (200, lambda: client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT}), True),
        (401, lambda: client.post(SUMMARIZE, json={"text": TEXT}), False),
        (404, lambda: client.get("/nowhere"), False),
        (405, lambda: client.get(SUMMARIZE, headers=AUTH), False),
        (413, lambda: client.post(SUMMARIZE, headers=AUTH, json={"text": "x" * 5000}), True),
        (415, lambda: client.post(SUMMARIZE, headers=AUTH, content=b"hi"), True),
        (422, lambda: client.post(SUMMARIZE, headers=AUTH, json={"text": 7}), True),
        (422, lambda: client.post(SUMMARIZE, headers={**AUTH, **pdf}, content=b"no pdf"), True),
    ]
    before = {status: metric(client, "summarize", status) for status, *_ in cases}
    seen: dict[int, int] = {}
    for status, send, traced in cases:
        r = send()
        assert r.status_code == status, (status, r.text)
        public, request_id = ids_of(r)
        assert public == request_id and HEX32.match(request_id), r.headers
        if status != 200:
            body = r.json()
            assert body["request_id"] == request_id and body["status"] == status, body
        rows = list_requests(db_of(tmp_path), limit=100)
        assert (request_id in set(rows["request_id"])) is traced, (status, r.text)
        if traced:
            assert trace(tmp_path, request_id)["http_status"] == status
        seen[status] = seen.get(status, 0) + 1
    for status, count in seen.items():
        pipeline = "" if status == 404 else "summarize"
        assert metric(client, pipeline, status) - before.get(status, 0) >= count, status

    # an unexpected error: a problem+json 500 with the id, traced, the cause in the log only
    fail_runs(client, monkeypatch, RuntimeError(f"boom in {tmp_path}"))
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    body = assert_problem(r, 500, "logged with this request's id", "internal")
    assert body["request_id"] == ids_of(r)[1] and str(tmp_path) not in r.text
    assert trace(tmp_path, body["request_id"])["http_status"] == 500
    assert metric(client, "summarize", 500) >= 1


def test_a_429_carries_a_request_id_and_retry_after(make_client) -> None:
    client = make_client(key_rate=0.01, key_burst=1)
    assert client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT}).status_code == 200
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    body = assert_problem(r, 429, "may send 0.01 requests per second", "rate-limited")
    assert body["request_id"] == ids_of(r)[1] and int(r.headers["Retry-After"]) >= 1
    assert metric(client, "summarize", 429) == 1


def test_a_well_formed_inbound_request_id_is_honoured_and_traced(client, tmp_path) -> None:
    headers = {**AUTH, "X-Request-Id": "client-req:42/a=b"}
    first = client.post(SUMMARIZE, headers=headers, json={"text": TEXT})
    again = client.post(SUMMARIZE, headers=headers, json={"text": TEXT})  # a retry, same id
    refused = client.post(SUMMARIZE, headers=headers, json={"text": 1})
    for r in (first, again, refused):
        public, request_id = ids_of(r)
        assert public == "client-req:42/a=b" and HEX32.match(request_id)
        assert trace(tmp_path, request_id)["client_request_id"] == "client-req:42/a=b"
    assert len({ids_of(r)[1] for r in (first, again, refused)}) == 3  # each traced apart
    assert first.json()["request_id"] == ids_of(first)[1]


@pytest.mark.parametrize("inbound", ["has space", "x" * 129, "semi;colon", "ümlaut"])
def test_a_malformed_inbound_request_id_is_replaced(client, tmp_path, inbound) -> None:
    r = client.post(
        SUMMARIZE,
        headers={**AUTH, "X-Request-Id": inbound.encode()},
        json={"text": TEXT},
    )
    public, request_id = ids_of(r)
    assert r.status_code == 200 and public == request_id and HEX32.match(request_id)
    assert trace(tmp_path, request_id)["client_request_id"] is None


def test_traces_and_the_access_log_name_the_key_by_id_never_the_key(
    make_client, tmp_path, caplog
) -> None:
    client = make_client(api_keys=frozenset({f"team-a:{KEY}", OTHER_KEY}))
    caplog.set_level(logging.INFO, logger="promptdag.access")
    a = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT, "subject_id": "s1"})
    b = client.post(
        SUMMARIZE, headers={"Authorization": f"Bearer {OTHER_KEY}"}, json={"text": TEXT}
    )
    bad = client.post(SUMMARIZE, headers={"Authorization": "Bearer wrong-key-123456"}, json={})
    assert (a.status_code, b.status_code, bad.status_code) == (200, 200, 401)
    assert trace(tmp_path, ids_of(a)[1])["key_id"] == "team-a"
    assert trace(tmp_path, ids_of(b)[1])["key_id"] == derived_key_id(OTHER_KEY)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "promptdag.access"]
    by_id = {line["request_id"]: line for line in lines}
    line = by_id[ids_of(a)[1]]
    assert line["key_id"] == "team-a" and line["status"] == 200
    assert line["pipeline"] == "summarize" and line["variant"] == a.json()["variant"]
    assert line["method"] == "POST" and line["path"] == SUMMARIZE and line["latency_ms"] >= 0
    assert by_id[ids_of(bad)[1]] | {"latency_ms": 0, "ts": ""} == {
        **by_id[ids_of(bad)[1]],
        "key_id": None,
        "status": 401,
        "error": "unauthorized",
        "latency_ms": 0,
        "ts": "",
    }
    assert len(lines) == 3  # one line per request
    stored = db_of(tmp_path).read_bytes() + b"".join(
        p.read_bytes() for p in db_of(tmp_path).parent.glob("traces.sqlite-*")
    )
    for secret in (KEY, OTHER_KEY):
        assert secret.encode() not in stored
        assert secret not in caplog.text


def test_readyz_turns_unready_while_the_trace_store_cannot_write(
    client, tmp_path, monkeypatch, caplog
) -> None:
    tracer = client.app.state.promptdag.tracer
    monkeypatch.setattr(tracer.health, "hold_s", 3600.0)
    writer = tracer.writer
    real_submit = writer.submit
    path = db_of(tmp_path)

    async def full(request_row, call_rows=(), *, busy=False):
        raise TraceStoreError(
            f"the trace of request {request_row['request_id']} could not be stored in "
            f"{path}: database or disk is full"
        )

    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(writer, "submit", full)
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    body = assert_problem(r, 503, "could not be stored", "trace-store-unavailable")
    assert r.headers["Retry-After"].isdigit() and body["request_id"] == ids_of(r)[1]
    assert (
        str(tmp_path) not in r.text and "traces.sqlite" not in r.text and "/" not in body["detail"]
    )
    assert "database or disk is full" in caplog.text  # the cause goes to the server log
    ready = client.get("/readyz")
    detail = assert_problem(ready, 503, "could not write", "trace-store-unavailable")["detail"]
    assert str(tmp_path) not in ready.text and "/" not in detail
    # a refused run is still answered for what it is, and keeps /readyz unready
    assert client.post(SUMMARIZE, headers=AUTH, json={"text": 1}).status_code == 422
    assert client.get("/readyz").status_code == 503
    monkeypatch.setattr(writer, "submit", real_submit)
    assert client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT}).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readyz_comes_back_after_the_hold_without_failures(client, monkeypatch) -> None:
    health = client.app.state.promptdag.tracer.health
    health.failed(TraceStoreError("disk full"))
    assert client.get("/readyz").status_code == 503
    monkeypatch.setattr(health, "hold_s", 0.0)
    assert client.get("/readyz").status_code == 200


def test_protect_ops_covers_the_docs_and_the_openapi_document(make_client) -> None:
    closed = make_client(protect_ops=True)
    for path in ("/docs", "/redoc", "/openapi.json", "/healthz", "/metrics"):
        r = closed.get(path)
        body = assert_problem(r, 401, "Authorization: Bearer", "unauthorized")
        assert body["request_id"] == ids_of(r)[1]
        assert closed.get(path, headers=AUTH).status_code == 200, path
    open_client = make_client()
    assert open_client.get("/openapi.json").status_code == 200


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (nested(100_000), "100000 arrays and objects, over the cap of 256"),
        ('{"text": ' + nested(40, '"x"') + "}", "nests deeper than 32 levels"),
        ('{"text": [' + ",".join(["[]"] * 10_000) + "]}", "10002 arrays and objects"),
        ('{"text": ' + "[" * 200_000 + "}", "200001 arrays and objects"),  # unbalanced too
        ('{"text": ' + nested(20, '"x"') + "}", "input text must be a JSON string, got list"),
    ],
    ids=["deep", "deep-field", "wide", "unbalanced", "shallow"],
)
def test_deeply_nested_json_is_a_422_never_a_500(client, tmp_path, body, words) -> None:
    r = client.post(SUMMARIZE, headers={**AUTH, "Content-Type": "application/json"}, content=body)
    problem = assert_problem(r, 422, words)
    assert len(r.text) < 1000  # the value is never echoed back
    assert trace(tmp_path, problem["request_id"])["http_status"] == 422


def test_json_nested_up_to_the_limit_inside_a_string_is_just_text(client) -> None:
    text = TEXT + " " + "{[" * 5000  # brackets inside a string are text, not nesting
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": text})
    assert r.status_code == 200, r.text


def test_a_pdf_failure_answers_with_the_request_id_and_no_path(client) -> None:
    r = client.post(
        SUMMARIZE,
        headers={**AUTH, "Content-Type": "application/pdf"},
        content=SAMPLE.read_bytes()[:400],
    )
    body = assert_problem(r, 422, "", "bad-document")
    assert body["request_id"] == ids_of(r)[1]
    assert str(Path.cwd()) not in r.text


# --- the other example project ------------------------------------------------------------


@pytest.mark.usefixtures("app_modules_restored")
def test_ticket_triage_gets_the_same_audit_trail(make_client, tmp_path, caplog) -> None:
    client = make_client(
        project=TRIAGE, api_keys=frozenset({f"support:{KEY}"}), key_rate=0.01, key_burst=3
    )
    caplog.set_level(logging.INFO, logger="promptdag.access")
    ok = client.post(TRIAGE_RUNS, headers={**AUTH, "X-Request-Id": "t-1"}, json={"ticket": TICKET})
    assert ok.status_code == 200, ok.text
    deep = client.post(
        TRIAGE_RUNS,
        headers={**AUTH, "Content-Type": "application/json"},
        content='{"ticket": ' + nested(50_000, '"x"') + "}",
    )
    assert_problem(deep, 422, "50001 arrays and objects")
    unknown = client.post(TRIAGE_RUNS, headers=AUTH, json={"ticket": TICKET, "triage_prompt": "x"})
    assert_problem(unknown, 422, "unknown field(s) triage_prompt")
    limited = client.post(TRIAGE_RUNS, headers=AUTH, json={"ticket": TICKET})
    assert_problem(limited, 429, "may send 0.01 requests per second", "rate-limited")
    assert ids_of(ok) == ("t-1", ok.json()["request_id"])
    for r, status in ((ok, 200), (deep, 422), (unknown, 422)):
        row = trace(tmp_path, ids_of(r)[1])
        assert (row["http_status"], row["key_id"], row["pipeline"]) == (status, "support", "triage")
    assert ids_of(limited)[1] not in set(list_requests(db_of(tmp_path))["request_id"])
    statuses = [
        json.loads(r.getMessage())["status"] for r in caplog.records if r.name == "promptdag.access"
    ]
    assert statuses == [200, 422, 422, 429]
    assert metric(client, "triage", 429) == 1


# --- errors from the run: statuses, retry hints, flags -------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "slug", "extra"),
    [
        (
            OverloadedError("worker pool 'pdf' is full.", resource="pdf", retry_after=7),
            503,
            "overloaded",
            {},
        ),
        (
            LLMIncompleteError(
                "chunk_summary[2] was cut off", reason="length", step="chunk_summary", index=2
            ),
            502,
            "model-incomplete",
            {"step": "chunk_summary", "item": 2, "reason": "length"},
        ),
        (
            LLMMalformedResponseError("the reply is an HTML page", step="final_summary"),
            502,
            "model-malformed-response",
            {"step": "final_summary"},
        ),
    ],
    ids=["overloaded", "incomplete", "malformed"],
)
def test_run_errors_map_to_their_status_and_are_traced(
    client, tmp_path, monkeypatch, error, status, slug, extra
) -> None:
    fail_runs(client, monkeypatch, error)
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    body = assert_problem(r, status, str(error), slug)
    assert {k: body[k] for k in extra} == extra
    if status == 503:
        assert r.headers["Retry-After"] == str(error.retry_after)
    row = trace(tmp_path, body["request_id"])
    assert (row["http_status"], row["error_type"]) == (status, type(error).__name__)


def test_an_allowed_incomplete_answer_is_flagged_in_body_headers_and_trace(
    make_client, tmp_path, monkeypatch, openai_server
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-incomplete-0123")
    client = make_client(
        config={
            "llm_backend": "openai",
            "llm_model": "fake",
            "llm_cache": "off",
            "llm_base_url": openai_server.base_url,
            "llm_allow_incomplete": "true",
        }
    )
    openai_server.enqueue(text="The committee met and", finish_reason="length")
    r = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    assert r.status_code == 200, r.text
    assert r.json()["incomplete"] is True and r.headers["X-Promptdag-Incomplete"] == "true"
    complete = client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT})
    assert complete.json()["incomplete"] is False
    assert complete.headers["X-Promptdag-Incomplete"] == "false"
    assert trace(tmp_path, r.json()["request_id"])["http_status"] == 200
