"""Replays started from the traces page, run beside the page's server: each in a daemon thread
(one at a time: a replay is a git worktree and a Python process), so every other page keeps
answering; the replay's own page shows it running, then its diff. Jobs live in memory while the
server runs (the most recent `keep`)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptdag.replay.core import ReplayResult

__all__ = ["ReplayJob", "ReplayJobs"]

Replay = Callable[[str, "str | None"], "ReplayResult"]


@dataclass
class ReplayJob:
    """One replay asked for from the page: of `request_id` at `at` (None: its recorded SHA)."""

    id: str
    request_id: str
    at: str | None
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    future: Future[ReplayResult] = field(default_factory=Future)

    @property
    def done(self) -> bool:
        return self.future.done()

    def seconds(self) -> float:
        """How long it has run (0 while it waits for another replay to finish)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at


class ReplayJobs:
    """Start replays in the background and find them again by id."""

    def __init__(self, replay: Replay, keep: int = 100):
        self._replay = replay
        self._keep = keep
        self._jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()

    def start(self, request_id: str, at: str | None) -> ReplayJob:
        """A new replay of `request_id` at `at`, or the one already running for the same."""
        with self._lock:
            for job in self._jobs.values():
                if (job.request_id, job.at) == (request_id, at) and not job.done:
                    return job
            job = ReplayJob(secrets.token_urlsafe(12), request_id, at)
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs))
                if not self._jobs[oldest].done:
                    break
                del self._jobs[oldest]
        threading.Thread(
            target=self._run, args=(job,), name=f"promptdag-replay-{job.id[:6]}", daemon=True
        ).start()
        return job

    def get(self, job_id: str) -> ReplayJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: ReplayJob) -> None:
        with self._one_at_a_time:
            job.started_at = time.monotonic()
            try:
                result = self._replay(job.request_id, job.at)
            except BaseException as exc:  # the page shows it; nothing is lost in a thread
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
