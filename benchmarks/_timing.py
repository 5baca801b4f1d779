"""Timing helpers: per-call wall time of an async callable, interleaved reps of several paths
so that drift in a shared machine's load hits every path alike, runs in a fresh process, and
the machine's load while a benchmark runs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["AsyncCall", "LoadSampler", "fresh_process", "interleaved", "per_call"]

AsyncCall = Callable[[], Awaitable[object]]


async def per_call(call: AsyncCall, n: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process) of `n` sequential awaits of
    `call()`: medians, so that a neighbour's burst of load during a few calls does not move them."""
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        await call()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


async def interleaved(
    paths: Mapping[str, AsyncCall], reps: int, batch: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall and CPU seconds of each path, one value per rep (the median of its `batch`
    calls), after a warm-up batch. Calls interleave one by one (a call of each path in turn, the
    order rotating), so a burst of load or a slow spell of the machine hits every path alike and
    paired differences stay meaningful on a noisy machine."""
    names = list(paths)
    for name in names:
        await per_call(paths[name], batch)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        walls: dict[str, list[float]] = {name: [] for name in names}
        cpus: dict[str, list[float]] = {name: [] for name in names}
        for i in range(batch):
            shift = (rep + i) % len(names)
            for name in names[shift:] + names[:shift]:
                w, c = time.perf_counter(), time.process_time()
                await paths[name]()
                cpus[name].append(time.process_time() - c)
                walls[name].append(time.perf_counter() - w)
        for name in names:
            wall[name].append(statistics.median(walls[name]))
            cpu[name].append(statistics.median(cpus[name]))
    return wall, cpu


def fresh_process(code: str) -> Any:
    """Run `code` with this interpreter in a new process at the repo root; the JSON it prints
    last. A failure raises RuntimeError with the end of the process's stderr."""
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-c", code]
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{code!r} failed in a fresh process:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat's `cpu` line: user … steal), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


class LoadSampler:
    """`with LoadSampler() as load:` samples the 1-minute load average every `every` seconds
    (in a thread) into `load.samples`, to show how busy the shared machine was meanwhile, and
    `load.steal`: the share of CPU time the hypervisor gave to other machines (a virtual
    machine's cores are shared too; steal slows everything and the load average misses it)."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self.steal: float | None = None
        self._start: list[int] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="load-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
            if self._done.wait(self.every):
                return

    def __enter__(self) -> LoadSampler:
        self._start = _cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        end = _cpu_times()
        if self._start is not None and end is not None and len(end) == 8:
            spent = [b - a for a, b in zip(self._start, end, strict=True)]
            self.steal = spent[7] / sum(spent) if sum(spent) > 0 else None
