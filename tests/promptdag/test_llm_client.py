"""`LLM` through the real openai SDK against the local fake server: answers, retries, typed
errors, the whole-run deadline and the bounded fan-out of `complete_all`; cut-off, filtered,
refused and malformed answers; the run's record of every attempted call; no credentials from
the base URL in what it says or stores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

from promptdag.errors import (
    DeadlineExceededError,
    LLMError,
    LLMIncompleteError,
    LLMMalformedResponseError,
    LLMRequestError,
    LLMUnavailableError,
)
from promptdag.llm.client import LLM, run_scope
from promptdag.prompting import chat
from tests.fakes.llm import API_KEY, open_llm
from tests.fakes.openai_server import HTML_PAGE, OpenAIServer

FAST_RETRY = {"retry-after-ms": "10"}
STEP = "chunk_summaries"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_llm(server: OpenAIServer, **settings: Any) -> contextlib.AbstractAsyncContextManager[LLM]:
    """An `LLM` built the way the driver factory builds it, closed on exit."""
    return open_llm(server, **settings)


@pytest.mark.anyio
async def test_complete_returns_text_usage_cost_and_one_attempt(openai_server: OpenAIServer):
    openai_server.enqueue(text="Two words")
    async with make_llm(openai_server) as llm:
        call = await llm.complete("summarize these four words", step=STEP)

    assert call.text == "Two words"
    assert (call.input_tokens, call.output_tokens) == (4, 2)
    assert call.cost_usd == pytest.approx((4 * 1.0 + 2 * 2.0) / 1_000_000)
    assert (call.attempts, call.cached, call.model, call.finish_reason) == (
        1,
        False,
        "gpt-test",
        "stop",
    )
    assert (call.step, call.index) == (STEP, None)
    [request] = openai_server.history
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["model"] == "gpt-test"
    assert request["json"]["messages"] == [
        {"role": "user", "content": "summarize these four words"}
    ]
    assert (request["json"]["temperature"], request["json"]["max_tokens"]) == (0.0, 64)


@pytest.mark.anyio
async def test_complete_retries_a_429_honouring_retry_after(openai_server: OpenAIServer):
    openai_server.enqueue(status=429, headers=FAST_RETRY)
    async with make_llm(openai_server, max_retries=2) as llm:
        call = await llm.complete("hello", step=STEP)

    assert call.attempts == 2
    assert call.text == "echo: hello"
    first, second = openai_server.history
    assert (first["status"], second["status"]) == (429, 200)
    # The SDK's own backoff waits at least 0.375 s; retry-after-ms asked for 10 ms.
    assert second["time"] - first["time"] < 0.3


@pytest.mark.anyio
async def test_complete_retries_server_errors_until_success(openai_server: OpenAIServer):
    openai_server.enqueue(status=500, headers=FAST_RETRY, times=2)
    async with make_llm(openai_server, max_retries=2) as llm:
        call = await llm.complete("hello", step=STEP)

    assert call.attempts == 3
    assert [r["status"] for r in openai_server.history] == [500, 500, 200]


@pytest.mark.anyio
async def test_complete_raises_unavailable_naming_backend_model_step_and_attempts(
    openai_server: OpenAIServer,
):
    openai_server.enqueue(status=503, headers=FAST_RETRY, times=10)
    async with make_llm(openai_server, max_retries=1) as llm:
        with pytest.raises(LLMUnavailableError) as info:
            await llm.complete("hello", step=STEP)

    message = str(info.value)
    for part in ("openai backend", "model gpt-test", STEP, "2 attempt(s)", "HTTP 503"):
        assert part in message
    assert (info.value.backend, info.value.model, info.value.step) == ("openai", "gpt-test", STEP)
    assert info.value.exit_code == 4
    assert len(openai_server.history) == 2


@pytest.mark.anyio
async def test_complete_raises_unavailable_when_the_server_is_slower_than_timeout(
    openai_server: OpenAIServer,
):
    openai_server.enqueue(delay_s=2.0)
    started = time.monotonic()
    async with make_llm(openai_server, timeout_s=0.3, max_retries=0) as llm:
        with pytest.raises(LLMUnavailableError) as info:
            await llm.complete("hello", step=STEP)

    assert time.monotonic() - started < 2.0
    assert "timed out" in str(info.value)
    assert "1 attempt(s)" in str(info.value)
    assert len(openai_server.history) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "llm_max_output_tokens"),
        (401, "OPENAI_API_KEY"),
        (403, "may use this model"),
        (404, "llm_model and OPENAI_BASE_URL"),
        (422, "request parameters"),
    ],
)
async def test_complete_raises_request_error_at_once_for_a_rejected_request(
    openai_server: OpenAIServer, status: int, hint: str
):
    openai_server.enqueue(status=status, times=3)
    async with make_llm(openai_server, max_retries=2) as llm:
        with pytest.raises(LLMRequestError) as info:
            await llm.complete("hello", step=STEP)

    message = str(info.value)
    assert f"rejected the request ({status})" in message
    assert hint in message
    assert STEP in message and "gpt-test" in message
    assert len(openai_server.history) == 1


@pytest.mark.anyio
async def test_api_key_reaches_the_server_only_as_the_authorization_header():
    with OpenAIServer(api_key=API_KEY) as server:
        async with make_llm(server) as llm:
            call = await llm.complete("hello", step=STEP)
        assert call.text == "echo: hello"  # the server answers 200 only to `Bearer <API_KEY>`
        [request] = server.history
        assert request["authorization"] is True
        assert API_KEY not in json.dumps(request)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "delay_s", "error"),
    [
        (401, 0.0, LLMRequestError),
        (400, 0.0, LLMRequestError),
        (503, 0.0, LLMUnavailableError),
        (200, 2.0, LLMUnavailableError),
    ],
)
async def test_api_key_never_appears_in_error_messages(
    openai_server: OpenAIServer, status: int, delay_s: float, error: type[Exception]
):
    openai_server.enqueue(status=status, delay_s=delay_s, headers=FAST_RETRY, times=3)
    async with make_llm(openai_server, timeout_s=0.3, max_retries=0) as llm:
        with pytest.raises(error) as info:
            await llm.complete("hello", step=STEP)

    for exc in (info.value, info.value.__cause__):
        assert API_KEY not in str(exc) and API_KEY not in repr(exc)


@pytest.mark.anyio
async def test_api_key_is_redacted_when_the_server_echoes_it(openai_server: OpenAIServer):
    echoed = {"error": {"message": f"Invalid key {API_KEY}", "type": "auth", "code": "bad_key"}}
    openai_server.enqueue(status=401, body=echoed)
    async with make_llm(openai_server) as llm:
        with pytest.raises(LLMRequestError) as info:
            await llm.complete("hello", step=STEP)

    assert API_KEY not in str(info.value)


@pytest.mark.anyio
async def test_complete_all_keeps_prompt_order_and_bounds_concurrency(openai_server: OpenAIServer):
    prompts = [f"prompt {i}" for i in range(10)]
    delays = [0.12, 0.02, 0.08, 0.01, 0.1, 0.03, 0.06, 0.01, 0.09, 0.02]
    for prompt, delay in zip(prompts, delays, strict=True):
        openai_server.enqueue(delay_s=delay, when=prompt)
    async with make_llm(openai_server, max_concurrency=3) as llm:
        calls = await llm.complete_all(prompts, step=STEP)

    # Three at a time (no wall-clock bound: the machine is shared and may be busy).
    assert [c.index for c in calls] == list(range(10))
    assert [c.text for c in calls] == [f"echo: {p}" for p in prompts]
    assert all(c.attempts == 1 and c.step == STEP for c in calls)
    assert openai_server.max_in_flight == 3
    assert len(openai_server.history) == 10


@pytest.mark.anyio
async def test_complete_all_counts_attempts_per_chunk(openai_server: OpenAIServer):
    openai_server.default_delay_s = 0.02
    openai_server.enqueue(status=429, headers=FAST_RETRY, when="prompt 2")
    async with make_llm(openai_server, max_concurrency=3) as llm:
        calls = await llm.complete_all([f"prompt {i}" for i in range(6)], step=STEP)

    assert [c.attempts for c in calls] == [1, 1, 2, 1, 1, 1]


@pytest.mark.anyio
async def test_complete_all_raises_naming_the_rejected_chunk(openai_server: OpenAIServer):
    openai_server.default_delay_s = 0.02
    openai_server.enqueue(status=400, when="prompt 4")
    calls = None
    async with make_llm(openai_server, max_concurrency=3) as llm:
        with pytest.raises(LLMRequestError) as info:
            calls = await llm.complete_all([f"prompt {i}" for i in range(10)], step=STEP)

    assert calls is None
    assert f"{STEP} (chunk 4)" in str(info.value)
    assert "rejected the request (400)" in str(info.value)


@pytest.mark.anyio
async def test_run_deadline_shortens_the_attempt_timeout(openai_server: OpenAIServer):
    """An attempt cut short by the run's deadline is a deadline error, not an outage."""
    openai_server.enqueue(delay_s=5.0)
    started = time.monotonic()
    async with make_llm(openai_server, timeout_s=5.0, max_retries=0) as llm:
        with run_scope(0.2) as run, pytest.raises(DeadlineExceededError) as info:
            await llm.complete("hello", step=STEP)

    assert time.monotonic() - started < 2.0
    assert STEP in str(info.value) and "deadline passed" in str(info.value)
    assert run.step == STEP


@pytest.mark.anyio
async def test_run_deadline_bounds_retries_too(openai_server: OpenAIServer):
    openai_server.enqueue(status=429, headers={"retry-after-ms": "4000"})
    started = time.monotonic()
    async with make_llm(openai_server, timeout_s=5.0, max_retries=1) as llm:
        with run_scope(0.2), pytest.raises(DeadlineExceededError):
            await llm.complete("hello", step=STEP)

    assert time.monotonic() - started < 3.0  # did not sit out the 4 s retry-after


@pytest.mark.anyio
async def test_expired_run_deadline_fails_before_contacting_the_server(
    openai_server: OpenAIServer,
):
    async with make_llm(openai_server) as llm:
        with run_scope(0.000001):
            await asyncio.sleep(0.01)
            with pytest.raises(DeadlineExceededError) as info:
                await llm.complete("hello", step=STEP)

    assert STEP in str(info.value) and "llm_deadline_s" in str(info.value)
    assert info.value.step == STEP
    assert openai_server.history == []


@pytest.mark.anyio
async def test_a_server_that_stops_mid_request_is_unavailable():
    server = OpenAIServer()
    server.enqueue(delay_s=20.0)
    started = time.monotonic()
    async with make_llm(server, max_retries=0) as llm:
        call = asyncio.create_task(llm.complete("hello", step=STEP))
        while not server.history:
            await asyncio.sleep(0.01)
        server.stop()
        with pytest.raises(LLMUnavailableError) as info:
            await call

    assert time.monotonic() - started < 20.0
    assert "APIConnectionError" in str(info.value)


# --- honest answers: cut off, filtered, refused, malformed ----------------------------------

INCOMPLETE = {
    "length": (
        {"text": "The answer stops in the mid", "finish_reason": "length"},
        "llm_max_output_tokens",
    ),
    "content_filter": ({"finish_reason": "content_filter"}, "content filter"),
    "refusal": ({"refusal": "I can't help with that."}, "I can't help with that."),
}


@pytest.mark.anyio
@pytest.mark.parametrize("reason", list(INCOMPLETE))
async def test_an_incomplete_answer_is_a_typed_error_naming_step_chunk_and_reason(
    openai_server: OpenAIServer, reason: str
):
    reply, hint = INCOMPLETE[reason]
    openai_server.enqueue(**reply)
    async with make_llm(openai_server) as llm:
        with run_scope(30) as run, pytest.raises(LLMIncompleteError) as info:
            await llm.complete("summarize", step=STEP, index=3)

    error = info.value
    assert (error.reason, error.step, error.index, error.exit_code) == (reason, STEP, 3, 4)
    assert isinstance(error, LLMError) and (error.backend, error.model) == ("openai", "gpt-test")
    message = str(error)
    assert f"{STEP} (chunk 3)" in message and hint in message
    assert "llm_allow_incomplete=true" in message
    # the billed call is in the run's record, with its tokens, cost and error
    [call] = run.calls
    assert (call.error_type, call.attempts, call.index) == ("LLMIncompleteError", 1, 3)
    assert call.input_tokens == 1 and call.cost_usd is not None and call.cost_usd > 0
    assert call.error_message == message


@pytest.mark.anyio
@pytest.mark.parametrize("reason", list(INCOMPLETE))
async def test_allow_incomplete_returns_the_answer_flagged(
    openai_server: OpenAIServer, reason: str
):
    reply, _ = INCOMPLETE[reason]
    openai_server.enqueue(**reply)
    async with make_llm(openai_server, allow_incomplete=True) as llm:
        with run_scope(30) as run:
            call = await llm.complete("summarize", step=STEP)

    assert call.incomplete and call.ok
    assert call.record()["incomplete"] is True
    assert run.calls == [call]
    if reason == "length":
        assert (call.text, call.finish_reason) == ("The answer stops in the mid", "length")
    if reason == "refusal":
        assert (call.text, call.refusal) == ("", "I can't help with that.")


@pytest.mark.anyio
async def test_a_complete_answer_is_not_flagged(openai_server: OpenAIServer):
    async with make_llm(openai_server, allow_incomplete=True) as llm:
        call = await llm.complete("summarize", step=STEP)
    assert not call.incomplete and call.finish_reason == "stop" and call.refusal is None


MALFORMED = {
    "not JSON": ({"body": "{not json"}, "the body is not JSON"),
    "HTML page": (
        {"body": HTML_PAGE, "content_type": "text/html"},
        "the body is an HTML page ('<!DOCTYPE html> <html><head><title>502 Bad Gateway",
    ),
    "HTML as JSON": ({"body": HTML_PAGE}, "the body is not JSON"),
    "empty": ({"body": ""}, "the body is not JSON"),
    "other JSON object": ({"body": {"object": "list", "data": []}}, "JSON of another shape"),
    "JSON list": ({"body": [1, 2]}, "the body is a JSON list"),
    "JSON string": ({"body": '"hello"'}, "the body is a text body ('hello')"),
    "choices not a list": ({"body": {"choices": "x"}}, "JSON of another shape"),
    "no choices": ({"body": {"choices": []}}, "JSON of another shape"),
    "content not text": (
        {"body": {"choices": [{"message": {"content": 3}, "finish_reason": "stop"}]}},
        "invalid: message.content",
    ),
    "content missing": (
        {"body": {"choices": [{"message": {"role": "assistant"}, "finish_reason": "stop"}]}},
        "message.content (missing)",
    ),
    "tokens not numbers": (
        {
            "body": {
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": "many", "completion_tokens": 1},
            }
        },
        "usage.prompt_tokens",
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_response_that_is_no_chat_completion_is_a_typed_model_error(
    openai_server: OpenAIServer, case: str
):
    reply, detail = MALFORMED[case]
    if isinstance(reply.get("body"), list):  # the fake sends a str as it is
        reply = {"body": json.dumps(reply["body"])}
    openai_server.enqueue(**reply)
    async with make_llm(openai_server, max_retries=0) as llm:
        with run_scope(30) as run, pytest.raises(LLMMalformedResponseError) as info:
            await llm.complete("summarize", step=STEP, index=1)

    error = info.value
    message = str(error)
    assert detail in message
    assert f"{STEP} (chunk 1): openai backend, model gpt-test" in message
    assert "llm_base_url" in message
    assert (error.step, error.index, error.exit_code) == (STEP, 1, 4)
    [call] = run.calls
    assert (call.error_type, call.attempts, call.input_tokens) == (
        "LLMMalformedResponseError",
        1,
        0,
    )


@pytest.mark.anyio
async def test_a_refused_structured_answer_is_incomplete_not_a_schema_error(
    openai_server: OpenAIServer,
):
    openai_server.enqueue(refusal="I won't classify this.")
    prompt = chat(user="Classify: hello", schema={"type": "object"}, schema_name="c")
    async with make_llm(openai_server, allow_incomplete=True) as llm:
        with pytest.raises(LLMIncompleteError) as info:
            await llm.complete(prompt, step=STEP)

    assert info.value.reason == "refusal"
    assert "cannot be parsed as the prompt's structured answer" in str(info.value)


# --- the run's record: every attempted call --------------------------------------------------


@pytest.mark.anyio
async def test_a_failed_fan_out_leaves_every_attempted_call_in_the_run_record(
    openai_server: OpenAIServer,
):
    """Chunks 0-3 answer at once, chunk 4 is rejected after they did, chunk 5 is still in
    flight: the run's record has the four answers, the failure and the cancelled call."""
    for i in range(4):
        openai_server.enqueue(text=f"answer {i}", when=f"prompt {i}")
    openai_server.enqueue(status=400, delay_s=0.3, when="prompt 4")
    openai_server.enqueue(delay_s=5.0, when="prompt 5")
    async with make_llm(openai_server, max_concurrency=6) as llm:
        with run_scope(30) as run, pytest.raises(LLMRequestError):
            await llm.complete_all([f"prompt {i}" for i in range(6)], step=STEP)

    by_index = {c.index: c for c in run.calls}
    assert sorted(by_index) == list(range(6))
    for i in range(4):
        assert by_index[i].ok and by_index[i].text == f"answer {i}"
        assert by_index[i].cost_usd == pytest.approx((2 * 1.0 + 2 * 2.0) / 1_000_000)
    assert by_index[4].error_type == "LLMRequestError" and by_index[4].attempts == 1
    assert "rejected the request (400)" in (by_index[4].error_message or "")
    assert by_index[5].error_type == "CancelledError" and by_index[5].attempts == 1
    assert by_index[5].input_tokens == by_index[5].output_tokens == 0


@pytest.mark.anyio
async def test_a_failed_call_records_its_retries(openai_server: OpenAIServer):
    openai_server.enqueue(status=503, headers=FAST_RETRY, times=3)
    async with make_llm(openai_server, max_retries=2) as llm:
        with run_scope(30) as run, pytest.raises(LLMUnavailableError):
            await llm.complete("hello", step=STEP)

    [call] = run.calls
    assert (call.error_type, call.attempts, call.cost_usd) == ("LLMUnavailableError", 3, 0.0)
    assert call.request_key  # the request it was, so a retry can be matched


@pytest.mark.anyio
async def test_a_call_that_never_left_is_not_recorded(openai_server: OpenAIServer):
    async with make_llm(openai_server) as llm:
        with run_scope(0.000001) as run:
            await asyncio.sleep(0.01)
            with pytest.raises(DeadlineExceededError):
                await llm.complete("hello", step=STEP)
    assert run.calls == []


# --- credentials in the base URL ------------------------------------------------------------


def credentialed(server: OpenAIServer) -> str:
    return server.base_url.replace("http://", "http://alice:hunter2-pw@")


@pytest.mark.anyio
async def test_credentials_in_the_base_url_never_appear_in_errors_or_requests(
    openai_server: OpenAIServer,
):
    openai_server.enqueue(body="<html>login required at " + credentialed(openai_server) + "</html>")
    openai_server.enqueue(
        status=500, body={"error": {"message": f"upstream {credentialed(openai_server)} failed"}}
    )
    openai_server.enqueue(text="fine")
    async with make_llm(openai_server, base_url=credentialed(openai_server), max_retries=0) as llm:
        assert "hunter2" not in repr(llm.settings)
        with pytest.raises(LLMMalformedResponseError) as malformed:
            await llm.complete("hello", step=STEP)
        with pytest.raises(LLMUnavailableError) as unavailable:
            await llm.complete("hello", step=STEP)
        call = await llm.complete("hello", step=STEP)
        request = llm._request("hello")

    assert call.text == "fine"  # the credentials did reach the server, as the URL's userinfo
    for text in (str(malformed.value), str(unavailable.value), json.dumps(request)):
        assert "hunter2" not in text and "alice" not in text
    assert request["base_url"].startswith("http://<redacted>@127.0.0.1:")


# --- the HTTP stack: httpx2 or the SDK's aiohttp client ------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("http_client", ["httpx", "aiohttp"])
async def test_either_http_stack_answers_retries_and_types_errors_alike(
    openai_server: OpenAIServer, http_client: str
):
    openai_server.enqueue(status=429, headers=FAST_RETRY)
    openai_server.enqueue(text="Two words")
    openai_server.enqueue(body=HTML_PAGE, content_type="text/html")
    openai_server.enqueue(status=401, body={"error": {"message": "bad key"}})
    async with make_llm(openai_server, http_client=http_client) as llm:
        call = await llm.complete("summarize these four words", step=STEP)
        with pytest.raises(LLMMalformedResponseError, match="an HTML page"):
            await llm.complete("again", step=STEP)
        with pytest.raises(LLMRequestError, match="rejected the request \\(401\\)"):
            await llm.complete("and again", step=STEP)

    assert (call.text, call.attempts, call.input_tokens, call.output_tokens) == (
        "Two words",
        2,
        4,
        2,
    )
    assert [r["status"] for r in openai_server.history] == [429, 200, 200, 401]
    assert openai_server.history[1]["json"] == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "summarize these four words"}],
        "temperature": 0.0,
        "max_tokens": 64,
    }


@pytest.mark.anyio
async def test_use_http_client_switches_a_real_endpoint_and_leaves_the_offline_model_alone(
    openai_server: OpenAIServer,
):
    from promptdag.llm.client import LLMSettings, make_openai_client

    openai_server.enqueue(text="Via aiohttp")
    async with make_llm(openai_server) as llm:
        assert llm.settings.http_client == "httpx"
        before = llm.client
        await llm.use_http_client("aiohttp")
        assert llm.settings.http_client == "aiohttp" and llm.client is not before
        assert type(llm.client._client).__name__ != type(before._client).__name__
        assert (await llm.complete("hello", step=STEP)).text == "Via aiohttp"
        await llm.use_http_client("aiohttp")  # already: the same client
        assert llm.settings.http_client == "aiohttp"

    offline = LLMSettings("offline", "offline-extractive", 0.0, 64, 5.0, 0, 2)
    llm = LLM(offline, make_openai_client(offline, ""))
    client = llm.client
    await llm.use_http_client("aiohttp")
    assert llm.client is client and llm.settings.http_client == "httpx"
    await llm.aclose()


def test_http_client_auto_is_aiohttp_when_installed_and_unknown_names_are_refused():
    from promptdag.errors import ConfigError
    from promptdag.llm.client import aiohttp_installed, resolve_http_client

    assert aiohttp_installed()  # the serve extra installs it
    assert resolve_http_client("auto") == "aiohttp"
    assert resolve_http_client("httpx") == "httpx"
    with pytest.raises(ConfigError, match="Use one of: auto, aiohttp, httpx"):
        resolve_http_client("requests")
