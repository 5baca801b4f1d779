"""`promptdag serve` as a real process: the real openai SDK against the local fake server
(faults, retries, the deadline), the in-flight cap, sticky assignment across a restart, a
graceful SIGTERM, and a SIGKILL under load that leaves every acknowledged request traced.

Network: 127.0.0.1 only (the service and the fake). Every request loop is bounded in count
and time; timing checks are hang guards, never performance assertions."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptdag.tracing.store import TraceStore
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.service.conftest import SUMMARIZE, TEXT
from tests.promptdag.service.live import KEY, LiveServer, live_server

pytestmark = pytest.mark.slow

LLM_KEY = "sk-live-llm-key-abcdef123456"
MODEL = "fake-model"
SERVED_MODEL = "fake-served-model-7"
LONG_TEXT = "\n\n".join(f"Section {i}. {TEXT}" for i in range(24))  # several 800-token chunks
FAST_RETRY = {"retry-after-ms": "10"}


def openai_env(fake: OpenAIServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": LLM_KEY, "OPENAI_BASE_URL": fake.base_url}


def openai_config(**extra: Any) -> dict[str, Any]:
    return {"llm_backend": "openai", "llm_model": MODEL, "llm_cache": "off", **extra}


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status and body["type"].endswith("/" + slug), body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


def status(result: httpx.Response | Exception) -> int | str:
    """A response's status code, or the error a request ended with."""
    return result.status_code if isinstance(result, httpx.Response) else repr(result)


def trace_rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows from a trace database, read-only (safe while the server writes)."""
    conn = TraceStore(db).connect()
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def completion(text: str, model: str = SERVED_MODEL) -> dict[str, Any]:
    """A chat.completion body naming a model other than the one requested."""
    return {
        "id": "chatcmpl-live",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


@dataclass
class Calls:
    """Requests sent from threads, all released together; results in order of sending."""

    server: LiveServer
    results: list[httpx.Response | Exception] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, payloads: list[dict[str, Any]], timeout_s: float = 30.0) -> None:
        self.results = [RuntimeError("no answer")] * len(payloads)
        gate = threading.Barrier(len(payloads))

        def send(i: int, payload: dict[str, Any]) -> None:
            with httpx.Client(
                base_url=self.server.base_url,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=timeout_s,
                trust_env=False,
            ) as client:
                gate.wait(timeout=10)
                try:
                    self.results[i] = client.post(SUMMARIZE, json=payload)
                except httpx.HTTPError as exc:
                    self.results[i] = exc

        self.threads = [
            threading.Thread(target=send, args=(i, p), daemon=True) for i, p in enumerate(payloads)
        ]
        for t in self.threads:
            t.start()

    def join(self, timeout_s: float = 40.0) -> list[httpx.Response | Exception]:
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a request thread hung"
        return self.results


def wait_for(predicate: Any, timeout_s: float) -> bool:
    """Poll `predicate` every 20 ms for at most `timeout_s`; whether it came true."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.02) + 1):
        if predicate():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return bool(predicate())


# --- the real SDK through the service, against the fake server --------------------------------


@pytest.fixture(scope="module")
def sdk_service(tmp_path_factory) -> Iterator[tuple[LiveServer, OpenAIServer]]:
    """The service on the openai backend (SDK defaults: 2 retries), the fake demanding LLM_KEY."""
    with (
        OpenAIServer(api_key=LLM_KEY) as fake,
        live_server(
            tmp_path_factory.mktemp("sdk"), config=openai_config(), env=openai_env(fake)
        ) as server,
    ):
        yield server, fake


@pytest.fixture
def sdk(sdk_service) -> Iterator[tuple[LiveServer, OpenAIServer]]:
    server, fake = sdk_service
    fake.reset()
    yield server, fake
    fake.reset()


def test_live_summary_goes_through_the_real_sdk_with_the_llm_key_only(sdk) -> None:
    server, fake = sdk
    fake.enqueue(body=completion("A point from the fake."), times=50)
    r = server.client().post(
        SUMMARIZE, json={"text": LONG_TEXT, "subject_id": "e2e-1", "user_query": "Why?"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    request_id = body["request_id"]
    [row] = trace_rows(server.db_path, "SELECT * FROM requests WHERE request_id = ?", request_id)
    chunks = len(body["outputs"]["chunk_summaries"])
    assert chunks >= 2, body["outputs"]
    assert body["usage"]["calls"] == chunks + 1 == len(fake.history), fake.history
    assert body["model"] == SERVED_MODEL and body["answer"] == "A point from the fake."
    assert row["status"] == "ok" and row["backend"] == "openai" and row["model"] == MODEL
    # Every call went to the fake over HTTP from the openai SDK, with the LLM key (the fake
    # answers 401 to any other) and never the service's own key.
    for call in fake.history:
        assert call["path"] == "/v1/chat/completions" and call["status"] == 200
        assert call["authorization"] is True
        assert call["headers"].get("x-stainless-lang") == "python", call["headers"]
        assert "OpenAI/Python" in call["headers"].get("user-agent", ""), call["headers"]
        assert call["json"]["model"] == MODEL
        assert KEY not in json.dumps(call["headers"]) + json.dumps(call["json"])
    calls = trace_rows(
        server.db_path,
        "SELECT step FROM llm_calls WHERE request_id = ? ORDER BY call_index",
        request_id,
    )
    steps = [c["step"] for c in calls]
    assert steps == ["chunk_summary"] * chunks + ["final_summary"]


def test_live_429_is_retried_and_the_trace_shows_the_retry(sdk) -> None:
    server, fake = sdk
    fake.enqueue(status=429, headers=FAST_RETRY)
    r = server.client().post(SUMMARIZE, json={"text": TEXT})
    assert r.status_code == 200, r.text
    assert [h["status"] for h in fake.history] == [429, 200, 200]
    calls = trace_rows(
        server.db_path,
        "SELECT step, attempts, retries FROM llm_calls WHERE request_id = ? ORDER BY call_index",
        r.json()["request_id"],
    )
    assert calls == [
        {"step": "chunk_summary", "attempts": 2, "retries": 1},
        {"step": "final_summary", "attempts": 1, "retries": 0},
    ]


def test_live_401_from_the_model_is_a_502_naming_the_key_without_retry(sdk) -> None:
    server, fake = sdk
    fake.enqueue(status=401)
    r = server.client().post(SUMMARIZE, json={"text": TEXT})
    body = assert_problem(r, 502, "model-rejected")
    assert "OPENAI_API_KEY" in body["detail"] and body["step"] == "chunk_summary", body
    assert LLM_KEY not in r.text and KEY not in r.text
    assert [h["status"] for h in fake.history] == [401]


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory) -> Iterator[tuple[LiveServer, OpenAIServer]]:
    """One retry, a three-second whole-request deadline (well under the 10 s slow reply, with
    room for a loaded machine before the first call)."""
    with (
        OpenAIServer(api_key=LLM_KEY) as fake,
        live_server(
            tmp_path_factory.mktemp("strict"),
            config=openai_config(llm_max_retries=1, llm_deadline_s=3),
            env=openai_env(fake),
        ) as server,
    ):
        yield server, fake


@pytest.fixture
def strict(strict_service) -> Iterator[tuple[LiveServer, OpenAIServer]]:
    server, fake = strict_service
    fake.reset()
    yield server, fake
    fake.reset()


def test_live_persistent_500_is_a_503_naming_the_step_after_the_retry_policy(strict) -> None:
    server, fake = strict
    fake.enqueue(status=500, headers=FAST_RETRY, times=10)
    r = server.client().post(SUMMARIZE, json={"text": TEXT})
    body = assert_problem(r, 503, "model-unavailable")
    assert r.headers["Retry-After"].isdigit(), r.headers
    assert body["step"] == "chunk_summary" and "chunk_summary" in body["detail"], body
    assert "after 2 attempt(s)" in body["detail"], body
    assert [h["status"] for h in fake.history] == [500, 500]  # one try + llm_max_retries=1


def test_live_deadline_is_a_504_naming_the_step_long_before_the_slow_reply(strict) -> None:
    server, fake = strict
    delay_s = 10.0
    fake.enqueue(delay_s=delay_s)
    started = time.monotonic()
    r = server.client().post(SUMMARIZE, json={"text": TEXT})
    elapsed = time.monotonic() - started
    body = assert_problem(r, 504, "deadline-exceeded")
    assert body["step"] in ("chunk_summary", "final_summary"), body
    assert body["step"] in body["detail"], body
    assert elapsed < delay_s - 3, f"answered after {elapsed:.1f} s: the deadline did not cut it"


# --- the in-flight cap ----------------------------------------------------------------------


def test_live_overload_answers_503_with_retry_after_and_serves_the_rest(
    tmp_path, openai_server
) -> None:
    openai_server.default_delay_s = 1.0
    with live_server(
        tmp_path,
        config=openai_config(),
        # one key here: its own cap (default: --max-in-flight) set above the service's
        flags=["--max-in-flight", "2", "--key-max-in-flight", "100"],
        env=openai_env(openai_server),
    ) as server:
        calls = Calls(server)
        calls.start([{"text": TEXT} for _ in range(6)])
        results = calls.join()
        statuses = sorted((status(r) for r in results), key=str)
        assert set(statuses) == {200, 503}, statuses
        for r in results:
            assert isinstance(r, httpx.Response)
            if r.status_code == 503:
                assert_problem(r, 503, "overloaded")
                assert r.headers["Retry-After"].isdigit()
        assert openai_server.max_in_flight <= 2  # one call at a time per admitted request
        openai_server.default_delay_s = 0.0
        assert server.client().post(SUMMARIZE, json={"text": TEXT}).status_code == 200


# --- sticky assignment across a restart ------------------------------------------------------


def _variants(server: LiveServer, subjects: list[str]) -> dict[str, str]:
    client = server.client()
    out = {}
    for subject in subjects:
        r = client.post(SUMMARIZE, json={"text": TEXT, "subject_id": subject})
        assert r.status_code == 200, r.text
        assert r.json()["assignment"] == "sticky"
        out[subject] = r.json()["variant"]
    return out


def test_live_subjects_keep_their_variant_across_a_restart(tmp_path) -> None:
    subjects = [f"subject-{i}" for i in range(20)]
    data = tmp_path / "data"
    with live_server(tmp_path, data_dir=data) as first:
        before = _variants(first, subjects)
        first.terminate()
    assert set(before.values()) == {"baseline", "concise"}, before
    with live_server(tmp_path, data_dir=data) as second:
        after = _variants(second, subjects)
    assert after == before


# --- graceful shutdown ----------------------------------------------------------------------


def test_live_sigterm_drains_in_flight_requests_and_keeps_their_traces(
    tmp_path, openai_server
) -> None:
    openai_server.default_delay_s = 1.0  # two calls per request: ~2 s each
    with live_server(
        tmp_path,
        config=openai_config(),
        flags=["--graceful-timeout", "20"],
        env=openai_env(openai_server),
    ) as server:
        calls = Calls(server)
        calls.start([{"text": TEXT, "subject_id": f"drain-{i}"} for i in range(4)])
        assert wait_for(lambda: len(openai_server.history) >= 4, 10), (
            "requests never reached the model"
        )
        server.process.send_signal(signal.SIGTERM)
        results = calls.join()
        code = server.process.wait(timeout=25)  # within the graceful timeout, plus a margin
        log = server.log()
    statuses = [status(r) for r in results]
    assert statuses == [200] * 4, (statuses, log)
    # 0 is the goal (see test_live_sigterm_exit_status_is_0); -SIGTERM is uvicorn re-raising
    # the signal after its graceful shutdown finished.
    assert code in (0, -signal.SIGTERM), (code, log)
    assert "Traceback" not in log, log
    ids = {r.json()["request_id"] for r in results if isinstance(r, httpx.Response)}
    rows = trace_rows(server.db_path, "SELECT request_id, status FROM requests")
    assert {r["request_id"] for r in rows} == ids and {r["status"] for r in rows} == {"ok"}


def test_live_sigterm_exit_status_is_0(tmp_path) -> None:
    with live_server(tmp_path) as server:
        assert server.client().post(SUMMARIZE, json={"text": TEXT}).status_code == 200
        code = server.terminate()
    assert code == 0, server.log()


# --- SIGKILL under load ---------------------------------------------------------------------


@dataclass
class Load:
    """Client threads posting continuously until told to stop, for at most `max_s` seconds or
    `max_requests` requests in all; `acked` holds every request id answered 200."""

    server: LiveServer
    max_s: float = 4.0
    max_requests: int = 300
    acked: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> bool:
        with self.lock:
            if self.stop.is_set() or self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def worker(self, n: int, until: float) -> None:
        with httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10.0,
            trust_env=False,
        ) as client:
            for i in range(self.max_requests):
                if time.monotonic() >= until or not self._take():
                    return
                payload = {"text": TEXT, "subject_id": f"load-{n}-{i}"}
                try:
                    r = client.post(SUMMARIZE, json=payload)
                except httpx.TransportError as exc:  # the server is gone
                    with self.lock:
                        self.errors.append(type(exc).__name__)
                    return
                with self.lock:
                    self.statuses.append(r.status_code)
                    if r.status_code == 200:
                        self.acked.add(r.json()["request_id"])

    @contextlib.contextmanager
    def running(self, threads: int) -> Iterator[None]:
        until = time.monotonic() + self.max_s
        pool = [
            threading.Thread(target=self.worker, args=(n, until), daemon=True)
            for n in range(threads)
        ]
        for t in pool:
            t.start()
        try:
            yield
        finally:
            self.stop.set()
            for t in pool:
                t.join(timeout=15)
        assert not any(t.is_alive() for t in pool), "a load thread hung"


def test_live_sigkill_under_load_keeps_the_trace_db_intact_with_every_acked_request(
    tmp_path,
) -> None:
    with live_server(tmp_path) as server:
        load = Load(server)
        with load.running(threads=8):
            # Kill mid-load: after 100 acknowledged requests, or after 3 s (the load runs 4 s).
            wait_for(lambda: len(load.acked) >= 100, 3.0)
            code = server.kill()
        db = server.db_path
    assert code == -signal.SIGKILL
    assert load.acked and set(load.statuses) == {200}, load.statuses
    assert load.errors, "no request was in flight at the kill: the test killed an idle server"
    conn = sqlite3.connect(db)  # read-write, so the write-ahead log is recovered
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("SELECT request_id FROM requests")}
        orphans = conn.execute(
            "SELECT count(*) FROM llm_calls WHERE request_id NOT IN (SELECT request_id FROM requests)"
        ).fetchone()[0]
    finally:
        conn.close()
    missing = load.acked - stored
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged requests are not traced"
    assert orphans == 0
