"""Trace store writers sharing one database, as the workers of `promptdag serve --workers N` do:
one and two writer processes (each its own `TraceWriter`) against the same file, saturated
(write throughput) and paced at a service's rate (submit latency, which a response waits for),
with the writer lock (`<db>.lock`, what the store does) and with SQLite's busy handler alone
(the lock disabled in the child: what the store did before). Every submitted row is counted."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._report import Goal, Report, at_least, at_most, median, spread

__all__ = ["NAME", "TITLE", "run"]

NAME = "trace-writers"
TITLE = "Trace store: writer processes sharing one database"
CONCURRENCY = 64  # submits in flight per process, saturated
PACED_RATE = 150.0  # requests per second per process: about one service worker's peak
PROMPT = "lorem ipsum dolor sit amet " * 80  # ~2 KB, two calls per request


def _rows() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    now = time.time()
    request = {
        "request_id": uuid.uuid4().hex,
        "source": "benchmark",
        "status": "ok",
        "started_ts": now,
        "finished_ts": now,
        "pipeline": "p",
        "variant": "v",
    }
    call = {"prompt_text": PROMPT, "response_text": PROMPT[:300], "model": "m", "attempts": 1}
    return request, [call, dict(call)]


@contextlib.contextmanager
def _no_lock(self: Any) -> Iterator[None]:
    yield


def _child(path: str, n: int, rate: float | None, locked: bool, barrier: Any, out: Any) -> None:
    """Submit `n` requests (as fast as CONCURRENCY allows, or one every 1/rate s); report the
    elapsed time and each submit's latency."""
    from promptdag.tracing import store

    if not locked:
        store._WriterLock.held = _no_lock  # type: ignore[method-assign]
    writer = store.TraceWriter(path).start()

    async def main() -> tuple[float, list[float]]:
        latencies: list[float] = []
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                started = time.perf_counter()
                await writer.submit(*_rows())
                latencies.append(time.perf_counter() - started)

        barrier.wait()
        started = time.perf_counter()
        tasks = []
        for _ in range(n):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate if rate else 0)
        await asyncio.gather(*tasks)
        return time.perf_counter() - started, latencies

    out.put(asyncio.run(main()))
    writer.close()


def _once(
    procs: int, per_proc: int, rate: float | None, locked: bool
) -> tuple[float, list[float], int]:
    """(requests per second over the slowest process, every submit latency, rows stored)."""
    from promptdag.tracing.store import TraceWriter

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="promptdag-bench-") as tmp:
        db = Path(tmp) / "traces.sqlite"
        TraceWriter(db).start().close()
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        children = [
            ctx.Process(target=_child, args=(str(db), per_proc, rate, locked, barrier, out))
            for _ in range(procs)
        ]
        for c in children:
            c.start()
        results = [out.get(timeout=600) for _ in children]
        for c in children:
            c.join(timeout=60)
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        conn.close()
    elapsed = max(r[0] for r in results)
    return procs * per_proc / elapsed, [x for r in results for x in r[1]], stored


def _p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000


def run(quick: bool = False) -> Report:
    reps = 1 if quick else 3
    total = 2000 if quick else 4000
    paced = 300 if quick else 900  # per process
    rates: dict[tuple[int, bool], list[float]] = {}
    p50: dict[tuple[int, bool], list[float]] = {}
    p99: dict[tuple[int, bool], list[float]] = {}
    lost = 0
    for _ in range(reps):
        for procs in (1, 2):
            for locked in (True, False):
                key = (procs, locked)
                rate, _, stored = _once(procs, total // procs, None, locked)
                lost += total - stored
                rates.setdefault(key, []).append(rate)
                _, latencies, stored = _once(procs, paced, PACED_RATE, locked)
                lost += procs * paced - stored
                p50.setdefault(key, []).append(_p(latencies, 50))
                p99.setdefault(key, []).append(_p(latencies, 99))
    ratio = median(rates[(2, True)]) / median(rates[(1, True)])
    rows = [
        [
            f"{procs} writer{'s' if procs > 1 else ''}",
            "writer lock" if locked else "SQLite busy handler only",
            f"{median(rates[(procs, locked)]):.0f} req/s ({spread(rates[(procs, locked)])})",
            f"{median(p50[(procs, locked)]):.1f} ms",
            f"{median(p99[(procs, locked)]):.1f} ms ({spread(p99[(procs, locked)], digits=1)})",
        ]
        for procs in (1, 2)
        for locked in (True, False)
    ]
    goals: list[Goal] = [
        at_most("trace rows lost, every case", 0, lost, " rows"),
        at_least("write throughput, 2 writers / 1 writer (saturated)", 0.8, ratio, "×", 2),
        at_most(
            f"p99 submit latency, 2 writers at {PACED_RATE:.0f} req/s each",
            100,
            median(p99[(2, True)]),
            " ms",
            1,
        ),
    ]
    return Report(
        name=NAME,
        title=TITLE,
        goals=goals,
        headers=[
            "Processes",
            "Waiting for the write lock",
            "Saturated throughput (range)",
            f"p50 submit at {PACED_RATE:.0f}/s each",
            "p99 submit (range)",
        ],
        rows=rows,
        method=(
            f"Each case in fresh spawned processes on a fresh database in the temp directory, "
            f"{reps} round(s), medians. Saturated: {total} requests in all (2 LLM call rows of "
            f"~2 KB each), {CONCURRENCY} submits in flight per process, throughput over the "
            f"slowest process. Paced: {paced} requests per process, one every "
            f"{1000 / PACED_RATE:.1f} ms; latency is submit to durable commit (synchronous=FULL),"
            " which a service response waits for. Rows are counted after every case."
        ),
        explanation=(
            "Writers in several processes share one SQLite file in WAL mode; commits are "
            f"serialized, so two writers give {ratio:.2f}× the throughput of one (each process "
            "groups what queued while it waited into one commit). The writer lock matters for "
            "latency: SQLite's busy handler polls with back-off up to 100 ms, the flock on "
            "`<db>.lock` wakes the waiting writer the moment the other commits."
        ),
    )
