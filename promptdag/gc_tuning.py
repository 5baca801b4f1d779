"""The garbage collector of a process that promptdag owns whole (`promptdag serve`'s workers,
batch workers, Ray actors), settled once its pipelines are built. Never called by the library
on a caller's behalf: it changes process-wide state."""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "settle_process"]

# The collector's thresholds once settled (Python's default: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 10)


def settle_process() -> None:
    """Once the process has built what it serves: the objects made so far (modules, graphs, the
    SDK's types, the app) are moved out of the collector's sight (`gc.freeze`), and it collects
    the young generation every 20,000 allocations instead of 700. Each run allocates thousands
    of tracked objects (asyncio tasks, Hamilton's per-node state, HTTP messages), so with the
    defaults the collector ran hundreds of times per second, each older-generation pass walking
    every object of the imported libraries: measured, a third of a batch worker's CPU.
    Cycles are still collected, on the same three generations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
