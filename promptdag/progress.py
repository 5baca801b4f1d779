"""Progress of a long run on stderr: while it runs, a live line with LLM calls, tokens, cost and
elapsed time when stderr is a terminal (rich); nothing otherwise (the CLI prints its one-line
summary at the end either way)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from promptdag.llm.client import CALL_LISTENERS, LLMCall

__all__ = ["RunProgress"]


class RunProgress:
    """`with RunProgress(items=N): ...` counts every LLM call made meanwhile; `advance()` marks
    an item done (batch runs)."""

    def __init__(self, *, enabled: bool = True, items: int | None = None, label: str = "running"):
        self.enabled = enabled and sys.stderr.isatty()
        self.items, self.done, self.label = items, 0, label
        self.calls = self.input_tokens = self.output_tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self._status: Any = None

    def _on_call(self, call: LLMCall) -> None:
        self.calls += 1
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.cost += call.cost_usd or 0.0
        self._refresh()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._refresh()

    def line(self) -> str:
        items = f"{self.done}/{self.items} items · " if self.items is not None else ""
        return (
            f"{self.label}: {items}{self.calls} LLM calls · "
            f"{self.input_tokens}→{self.output_tokens} tokens · ${self.cost:.4f} · "
            f"{time.monotonic() - self.started:.1f} s"
        )

    def _refresh(self) -> None:
        if self._status is not None:
            self._status.update(self.line())

    def __enter__(self) -> RunProgress:
        CALL_LISTENERS.append(self._on_call)
        if self.enabled:
            from rich.console import Console

            self._status = Console(stderr=True).status(self.line())
            self._status.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        CALL_LISTENERS.remove(self._on_call)
        if self._status is not None:
            self._status.stop()
            self._status = None
