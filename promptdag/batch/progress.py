"""A batch's progress on stderr: a live bar when stderr is a terminal (rich: items done/total,
rate, ETA, LLM calls, tokens, cost, failures), else one line every `log_every` seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

__all__ = ["BatchProgress", "duration"]


def duration(seconds: float) -> str:
    """`42 s`, `3m05s`, `2h07m`."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class BatchProgress:
    """`with BatchProgress(total=N) as p:` then `p.update(row)` per finished item."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        log_every: float = 10.0,
        label: str = "batch",
        write: Callable[[str], None] | None = None,
        tty: bool | None = None,
    ):
        self.total, self.label, self.log_every = total, label, log_every
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.done = self.failed = self.calls = self.input_tokens = self.output_tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._task: Any = None

    def update(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        self.failed += row.get("status") != "ok"
        self.calls += int(row.get("llm_calls") or 0)
        self.input_tokens += int(row.get("input_tokens") or 0)
        self.output_tokens += int(row.get("output_tokens") or 0)
        self.cost += float(row.get("cost_usd") or 0.0)
        self.tick()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def stats(self) -> str:
        return (
            f"{self.calls} calls · {self.input_tokens}→{self.output_tokens} tokens · "
            f"${self.cost:.4f} · {self.failed} failed"
        )

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.done
        eta = f" · ETA {duration(left / rate)}" if rate > 0 and left > 0 else ""
        return (
            f"{self.label}: {self.done}/{self.total} items · {rate:.2f} items/s{eta} · "
            f"{self.stats()} · {duration(time.monotonic() - self.started)}"
        )

    def tick(self) -> None:
        """Refresh the bar, or log a line when `log_every` seconds have passed."""
        if not self.enabled:
            return
        if self._bar is not None:
            stats = f"{self.rate():.2f} items/s · {self.stats()}"
            self._bar.update(self._task, completed=self.done, total=self.total, stats=stats)
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            self.write(self.line())

    def __enter__(self) -> BatchProgress:
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task(self.label, total=self.total, stats=self.stats())
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
