"""The response cache through `LLM`, against the local fake server: `use` records and replays,
`replay-only` never calls the model, `off` never touches the file, keys are canonical."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdag.errors import CacheMissError, ConfigError
from promptdag.llm.cache import CACHE_MODES, ResponseCache, request_key
from promptdag.llm.client import LLM
from tests.fakes.llm import open_llm
from tests.fakes.openai_server import OpenAIServer

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
