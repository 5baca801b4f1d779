"""The gate's helper processes: the line protocol (`worker.Worker`, forked or spawned), the token
counter (the same counts as `token_counter`, in a process or here) and the base tree's process
when it cannot be forked (a fresh interpreter serves the same snapshot and cases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from promptdag.errors import GateError
from promptdag.gate.base_side import BaseSide
from promptdag.gate.counting import TokenCounts
from promptdag.gate.worker import Worker, answer, can_fork, reply, requests
from promptdag.llm.tokens import token_counter

TRIAGE = Path(__file__).resolve().parents[3] / "examples" / "ticket-triage"

needs_fork = pytest.mark.skipif(not can_fork(), reason="this test process cannot fork")


def _ended(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _double(inbox: IO[bytes], outbox: IO[bytes]) -> int:
    for request in requests(inbox):
        reply(outbox, answer(lambda r=request: r["x"] * 2))  # type: ignore[misc]
    return 0


def _refuse(inbox: IO[bytes], outbox: IO[bytes]) -> int:
    def fail() -> None:
        raise KeyError("no such thing")

    for _ in requests(inbox):
        reply(outbox, answer(fail))
    return 0


def _die(inbox: IO[bytes], outbox: IO[bytes]) -> int:
    print("the helper is dying loudly", file=sys.stderr)
    sys.stderr.flush()
    os._exit(3)


def _hang(inbox: IO[bytes], outbox: IO[bytes]) -> int:
    time.sleep(120)
    return 0


@needs_fork
def test_a_forked_worker_answers_in_order_and_ends_when_closed() -> None:
    worker = Worker.fork("doubler", _double)
    try:
        assert [worker.request({"x": n}, 30, "doubling")["ok"] for n in (1, 2, 21)] == [2, 4, 42]
    finally:
        worker.close()
    assert _ended(worker._pid)


@needs_fork
def test_a_failure_in_the_worker_comes_back_as_an_error_naming_it() -> None:
    with Worker.fork("refuser", _refuse) as worker:
        assert worker.request({}, 30, "asking") == {"error": "KeyError: 'no such thing'"}


@needs_fork
def test_a_worker_that_dies_is_a_gate_error_with_its_last_words() -> None:
    with Worker.fork("mortal", _die) as worker, pytest.raises(GateError) as caught:
        worker.request({}, 30, "asking the mortal")
    assert str(caught.value) == (
        "asking the mortal: the mortal process ended (exit 3): the helper is dying loudly"
    )


@needs_fork
def test_a_worker_that_does_not_answer_in_time_is_killed() -> None:
    worker = Worker.fork("sleeper", _hang)
    with pytest.raises(GateError, match=r"^waiting took over 0.5 s\.$"):
        worker.request({}, 0.5, "waiting")
    worker.close()
    assert _ended(worker._pid)


@pytest.fixture
def thread_running() -> Iterator[None]:
    """Another thread in this process: fork is off."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


TEXTS = ["Summarize this text in three bullets.", "Zusammenfassung: Größe, Übung", ""]


# Run in a fresh interpreter: this test process may have threads other tests left running, and
# TokenCounts never forks beside a running thread.
_COUNT_IN_A_PROCESS = """
import json, os, sys
from promptdag.gate.counting import TokenCounts
texts = json.loads(sys.argv[1])
with TokenCounts.start(fork=True) as counts:
    assert counts.worker is not None and counts.worker.forked, "no counter process"
    out = [counts.count(m, texts) for m in ("offline-extractive", "gpt-4o-mini")]
    pid = counts.worker._pid
try:
    os.kill(pid, 0)
    ended = False
except ProcessLookupError:
    ended = True
print(json.dumps({"counts": out, "ended": ended}))
"""


@needs_fork
def test_token_counts_from_the_counter_process_are_the_models_counts() -> None:
    expected = [
        [token_counter(m).count(t) for t in TEXTS] for m in ("offline-extractive", "gpt-4o-mini")
    ]
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_IN_A_PROCESS, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"counts": expected, "ended": True}


def test_token_counts_are_made_here_when_no_process_may_be_forked(thread_running: None) -> None:
    with TokenCounts.start(fork=True) as counts:
        assert counts.worker is None
        assert counts.count("offline-extractive", TEXTS) == [
            token_counter("offline-extractive").count(t) for t in TEXTS
        ]


def test_the_base_tree_is_served_by_a_fresh_interpreter_when_fork_is_off(
    thread_running: None, tmp_path: Path
) -> None:
    with BaseSide.start(TRIAGE, tmp_path / "data", TRIAGE) as base:
        assert not base.worker.forked
        snapshot = base.snapshot()
        result = base.run_cases(TRIAGE / "ci/evals/suites/triage.toml", ["crash"], "use", None)
    assert snapshot["default_variant"] and snapshot["variants"]
    rendered = [r for p in snapshot["prompts"].values() for r in p["rendered"].values()]
    assert rendered and all(r["tokens"] is None and r["text"] for r in rendered)  # counted later
    assert [c["case"] for c in result["cases"]] == ["crash"]
    assert result["cases"][0]["status"] in ("pass", "fail") and result["cases"][0]["output"]
    assert _ended(base.worker._pid)


def test_the_base_trees_errors_are_gate_errors_naming_the_tree(
    thread_running: None, tmp_path: Path
) -> None:
    with BaseSide.start(TRIAGE, tmp_path / "data", TRIAGE) as base:
        base.snapshot()
        with pytest.raises(GateError, match=r"^running suite nope on the base tree failed: "):
            base.run_cases(TRIAGE / "ci/evals/suites/nope.toml", ["crash"], "use", None)
