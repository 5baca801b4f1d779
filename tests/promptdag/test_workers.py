"""The killable worker pool: results and errors travel back typed, the time and memory caps hold
inside a call, a dead worker costs only its call, a full queue refuses at once, a caller that
leaves takes its call along, and shutdown kills what runs. The functions the workers run are
the module-level ones below (workers import them from this module)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptdag.errors import (
    InputError,
    OverloadedError,
    WorkerError,
    WorkerLimitError,
)
from promptdag.workers import WorkerPool, worker_pool

# Generous bounds: the machine is shared; these only prove that nothing waits for the call.
PROMPTLY = 30.0


def add(a: int, b: int) -> int:
    return a + b


def digest(data: bytes, label: str) -> tuple[str, int, str, str]:
    return label, len(data), type(data).__name__, hashlib.sha256(data).hexdigest()


def nap(seconds: float, marker: str = "") -> int:
    """Sleep in the worker; with `marker`, first write the worker's pid there."""
    if marker:
        Path(marker).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(seconds)
    return os.getpid()


def hog(megabytes: int) -> int:
    blocks = [bytearray(1 << 20) for _ in range(megabytes)]
    return len(blocks)


def segfault() -> None:
    """A crash in native code: read address 0."""
    import ctypes

    ctypes.string_at(0)


def abort() -> None:
    """What native code does when an allocation fails (std::bad_alloc → std::terminate)."""
    os.abort()


def refuse(value: str) -> None:
    raise InputError(f"input {value!r} is refused")


def fail() -> None:
    raise ValueError("broken inside the worker")


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool("test-workers", workers=2, max_queue=2)
    yield p
    p.shutdown()


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + PROMPTLY
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(encoding="utf-8"):
            return int(path.read_text(encoding="utf-8"))
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def test_a_call_returns_its_value_and_large_bytes_arrive_whole(pool: WorkerPool) -> None:
    assert pool.call(add, 2, 3, timeout=PROMPTLY) == 5
    assert pool.call(f"{__name__}:add", 4, 5, timeout=PROMPTLY) == 9
    data = os.urandom(3 << 20)
    label, size, kind, sha = pool.call(digest, data, "big", timeout=PROMPTLY)
    assert (label, size, kind, sha) == ("big", len(data), "bytes", hashlib.sha256(data).hexdigest())


def test_errors_arrive_typed_and_an_unexpected_one_carries_the_worker_traceback(
    pool: WorkerPool,
) -> None:
    with pytest.raises(InputError, match="input 'x' is refused"):
        pool.call(refuse, "x", timeout=PROMPTLY)
    with pytest.raises(ValueError, match="broken inside the worker") as err:
        pool.call(fail, timeout=PROMPTLY)
    assert any("In the worker process" in n for n in err.value.__notes__)
    before = pool.pids()
    assert pool.call(add, 1, 1, timeout=PROMPTLY) == 2  # the worker survived both
    assert pool.pids() == before  # and serves on: a failed document's fallback needs no new one


def test_the_time_cap_kills_the_worker_inside_the_call_and_the_pool_keeps_serving(
    pool: WorkerPool,
) -> None:
    before = pool.stats().timed_out
    start = time.monotonic()
    with pytest.raises(WorkerLimitError, match=r"time is over 1 s, over the cap of 1 s") as err:
        pool.call(nap, 600, timeout=1)
    assert time.monotonic() - start < PROMPTLY
    assert err.value.resource == "time" and isinstance(err.value, InputError)
    assert pool.stats().timed_out == before + 1
    assert pool.call(add, 20, 22, timeout=PROMPTLY) == 42


def test_the_memory_cap_holds_inside_the_call(pool: WorkerPool) -> None:
    with pytest.raises(WorkerLimitError, match="memory is over 100 MB") as err:
        pool.call(hog, 400, timeout=PROMPTLY, memory_mb=100)
    assert err.value.resource == "memory"
    assert pool.call(hog, 50, timeout=PROMPTLY, memory_mb=100) == 50  # under the cap: fine


def test_a_worker_killed_mid_call_is_a_worker_error_and_the_next_call_works(
    pool: WorkerPool, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"

    async def go() -> None:
        call = asyncio.ensure_future(pool.run(nap, 600, str(marker), timeout=600))
        pid = await asyncio.to_thread(_wait_for, marker)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match=r"died during the call .killed by SIGKILL"):
            await asyncio.wait_for(call, PROMPTLY)

    asyncio.run(go())
    assert pool.call(add, 1, 2, timeout=PROMPTLY) == 3


def test_a_segfault_in_native_code_is_a_worker_error_and_the_pool_keeps_serving(
    pool: WorkerPool,
) -> None:
    before = pool.stats().crashed
    with pytest.raises(WorkerError, match="killed by SIGSEGV"):
        pool.call(segfault, timeout=PROMPTLY)
    assert pool.stats().crashed == before + 1
    assert pool.call(add, 5, 6, timeout=PROMPTLY) == 11


def test_a_full_queue_refuses_at_once_with_a_retry_after_hint(tmp_path: Path) -> None:
    small = WorkerPool("test-full", workers=1, max_queue=1)
    try:
        running = small.submit(nap, 600, str(tmp_path / "pid"), timeout=600)
        _wait_for(tmp_path / "pid")
        waiting = small.submit(add, 1, 1, timeout=PROMPTLY)
        start = time.monotonic()
        with pytest.raises(
            OverloadedError, match=r"is full: 1 call.s. running and 1 waiting"
        ) as err:
            small.submit(add, 2, 2, timeout=PROMPTLY)
        assert time.monotonic() - start < 1.0
        assert err.value.retry_after >= 1 and err.value.resource == "test-full"
        assert small.stats().refused == 1
        small.abandon(running)  # its worker is killed; the waiting call then runs
        assert waiting.result(PROMPTLY) == 2
    finally:
        small.shutdown()


def test_a_cancelled_caller_takes_its_call_along(pool: WorkerPool, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    before = pool.stats().abandoned

    async def go() -> None:
        call = asyncio.ensure_future(pool.run(nap, 600, str(marker), timeout=600))
        await asyncio.to_thread(_wait_for, marker)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # the caller's deadline passes while the call runs
                await call
        assert call.cancelled()

    asyncio.run(go())
    pid = int(marker.read_text(encoding="utf-8"))
    deadline = time.monotonic() + PROMPTLY
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the abandoned call's worker still runs"
    assert pool.stats().abandoned == before + 1
    assert pool.call(add, 3, 4, timeout=PROMPTLY) == 7


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_shutdown_kills_running_calls_promptly_and_refuses_new_ones(tmp_path: Path) -> None:
    doomed = WorkerPool("test-shutdown", workers=1, max_queue=2)
    running = doomed.submit(nap, 600, str(tmp_path / "pid"), timeout=600)
    pid = _wait_for(tmp_path / "pid")
    queued = doomed.submit(add, 1, 1, timeout=PROMPTLY)
    start = time.monotonic()
    doomed.shutdown(timeout=0.5)
    assert time.monotonic() - start < PROMPTLY
    with pytest.raises(OverloadedError, match="shut down before"):
        running.result(PROMPTLY)
    with pytest.raises(OverloadedError, match="shut down before"):
        queued.result(PROMPTLY)
    with pytest.raises(OverloadedError, match="is shutting down"):
        doomed.submit(add, 1, 1, timeout=PROMPTLY)
    assert not _alive(pid) and doomed.pids() == []


def test_pools_are_shared_by_name_and_grow_on_demand() -> None:
    first = worker_pool("test-shared", workers=1)
    try:
        assert worker_pool("test-shared", workers=3) is first and first.workers == 3
        assert worker_pool("test-shared", workers=1).workers == 3
    finally:
        first.shutdown()
    assert worker_pool("test-shared") is not first  # a shut-down pool is made again on use
    worker_pool("test-shared").shutdown()


def test_a_target_must_be_importable_by_the_worker(pool: WorkerPool) -> None:
    def nested() -> None:
        return None

    with pytest.raises(ValueError, match="module-level function"):
        pool.submit(nested, timeout=1)
    with pytest.raises(ValueError, match="'module:function'"):
        pool.submit("no_colon", timeout=1)


def test_native_code_aborting_under_the_memory_cap_is_the_memory_cap(pool: WorkerPool) -> None:
    with pytest.raises(WorkerLimitError, match="memory") as err:
        pool.call(abort, timeout=PROMPTLY, memory_mb=256)
    assert err.value.cap == "256 MB"
    with pytest.raises(WorkerError, match=r"died during the call .killed by SIGABRT\)"):
        pool.call(abort, timeout=PROMPTLY)  # no cap: a crash like any other
    assert pool.call(add, 1, 2, timeout=PROMPTLY) == 3
