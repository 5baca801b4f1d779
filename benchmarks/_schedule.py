"""Scheduling arithmetic for the fan-out benchmark: the lower bound of n calls on c slots followed
by one final call, the makespan of an ideal work-conserving pool, and where a measured run's
time beyond the bound went (from a transport's arrival and answer timestamps)."""

from __future__ import annotations

import heapq
import math
import random
import statistics
from dataclasses import dataclass

__all__ = [
    "SEGMENTS",
    "Timeline",
    "fixed_bound",
    "ideal_pool",
    "lognormal",
    "lower_bound",
    "timeline",
]


def lognormal(n: int, median: float, sigma: float, seed: int) -> list[float]:
    """`n` seeded draws from a lognormal distribution with this median."""
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


def fixed_bound(n: int, c: int, latency: float) -> float:
    """⌈n/c⌉ waves of calls, then the final call."""
    return math.ceil(n / c) * latency + latency


def lower_bound(latencies: list[float], c: int) -> float:
    """No schedule of the chunk calls (all but the last latency) on c slots beats
    max(sum / c, longest); the final call can only start after all of them."""
    chunk_calls, final = latencies[:-1], latencies[-1]
    return max(sum(chunk_calls) / c, max(chunk_calls)) + final


def ideal_pool(latencies: list[float], c: int) -> float:
    """Makespan of a perfect work-conserving pool of c slots taking the chunk calls in arrival
    order, with zero overhead, then the final call."""
    slots = [0.0] * c
    for lat in latencies[:-1]:
        heapq.heappush(slots, heapq.heappop(slots) + lat)
    return max(slots) + latencies[-1]


@dataclass(frozen=True)
class Timeline:
    """Seconds spent off the ideal schedule in one fixed-latency run."""

    to_first_call: float  # run start → first LLM request reaches the transport
    first_wave_spread: float  # first → c-th request (built one after another on one loop)
    handoff: float  # a call's answer → the next request in its slot (median)
    timer_overshoot: float  # asyncio.sleep(L) beyond L (median)
    to_final_call: float  # last chunk answer → final request
    tail: float  # final answer → the run returns
    critical_path: float  # the above summed as they fall on the critical path


SEGMENTS = {
    "to_first_call": "run start → first LLM request (Hamilton, chunking, rendering, SDK)",
    "first_wave_spread": "first → C-th request (built one after another on one event loop)",
    "handoff": "an answer → the next request in its slot, per hand-off (median)",
    "timer_overshoot": "answer later than its latency: timer slack + busy loop, per call (median)",
    "to_final_call": "last chunk answer → final request (collect, render, SDK)",
    "tail": "final answer → `execute` returns",
    "critical_path": "**sum as it falls on the critical path**",
}


def timeline(
    start: float, end: float, arrived: list[float], answered: list[float], lats: list[float], c: int
) -> Timeline:
    n = len(lats) - 1
    waves = math.ceil(n / c)
    handoff = statistics.median(arrived[i + c] - answered[i] for i in range(n - c))
    overshoot = statistics.median(
        b - a - t for a, b, t in zip(arrived, answered, lats, strict=True)
    )
    parts = (
        arrived[0] - start,
        arrived[c - 1] - arrived[0],
        handoff,
        overshoot,
        arrived[n] - max(answered[:n]),
        end - answered[n],
    )
    critical = parts[0] + parts[1] + (waves - 1) * handoff + (waves + 1) * overshoot
    return Timeline(*parts, critical_path=critical + parts[4] + parts[5])
