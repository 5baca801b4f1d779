"""The response cache through `LLM`, against the local fake server: `use` records and replays,
`replay-only` never calls the model, `off` never touches the file, keys are canonical; only
complete answers are kept, the file is private, namespaces do not share entries, retention,
redaction and erasure by subject hold, and no credential from the base URL is stored."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdag.errors import CacheMissError, ConfigError, LLMError
from promptdag.llm.cache import (
    CACHE_MODES,
    ResponseCache,
    cache_key,
    cache_namespace,
    erase_subject,
    request_key,
)
from promptdag.llm.client import LLM
from promptdag.tracing.context import RequestContext, request_scope
from tests.fakes.llm import open_llm
from tests.fakes.openai_server import HTML_PAGE, OpenAIServer

STEP = "chunk_summaries"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "c.sqlite"


@contextlib.contextmanager
def open_cache(path: Path, mode: str) -> Iterator[ResponseCache]:
    cache = ResponseCache(path, mode)
    try:
        yield cache
    finally:
        cache.close()


def make_llm(
    server: OpenAIServer, cache: ResponseCache | None, **settings: Any
) -> contextlib.AbstractAsyncContextManager[LLM]:
    """An `LLM` built the way the driver factory builds it (no retries), closed on exit."""
    return open_llm(server, cache=cache, **{"max_retries": 0, **settings})


def rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])


@pytest.mark.anyio
async def test_use_mode_serves_a_repeated_request_from_the_cache(
    openai_server: OpenAIServer, cache_path: Path
):
    openai_server.enqueue(text="first answer")
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            first = await llm.complete("summarize this", step=STEP)
            second = await llm.complete("summarize this", step=STEP)

    assert len(openai_server.history) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text == "first answer"
    assert first.cost_usd is not None and first.cost_usd > 0
    assert (second.cost_usd, second.attempts) == (0.0, 0)
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    assert second.request_key == first.request_key
    assert rows(cache_path) == 1


@pytest.mark.anyio
async def test_use_mode_misses_on_another_prompt_or_temperature(
    openai_server: OpenAIServer, cache_path: Path
):
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            base = await llm.complete("summarize this", step=STEP)
            other_prompt = await llm.complete("summarize that", step=STEP)
        async with make_llm(openai_server, cache, temperature=0.5) as warmer:
            other_temperature = await warmer.complete("summarize this", step=STEP)

    assert not (base.cached or other_prompt.cached or other_temperature.cached)
    assert len({base.request_key, other_prompt.request_key, other_temperature.request_key}) == 3
    assert len(openai_server.history) == 3
    assert rows(cache_path) == 3


@pytest.mark.anyio
async def test_use_mode_does_not_cache_a_failed_request(
    openai_server: OpenAIServer, cache_path: Path
):
    openai_server.enqueue(status=500)
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            with pytest.raises(Exception, match="HTTP 500"):
                await llm.complete("summarize this", step=STEP)
            call = await llm.complete("summarize this", step=STEP)

    assert not call.cached
    assert len(openai_server.history) == 2


@pytest.mark.anyio
async def test_replay_only_on_an_empty_cache_raises_and_says_how_to_record(
    openai_server: OpenAIServer, cache_path: Path
):
    with open_cache(cache_path, "replay-only") as cache:
        async with make_llm(openai_server, cache) as llm:
            with pytest.raises(CacheMissError) as info:
                await llm.complete("summarize this", step=STEP, index=3)

    message = str(info.value)
    assert "llm_cache=use" in message
    assert f"{STEP} request for chunk 3" in message
    assert str(cache_path) in message
    assert (info.value.step, info.value.model) == (STEP, "gpt-test")
    assert openai_server.history == []


@pytest.mark.anyio
async def test_replay_only_replays_what_use_recorded(openai_server: OpenAIServer, cache_path: Path):
    prompts = [f"prompt {i}" for i in range(4)]
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            recorded = await llm.complete_all(prompts, step=STEP)
    assert len(openai_server.history) == 4

    replays = []
    for _ in range(2):
        with open_cache(cache_path, "replay-only") as cache:
            async with make_llm(openai_server, cache) as llm:
                replays.append(await llm.complete_all(prompts, step=STEP))

    assert len(openai_server.history) == 4
    for replay in replays:
        assert [c.text for c in replay] == [c.text for c in recorded]
        assert all(c.cached and c.cost_usd == 0.0 for c in replay)


@pytest.mark.anyio
async def test_off_mode_never_reads_or_writes_the_cache(
    openai_server: OpenAIServer, cache_path: Path
):
    with open_cache(cache_path, "off") as cache:
        async with make_llm(openai_server, cache) as llm:
            first = await llm.complete("summarize this", step=STEP)
            second = await llm.complete("summarize this", step=STEP)

    assert not (first.cached or second.cached)
    assert len(openai_server.history) == 2
    assert not cache_path.exists()


@pytest.mark.anyio
async def test_cache_is_shared_by_two_instances_of_one_file(
    openai_server: OpenAIServer, cache_path: Path
):
    with open_cache(cache_path, "use") as one, open_cache(cache_path, "use") as two:
        async with make_llm(openai_server, one) as llm_one, make_llm(openai_server, two) as llm_two:
            recorded_by_one = await llm_one.complete("prompt A", step=STEP)
            replayed_by_two = await llm_two.complete("prompt A", step=STEP)
            recorded_by_two = await llm_two.complete("prompt B", step=STEP)
            replayed_by_one = await llm_one.complete("prompt B", step=STEP)

    assert (recorded_by_one.cached, replayed_by_two.cached) == (False, True)
    assert (recorded_by_two.cached, replayed_by_one.cached) == (False, True)
    assert replayed_by_two.text == recorded_by_one.text
    assert replayed_by_one.text == recorded_by_two.text
    assert len(openai_server.history) == 2
    assert rows(cache_path) == 2


def test_request_key_is_canonical_and_stable():
    request = {
        "backend": "openai",
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "résumé ✓"}],
        "temperature": 0.0,
        "max_tokens": 64,
    }
    reordered = dict(reversed(list(request.items())))
    reordered["messages"] = [{"content": "résumé ✓", "role": "user"}]

    assert request_key(reordered) == request_key(request)
    # Pinned: a change here silently invalidates every recorded cache (and CI's replay-only).
    assert request_key(request) == (
        "729b30787177c6bf8e44d1e593337276a128b5e0d2057d7f4d8075da5a5f03af"
    )
    assert request_key({**request, "temperature": 0.5}) != request_key(request)
    assert request_key({**request, "messages": []}) != request_key(request)


def test_unknown_cache_mode_is_a_config_error_listing_the_modes(cache_path: Path):
    with pytest.raises(ConfigError) as info:
        ResponseCache(cache_path, "replay")

    message = str(info.value)
    assert "llm_cache='replay'" in message
    assert all(mode in message for mode in CACHE_MODES)
    assert info.value.problems == [message]
    assert not cache_path.exists()


# --- only complete answers are cached --------------------------------------------------------

NOT_CACHEABLE = {
    "length": {"text": "cut off in the mi", "finish_reason": "length"},
    "content_filter": {"finish_reason": "content_filter"},
    "refusal": {"refusal": "I can't help with that."},
    "not JSON": {"body": "{not json"},
    "HTML page": {"body": HTML_PAGE, "content_type": "text/html"},
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(NOT_CACHEABLE))
async def test_an_incomplete_or_malformed_answer_is_never_cached(
    openai_server: OpenAIServer, cache_path: Path, case: str
):
    openai_server.enqueue(**NOT_CACHEABLE[case])
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            with pytest.raises(LLMError):
                await llm.complete("summarize this", step=STEP)
            recovered = await llm.complete("summarize this", step=STEP)
            again = await llm.complete("summarize this", step=STEP)

    assert (recovered.cached, again.cached) == (False, True)
    assert recovered.text == again.text == "echo: summarize this"
    assert len(openai_server.history) == 2
    assert rows(cache_path) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["length", "content_filter", "refusal"])
async def test_an_allowed_incomplete_answer_is_returned_but_not_cached(
    openai_server: OpenAIServer, cache_path: Path, case: str
):
    openai_server.enqueue(**NOT_CACHEABLE[case])
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache, allow_incomplete=True) as llm:
            first = await llm.complete("summarize this", step=STEP)
            second = await llm.complete("summarize this", step=STEP)

    assert first.incomplete and not first.cached
    assert not second.incomplete and not second.cached  # asked again, not replayed
    assert rows(cache_path) == 1


@pytest.mark.anyio
async def test_an_incomplete_entry_written_before_the_check_is_never_served(
    openai_server: OpenAIServer, cache_path: Path
):
    """Older promptdag cached cut-off answers; such an entry is dropped, the model asked again."""
    async with make_llm(openai_server, None) as llm:
        key = request_key(llm._request("summarize this"))
    with open_cache(cache_path, "use") as cache:
        cache.get("warm-up")  # creates the file
    with contextlib.closing(sqlite3.connect(cache_path)) as db, db:
        cut = {"model": "gpt-test", "text": "cut", "finish_reason": "length"}
        cut |= {"input_tokens": 2, "output_tokens": 1}
        db.execute(
            "INSERT INTO responses (key, request, response, created) VALUES (?, '{}', ?, ?)",
            (key, json.dumps(cut), time.time()),
        )
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            call = await llm.complete("summarize this", step=STEP)

    assert not call.cached and call.text == "echo: summarize this"
    assert len(openai_server.history) == 1
    with contextlib.closing(sqlite3.connect(cache_path)) as db:
        [(response,)] = db.execute("SELECT response FROM responses").fetchall()
    assert json.loads(response)["finish_reason"] == "stop"


def test_put_refuses_an_incomplete_response(cache_path: Path):
    with open_cache(cache_path, "use") as cache:
        for response in (
            {"text": "x", "finish_reason": "length"},
            {"text": "", "finish_reason": "content_filter"},
            {"text": "", "finish_reason": "stop", "refusal": "No."},
        ):
            assert cache.put("k", {}, response) is False
        assert cache.put("k", {}, {"text": "x", "finish_reason": "stop"}) is True
        assert len(cache) == 1


# --- private files ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_cache_file_is_0600_and_a_new_directory_0700(
    openai_server: OpenAIServer, tmp_path: Path
):
    path = tmp_path / "fresh" / "data" / "c.sqlite"
    old = os.umask(0o022)
    try:
        with open_cache(path, "use") as cache:
            async with make_llm(openai_server, cache) as llm:
                await llm.complete("summarize this", step=STEP)
            files = sorted(path.parent.iterdir())
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        os.umask(old)

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert {"c.sqlite", "c.sqlite-wal", "c.sqlite-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_world_readable_cache_file_is_made_private(cache_path: Path):
    with open_cache(cache_path, "use") as cache:
        cache.put("k", {}, {"text": "x", "finish_reason": "stop"})
    for file in cache_path.parent.glob("c.sqlite*"):
        file.chmod(0o644)
    with open_cache(cache_path, "use") as cache:
        assert cache.get("k") is not None
        assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
        assert all(
            stat.S_IMODE(f.stat().st_mode) == 0o600 for f in cache_path.parent.glob("c.sqlite*")
        )


# --- namespaces ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_namespaces_never_share_an_entry(openai_server: OpenAIServer, cache_path: Path):
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            with cache_namespace("key-a"):
                a1 = await llm.complete("the secret document", step=STEP)
                a2 = await llm.complete("the secret document", step=STEP)
            with cache_namespace("key-b"):
                b1 = await llm.complete("the secret document", step=STEP)
            shared = await llm.complete("the secret document", step=STEP)

    assert (a1.cached, a2.cached, b1.cached, shared.cached) == (False, True, False, False)
    assert len({a1.request_key, b1.request_key, shared.request_key}) == 3
    assert len(openai_server.history) == 3
    with contextlib.closing(sqlite3.connect(cache_path)) as db:
        namespaces = sorted(str(r[0]) for r in db.execute("SELECT namespace FROM responses"))
    assert namespaces == ["None", "key-a", "key-b"]


@pytest.mark.anyio
async def test_a_request_is_namespaced_by_its_api_key_id(
    openai_server: OpenAIServer, cache_path: Path
):
    """The service sets RequestContext.key_id; the cache namespace follows with no more wiring."""

    def ctx(key_id: str) -> RequestContext:
        return RequestContext(request_id=key_id, variant="v", assignment="a", key_id=key_id)

    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            with request_scope(ctx("key-a")):
                first = await llm.complete("the secret document", step=STEP)
            with request_scope(ctx("key-b")):
                other_key = await llm.complete("the secret document", step=STEP)
            with request_scope(ctx("key-a")):
                same_key = await llm.complete("the secret document", step=STEP)

    assert (first.cached, other_key.cached, same_key.cached) == (False, False, True)


def test_no_namespace_keeps_the_recorded_keys():
    request = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert cache_key(request) == cache_key(request, None) == request_key(request)
    assert cache_key(request, "k1") != request_key(request) != cache_key(request, "k2")


# --- retention, redaction, subjects, credentials ---------------------------------------------


def test_retain_days_prunes_older_entries(cache_path: Path):
    with open_cache(cache_path, "use") as cache:
        cache.put("old", {}, {"text": "x", "finish_reason": "stop"})
        cache.put("new", {}, {"text": "y", "finish_reason": "stop"})
    with contextlib.closing(sqlite3.connect(cache_path)) as db, db:
        db.execute(
            "UPDATE responses SET created = ? WHERE key = 'old'", (time.time() - 3 * 86_400,)
        )
    with open_cache(cache_path, "use") as cache:
        cache.set_privacy(redact=False, retain_days=2)
        assert (cache.get("old"), cache.get("new")) == (
            None,
            {"text": "y", "finish_reason": "stop"},
        )
    assert rows(cache_path) == 1


def test_retain_days_must_be_positive(cache_path: Path):
    with pytest.raises(ConfigError, match="retain_days=0"):
        ResponseCache(cache_path, "use", retain_days=0)


@pytest.mark.anyio
async def test_a_redacting_cache_stores_nothing_but_serves_what_it_has(
    openai_server: OpenAIServer, cache_path: Path
):
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            recorded = await llm.complete("recorded before", step=STEP)
            cache.set_privacy(redact=True, retain_days=None)
            replayed = await llm.complete("recorded before", step=STEP)
            secret = await llm.complete("a confidential document", step=STEP)
            secret_again = await llm.complete("a confidential document", step=STEP)

    assert (recorded.cached, replayed.cached) == (False, True)
    assert (secret.cached, secret_again.cached) == (False, False)
    assert rows(cache_path) == 1
    for file in cache_path.parent.glob("c.sqlite*"):
        assert b"confidential" not in file.read_bytes()


@pytest.mark.anyio
async def test_entries_record_their_subject_and_erase_removes_them(
    openai_server: OpenAIServer, cache_path: Path
):
    def ctx(subject: str | None) -> RequestContext:
        return RequestContext(request_id="r", variant="v", assignment="a", subject_id=subject)

    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache) as llm:
            with request_scope(ctx("user-7")):
                await llm.complete("user seven's private text", step=STEP)
                await llm.complete("more of user seven", step=STEP)
            with request_scope(ctx("user-8")):
                await llm.complete("user eight's text", step=STEP)
            await llm.complete("no subject", step=STEP)

    assert erase_subject(cache_path, "user-7") == 2
    assert erase_subject(cache_path, "user-7") == 0
    assert erase_subject(cache_path.with_name("missing.sqlite"), "user-7") == 0
    assert rows(cache_path) == 2
    for file in cache_path.parent.glob("c.sqlite*"):
        assert b"user seven" not in file.read_bytes()


@pytest.mark.anyio
async def test_credentials_in_the_base_url_never_reach_the_cache_file(
    openai_server: OpenAIServer, cache_path: Path
):
    url = openai_server.base_url.replace("http://", "http://alice:hunter2-pw@")
    with open_cache(cache_path, "use") as cache:
        async with make_llm(openai_server, cache, base_url=url) as llm:
            first = await llm.complete("summarize this", step=STEP)
            second = await llm.complete("summarize this", step=STEP)

    assert (first.cached, second.cached) == (False, True)
    for file in cache_path.parent.glob("c.sqlite*"):
        data = file.read_bytes()
        assert b"hunter2" not in data and b"alice" not in data


def test_a_cache_file_of_an_older_promptdag_is_upgraded_in_place(cache_path: Path):
    with contextlib.closing(sqlite3.connect(cache_path)) as db, db:
        db.execute(
            "CREATE TABLE responses (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
            "response TEXT NOT NULL, created REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO responses VALUES ('old', '{}', ?, ?)",
            (json.dumps({"text": "kept", "finish_reason": "stop"}), time.time()),
        )
    with open_cache(cache_path, "use") as cache:
        assert cache.get("old") == {"text": "kept", "finish_reason": "stop"}
        cache.put("new", {}, {"text": "x", "finish_reason": "stop"}, subject="user-7")
    assert erase_subject(cache_path, "user-7") == 1
    assert rows(cache_path) == 1
