"""The batch-wide limiter: paced rates, a concurrency cap, token settlement, and the LLM hook."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from promptdag.batch.limits import Grant, LimiterCore, Limits, SharedLimiter, estimate_tokens
from tests.fakes.llm import open_llm
from tests.fakes.openai_server import OpenAIServer


def _starts(core: LimiterCore, n: int, tokens: int = 0) -> list[float]:
    """Each grant's start, relative to the first request (no real waiting: the core only
    hands out delays)."""

    async def go() -> list[float]:
        out = []
        for _ in range(n):
            grant = await core.acquire("w", tokens)
            out.append(grant.delay)
            core.release(grant.ticket, tokens)
        return out

    return asyncio.run(go())


def test_requests_per_minute_are_paced_evenly() -> None:
    delays = _starts(LimiterCore(Limits(rpm=600)), 11)  # 10/s: one every 0.1 s
    gaps = [b - a for a, b in itertools.pairwise(delays)]
    # one request may come early (the tolerance), then one per interval
    assert delays[0] == pytest.approx(0.0, abs=0.01)
    assert all(g == pytest.approx(0.1, abs=0.02) for g in gaps[1:])
    assert delays[-1] == pytest.approx(0.9, abs=0.05)


def test_tokens_per_minute_pace_by_cost_and_unused_tokens_come_back() -> None:
    core = LimiterCore(Limits(tpm=60_000))  # 1,000 tokens/s

    async def go() -> tuple[float, float, float]:
        first = await core.acquire("w", 2000)  # may start at once, then 2 s of debt
        second = await core.acquire("w", 1000)
        core.release(first.ticket, 500)  # used 500 of the 2,000 reserved: 1.5 s come back
        third = await core.acquire("w", 1000)
        return first.delay, second.delay, third.delay

    d1, d2, d3 = asyncio.run(go())
    assert d1 == pytest.approx(0.0, abs=0.01)
    assert d2 == pytest.approx(1.9, abs=0.05)  # 2 s minus the 0.1 s tolerance
    assert d3 == pytest.approx(d2 + 1.0 - 1.5, abs=0.05)


def test_the_concurrency_cap_holds_and_a_dead_workers_slots_are_freed() -> None:
    core = LimiterCore(Limits(concurrency=2))

    async def go() -> list[str]:
        events: list[str] = []
        await core.acquire("a", 0)
        await core.acquire("a", 0)

        async def third() -> None:
            grant = await core.acquire("b", 0)
            assert grant.queued > 0.03  # it waited for a slot
            events.append("third granted")
            core.release(grant.ticket, 0)

        task = asyncio.create_task(third())
        await asyncio.sleep(0.05)
        events.append("still waiting" if not task.done() else "granted too early")
        assert core.release_worker("a") == 2
        await asyncio.wait_for(task, 5)
        return events

    assert asyncio.run(go()) == ["still waiting", "third granted"]


def test_the_token_estimate_is_the_prompt_plus_max_tokens() -> None:
    request = {"messages": [{"role": "user", "content": "one two three"}], "max_tokens": 50}
    assert estimate_tokens(request, lambda text: len(text.split())) == 3 + 4 + 50


class _Remote:
    def __init__(self) -> None:
        self.core = LimiterCore(Limits(concurrency=1, tpm=600_000))
        self.released: list[tuple[int, int]] = []

    async def acquire(self, tokens: int) -> Grant:
        return await self.core.acquire("w", tokens)

    def release(self, ticket: int, used_tokens: int) -> None:
        self.released.append((ticket, used_tokens))
        self.core.release(ticket, used_tokens)


def test_the_llm_asks_the_limiter_before_each_request_and_reports_its_tokens(
    openai_server: OpenAIServer,
) -> None:
    remote = _Remote()

    async def go() -> Any:
        async with open_llm(openai_server) as llm:
            llm.limiter = SharedLimiter(remote, count_tokens=lambda text: len(text.split()))
            calls = await llm.complete_all([f"say {i}" for i in range(4)])
            return calls

    calls = asyncio.run(go())
    assert len(openai_server.history) == 4
    assert openai_server.max_in_flight == 1  # the limiter's concurrency of 1, not the LLM's 4
    assert sorted(t for t, _ in remote.released) == [1, 2, 3, 4]
    used = sorted(u for _, u in remote.released)
    assert used == sorted(c.input_tokens + c.output_tokens for c in calls)
    assert all(u > 0 for u in used)


def test_a_request_that_wakes_too_late_for_its_slot_asks_for_a_new_one() -> None:
    """A busy event loop must not send a late request bunched with the next ones."""
    remote = _Remote()
    remote.core = LimiterCore(Limits(rpm=600))  # a slot every 0.1 s, 0.1 s of tolerance

    async def go() -> tuple[int, int]:
        for _ in range(2):  # the two slots available now
            grant = await remote.core.acquire("other", 0)
            remote.core.release(grant.ticket, 0)
        limiter = SharedLimiter(remote, count_tokens=None)

        async def call() -> None:
            async with limiter.hold({"messages": []}) as settle:
                settle(1, 1)

        task = asyncio.create_task(call())
        await asyncio.sleep(0.03)  # it waits for its slot, 0.1 s away
        time.sleep(0.4)  # the loop is busy past the slot and its tolerance
        await asyncio.wait_for(task, 5)
        return limiter.late, remote.core.granted

    late, granted = asyncio.run(go())
    assert late == 1 and granted == 4  # two taken, one missed, one used
    assert len(remote.released) == 2


def test_a_free_slot_is_granted_at_once_and_a_full_cap_makes_the_caller_wait() -> None:
    core = LimiterCore(Limits(concurrency=2))

    async def go() -> None:
        first = core.try_acquire("a", 0)
        second = core.try_acquire("a", 0)
        assert first is not None and second is not None
        assert first.delay == 0 and first.queued == 0
        assert core.try_acquire("b", 0) is None  # the cap is full: no grant without waiting
        waiter = asyncio.create_task(core.acquire("b", 0))
        await asyncio.sleep(0.02)
        assert not waiter.done()
        core.release(first.ticket, 0)
        # the freed slot goes to the caller that waited, not to one that asks without waiting
        assert core.try_acquire("c", 0) is None
        grant = await asyncio.wait_for(waiter, 5)
        assert grant.queued > 0.01
        core.release(grant.ticket, 0)
        core.release(second.ticket, 0)
        assert core.try_acquire("c", 0) is not None

    asyncio.run(go())


def test_a_caller_cancelled_while_waiting_for_a_slot_takes_none_with_it() -> None:
    core = LimiterCore(Limits(concurrency=1))

    async def go() -> None:
        held = core.try_acquire("a", 0)
        assert held is not None
        waiter = asyncio.create_task(core.acquire("b", 0))
        await asyncio.sleep(0.01)
        core.release(held.ticket, 0)  # handed to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs: the slot must come back
        with pytest.raises(asyncio.CancelledError):
            await waiter
        again = core.try_acquire("c", 0)
        assert again is not None, "the cancelled caller kept the only slot"
        assert core.try_acquire("d", 0) is None

    asyncio.run(go())
