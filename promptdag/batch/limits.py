"""Limits that hold across every worker of a batch: requests and tokens per minute against the
provider, and LLM calls in flight in total.

One `LimiterCore` holds the state for the whole batch, in one place: the batch's own process
for the local engine (workers ask it over their connection), a Ray actor for the Ray engine.
In each worker a `SharedLimiter` is the LLM's `limiter` (`promptdag.llm.client.CallLimiter`):
before a request leaves it asks the core for a slot, waits the delay the core gives, sends,
then reports the tokens the call used. Cache hits are never sent, so they take no slot.

Rates are paced (GCRA, the generic cell rate algorithm): request i may start no earlier than
the previous one's start plus its cost over the rate, with a tolerance of 0.1 s of the rate
(at least one request's worth), so in any window of W seconds at most rate * W + the tolerance
start. A request's token cost is its estimate (its prompt's tokens plus `max_tokens`, the way
providers count it against a TPM limit) until it returns; then the difference to what it used
is given back.

A worker whose event loop was busy when its slot came (a CPU-bound step, a first run's set-up)
would send late, bunched with the requests of the slots after it: a request that wakes more
than the tolerance after its slot gives the slot up and asks for a new one, so what the
provider sees keeps to the rate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Grant", "LimiterCore", "Limits", "RemoteLimiter", "SharedLimiter", "estimate_tokens"]

_TOLERANCE_S = 0.1
_REASKS = 3  # a request behind its slot asks again at most this often, then goes
_PER_MESSAGE_TOKENS = 4  # role and separators, as providers count them


@dataclass(frozen=True)
class Limits:
    """`rpm`/`tpm`: requests/tokens per minute; `concurrency`: LLM calls in flight in total."""

    rpm: float | None = None
    tpm: float | None = None
    concurrency: int | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.concurrency))

    def describe(self) -> str:
        parts = [
            f"{self.rpm:g} requests/min" if self.rpm else "",
            f"{self.tpm:g} tokens/min" if self.tpm else "",
            f"{self.concurrency} calls in flight" if self.concurrency else "",
        ]
        return ", ".join(p for p in parts if p) or "none"


class _Pace:
    """GCRA for one rate: `reserve` gives a start time, `adjust` corrects a reserved cost."""

    def __init__(self, per_minute: float, unit: float):
        self.interval = 60.0 / per_minute  # seconds per unit of cost
        self.tolerance = max(_TOLERANCE_S, unit * self.interval)
        self.tat = 0.0  # theoretical arrival time of the next unit

    def earliest(self, now: float) -> float:
        return max(now, self.tat - self.tolerance)

    def take(self, start: float, cost: float) -> None:
        self.tat = max(self.tat, start) + cost * self.interval

    def adjust(self, delta: float) -> None:
        self.tat += delta * self.interval


@dataclass(frozen=True)
class Grant:
    """A slot: its ticket, when it starts (`delay` seconds after the grant, which came `queued`
    seconds after the request reached the core), and how late it may still be used."""

    ticket: int
    delay: float
    queued: float
    slack: float


@dataclass
class _Ticket:
    worker: str
    tokens: int
    slot: bool


class _Slots:
    """A FIFO counting semaphore that can also be taken without waiting (`try_take`), so a
    request finding a free slot is granted at once, with no task or future."""

    def __init__(self, count: int):
        self.free = count
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot as it was cancelled
                self.give()
            raise

    def give(self) -> None:
        """A slot back: to the first caller still waiting, else free."""
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class LimiterCore:
    """The batch-wide limiter state. `acquire` waits for a concurrency slot (FIFO), then
    reserves the rate slots and returns the ticket and how long the caller must still wait
    (`try_acquire`: the same when a slot is free now, else None); `release` frees the slot and
    settles the tokens. Lives on one event loop."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._slots = _Slots(limits.concurrency) if limits.concurrency else None
        self._requests = _Pace(limits.rpm, 1) if limits.rpm else None
        self._tokens = _Pace(limits.tpm, 1) if limits.tpm else None
        self._tickets: dict[int, _Ticket] = {}
        self._ids = itertools.count(1)
        self.granted = 0

    def try_acquire(self, worker: str, tokens: int) -> Grant | None:
        """A grant at once if a concurrency slot is free (or there is no concurrency limit)."""
        if self._slots is not None and not self._slots.try_take():
            return None
        return self._reserve(worker, tokens, None)

    async def acquire(self, worker: str, tokens: int) -> Grant:
        arrived = time.monotonic()
        if self._slots is not None:
            await self._slots.take()
        return self._reserve(worker, tokens, arrived)

    def _reserve(self, worker: str, tokens: int, arrived: float | None) -> Grant:
        """The rate slots for a request that holds its concurrency slot (`arrived`: when it
        asked, if it had to wait for that slot)."""
        now = time.monotonic()
        arrived = now if arrived is None else arrived
        paces = [(p, c) for p, c in ((self._requests, 1), (self._tokens, tokens)) if p]
        start = max([now, *(p.earliest(now) for p, _ in paces)])
        for pace, cost in paces:
            pace.take(start, cost)
        ticket = next(self._ids)
        self._tickets[ticket] = _Ticket(worker, tokens, self._slots is not None)
        self.granted += 1
        slack = min((p.tolerance for p, _ in paces), default=float("inf"))
        return Grant(ticket, start - now, now - arrived, slack)

    def release(self, ticket: int, used_tokens: int) -> None:
        held = self._tickets.pop(ticket, None)
        if held is None:
            return
        if self._tokens is not None:
            self._tokens.adjust(used_tokens - held.tokens)
        if held.slot and self._slots is not None:
            self._slots.give()

    def release_worker(self, worker: str) -> int:
        """Free what a worker that died still held; how many tickets that was."""
        gone = [t for t, held in self._tickets.items() if held.worker == worker]
        for ticket in gone:
            self.release(ticket, self._tickets[ticket].tokens)
        return len(gone)


class RemoteLimiter(Protocol):
    """How a worker reaches the core: over its connection, or a Ray actor handle."""

    async def acquire(self, tokens: int) -> Grant: ...

    def release(self, ticket: int, used_tokens: int) -> None: ...


def estimate_tokens(request: Mapping[str, Any], count: Callable[[str], int]) -> int:
    """What a request may cost against a TPM limit: its messages' tokens plus `max_tokens`."""
    messages = request.get("messages") or []
    prompt = sum(count(str(m.get("content", ""))) + _PER_MESSAGE_TOKENS for m in messages)
    return prompt + int(request.get("max_tokens") or 0)


class SharedLimiter:
    """The LLM's `limiter` in a worker: every request waits for the batch-wide core."""

    def __init__(self, remote: RemoteLimiter, *, count_tokens: Callable[[str], int] | None):
        self.remote = remote
        self.count_tokens = count_tokens  # None when no TPM limit: nothing to estimate
        self.late = 0  # slots given up because this process woke too late for them

    @contextlib.asynccontextmanager
    async def hold(self, request: Mapping[str, Any]) -> AsyncIterator[Callable[[int, int], None]]:
        estimate = 0 if self.count_tokens is None else estimate_tokens(request, self.count_tokens)
        ticket = await self._slot(estimate)
        used = [estimate]

        def settle(input_tokens: int, output_tokens: int) -> None:
            used[0] = input_tokens + output_tokens

        try:
            yield settle
        finally:
            self.remote.release(ticket, used[0])

    async def _slot(self, estimate: int) -> int:
        """A granted slot whose time has come, not passed. The request starts `delay` after
        the grant arrives (never before the core's plan); if it is then more than `slack`
        behind the plan (this process's loop was busy, or the round trip slow), it gives the
        slot up and asks again, a few times at most."""
        loop = asyncio.get_running_loop()
        asked_again = 0
        while True:
            asked = loop.time()
            grant = await self.remote.acquire(estimate)
            try:
                if grant.delay > 0:
                    await asyncio.sleep(grant.delay)
            except BaseException:
                self.remote.release(grant.ticket, 0)
                raise
            behind = loop.time() - (asked + grant.queued + grant.delay)
            if behind <= grant.slack or asked_again == _REASKS:
                return grant.ticket
            asked_again += 1
            self.late += 1
            self.remote.release(grant.ticket, 0)
