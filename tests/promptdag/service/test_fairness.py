"""A fair service on real sockets (uvicorn in a thread, 127.0.0.1): slow uploads of one key can
hold neither the run slots nor anything of another key's, and time out with a 408; trickled
headers time out with a 408; a request cut by the shutdown timeout gets a problem+json 503 and a
trace row. Every wait is bounded; time checks are hang guards, never performance assertions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptdag.service.settings import ServiceSettings
from promptdag.tracing.query import list_requests, show_request
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.service.conftest import REPO, SUMMARIZE, TEXT
from tests.promptdag.service.threaded import ThreadedServer, read_response, threaded_server

pytestmark = pytest.mark.slow

SLOW = "slow-key-0123456789"
FAST = "fast-key-0123456789"
KEYS = frozenset({f"slow:{SLOW}", f"fast:{FAST}"})
BODY_TIMEOUT_S = 4.0
HEADER_TIMEOUT_S = 2.0


def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def fair(tmp_path_factory) -> Iterator[tuple[ThreadedServer, Path]]:
    """Two run slots; a key may hold three requests; bodies within 4 s, headers within 2 s."""
    data = tmp_path_factory.mktemp("fair") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTDAG_DATA_DIR", str(data))
        mp.chdir(REPO)
        settings = ServiceSettings(
            api_keys=KEYS,
            max_in_flight=2,
            key_max_in_flight=3,
            body_timeout_s=BODY_TIMEOUT_S,
            header_timeout_s=HEADER_TIMEOUT_S,
        )
        with threaded_server(settings) as server:
            yield server, data / "traces.sqlite"


def start_slow_upload(server: ThreadedServer, key: str) -> Any:
    """A JSON upload that sends its headers and 20 of its 5,000 bytes, then stalls."""
    sock = server.connect()
    head = (
        f"POST {SUMMARIZE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"text": "The slow u')
    return sock


def test_slow_uploads_of_one_key_cannot_starve_other_keys(fair) -> None:
    server, db = fair
    limits = server.state.limits
    slow = [start_slow_upload(server, SLOW) for _ in range(3)]  # more than the 2 run slots
    assert wait_for(lambda: limits.in_flight.get("slow") == 3, 10), limits.in_flight
    # the key's own cap: a fourth and fifth upload are refused at once, before their body
    for _ in range(2):
        status, headers, body = read_response(start_slow_upload(server, SLOW))
        problem = json.loads(body)
        assert status == 429 and problem["type"].endswith("/key-concurrency"), problem
        assert headers["retry-after"] == "1" and headers["x-request-id"] == problem["request_id"]
    # another key is served meanwhile: the slow uploads hold no run slot
    fast = server.client(FAST)
    answers = [fast.post(SUMMARIZE, json={"text": TEXT}) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    assert limits.in_flight.get("slow") == 3  # still uploading: this was no race
    # the uploads end with a 408 at the body deadline, each traced with its key
    started = time.monotonic()
    timed_out = [read_response(sock) for sock in slow]
    assert time.monotonic() - started < BODY_TIMEOUT_S + 20  # a hang guard only
    for status, headers, body in timed_out:
        problem = json.loads(body)
        assert status == 408 and problem["type"].endswith("/body-timeout"), problem
        assert headers["connection"] == "close"
        row = show_request(db, headers["x-promptdag-request-id"])[0]
        assert (row["http_status"], row["key_id"], row["calls"]) == (408, "slow", 0)
    assert wait_for(lambda: "slow" not in limits.in_flight, 5), limits.in_flight
    traced = list_requests(db, limit=100)
    assert sorted(traced["key_id"]) == ["fast"] * 3 + ["slow"] * 3  # the 429s never ran
    metrics = server.client().get("/metrics").text
    assert 'promptdag_responses_total{pipeline="summarize",status="408"} 3.0' in metrics
    assert 'promptdag_responses_total{pipeline="summarize",status="429"} 2.0' in metrics


@pytest.mark.parametrize("sent", [b"", b"POST /v1/pipelines/summarize/runs HTTP/1.1\r\nHost: x"])
def test_headers_that_do_not_arrive_in_time_get_a_408(fair, sent) -> None:
    server, _ = fair
    sock = server.connect()
    sock.sendall(sent)
    started = time.monotonic()
    status, headers, body = read_response(sock)
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 20  # a hang guard only
    problem = json.loads(body)
    assert status == 408 and problem["type"].endswith("/header-timeout"), problem
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"] == headers["x-promptdag-request-id"] == problem["request_id"]
    assert sock.recv(1) == b""  # and the connection is closed
    # a complete request on a fresh connection is unaffected
    assert server.client().get("/healthz").status_code == 200


def test_a_request_cut_by_the_shutdown_timeout_gets_a_503_and_a_trace(
    tmp_path, monkeypatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(data))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cut-0123456789")
    monkeypatch.chdir(REPO)
    with OpenAIServer(default_delay_s=20.0) as fake:
        settings = ServiceSettings(
            api_keys=KEYS,
            config={
                "llm_backend": "openai",
                "llm_model": "fake",
                "llm_cache": "off",
                "llm_base_url": fake.base_url,
            },
        )
        with threaded_server(settings, graceful_timeout_s=1) as server:
            result: dict[str, httpx.Response | Exception] = {}

            def send() -> None:
                try:
                    result["r"] = server.client(FAST).post(SUMMARIZE, json={"text": TEXT})
                except httpx.HTTPError as exc:
                    result["r"] = exc

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            assert wait_for(lambda: len(fake.history) >= 1 or fake.in_flight >= 1, 20)
            started = time.monotonic()
            server.stop()
            sender.join(30)
            assert time.monotonic() - started < 20  # the 20 s model reply was not awaited
    r = result["r"]
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("/shutting-down") and r.headers["Retry-After"] == "5"
    assert problem["request_id"] == r.headers["X-Promptdag-Request-Id"]
    row = show_request(data / "traces.sqlite", problem["request_id"])[0]
    assert (row["status"], row["http_status"], row["key_id"]) == ("error", 503, "fast")
    assert row["pipeline"] == "summarize" and row["variant"] in ("baseline", "concise")
    # the run's own row (its graph had started), written once: no second row was tried
    assert row["error_type"] == "CancelledError"
    assert server.state.tracer.health.failures == 0
