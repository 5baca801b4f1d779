"""Token counts of the rendered prompts in the gate's snapshots, from a process forked before the
gate imports Hamilton, pandas and the openai SDK: it loads the token encoding (about a
third of a second) on another core meanwhile, then counts on request. That only pays when a core
is idle: where fork cannot be used, or the machine is busy (its 1-minute load average is at least
its number of cores, so the process would only add CPU time), the counts are made in the gate's
own process. Either way with the same encodings (`promptdag.llm.tokens.token_counter`)."""

from __future__ import annotations

import functools
import os
from typing import IO

from promptdag.errors import GateError
from promptdag.gate.worker import Worker, answer, can_fork, reply, requests

__all__ = ["TokenCounts", "spare_core"]

COUNT_TIMEOUT_S = 300.0


class TokenCounts:
    """`count(model, texts)`: each text's token count for `model`."""

    def __init__(self, worker: Worker | None) -> None:
        self.worker = worker

    @classmethod
    def start(cls, *, fork: bool | None = None) -> TokenCounts:
        """`fork`: use a process (True), count here (False), or decide (None: `spare_core`)."""
        if fork is None:
            fork = spare_core()
        return cls(Worker.fork("token-counter", _serve) if fork and can_fork() else None)

    def count(self, model: str, texts: list[str]) -> list[int]:
        if self.worker is None:
            return _count(model, texts)
        data = self.worker.request(
            {"model": model, "texts": texts}, COUNT_TIMEOUT_S, f"counting tokens for {model}"
        )
        if "error" in data:
            raise GateError(f"counting tokens for {model} failed: {data['error']}")
        counts: list[int] = data["ok"]
        return counts

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    def __enter__(self) -> TokenCounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spare_core() -> bool:
    """Whether this machine seems to have a core to spare: its 1-minute load average is below
    the number of cores this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return cores > 1 and load < cores


def _count(model: str, texts: list[str]) -> list[int]:
    from promptdag.llm.tokens import token_counter

    counter = token_counter(model)
    return [counter.count(text) for text in texts]


def _serve(inbox: IO[bytes], outbox: IO[bytes]) -> int:
    """Load the encoding of the offline model (the bundled one, also the fallback for models
    whose own encoding is not on this machine) before the first request comes; then count."""
    _count("offline", [""])
    for request in requests(inbox):
        reply(outbox, answer(functools.partial(_count, request["model"], request["texts"])))
    return 0
