"""Running a project's own functions in worker processes that can be killed.

A `WorkerPool` runs `module:function` calls (or module-level functions) in long-lived worker
processes, one call at a time per worker, each call under caps that hold *inside* the call:

- a wall-clock limit: the parent waits for the answer at most `timeout` seconds from the moment
  the worker starts the call, then kills the worker (SIGKILL) and starts a fresh one;
- a memory limit: the worker runs the call under RLIMIT_AS (Linux: its address space may grow by
  at most `memory_mb` over its size when the call starts), so an allocation past it fails and
  the call reports the cap (also when native code aborts on the failed allocation: SIGABRT
  under a cap counts as the cap); the worker is then replaced;
- a bounded queue in front: when every worker is busy and `max_queue` calls are waiting, `run`
  raises `OverloadedError` at once, with a retry-after hint;
- a caller that is cancelled, or whose deadline passes, takes its call along: a waiting call
  leaves the queue, a running one has its worker killed;
- a worker that dies (a segfault in native code, SIGKILL, the OOM killer) is a `WorkerError`
  for its call only; the pool starts another worker and keeps serving;
- `shutdown(timeout)` refuses new calls, lets running ones finish for up to `timeout` seconds,
  then kills every worker: what was cut gets `OverloadedError`, so a server exits on time.

Workers are fresh interpreters (`python -c`, with the parent's `sys.path`; never a fork of a
threaded parent, and no re-import of its `__main__`); each call names its project's root, which
goes on `sys.path` before the function is imported (`call_in_project` does the same in-process).
On Linux a worker dies with its parent, even when the parent is SIGKILLed.
Pools are shared per process by name (`worker_pool`); `shutdown_pools` stops them all and runs
at interpreter exit. Calls block nothing: `await pool.run(...)` waits on a future that one
dispatcher thread per worker resolves, and `pool.call(...)` is the blocking form.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from promptdag.errors import OverloadedError, PromptdagError, WorkerError, WorkerLimitError

__all__ = [
    "PoolStats",
    "WorkerPool",
    "ashutdown_pools",
    "call_in_project",
    "project_root_of",
    "shutdown_pools",
    "worker_pool",
]

# Bytes arguments at least this large travel as raw frames (no pickled copy in the parent).
_BLOB_MIN = 64 * 1024
_MIB = 1024 * 1024


def project_root_of(module: ModuleType) -> str:
    """The directory a module's top-level package is imported from (the project root)."""
    depth = module.__name__.count(".") + (
        1 if Path(module.__file__ or "").name == "__init__.py" else 0
    )
    return str(Path(module.__file__ or "").resolve().parents[depth])


def call_in_project(root: str, ref: str, *args: Any) -> Any:
    """Import `module:function` from the project at `root` and call it with `args`."""
    return _resolve(root, ref)(*args)


def _resolve(root: str | None, ref: str) -> Callable[..., Any]:
    if root and root not in sys.path:
        sys.path.insert(0, root)
    module_name, _, name = ref.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module_name), name)
    return fn


# --- the worker process ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """Stands in an argument list for a large bytes argument sent as its own frame."""

    index: int


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the thread that started it (a pool's dispatcher
    in the parent) ends, even by SIGKILL; a parent gone already means exit now."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def _address_space() -> int | None:
    """This process's virtual size in bytes, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit_memory(memory_mb: float | None) -> bool:
    """RLIMIT_AS = the current size + `memory_mb`; False where that cannot be set."""
    if not memory_mb:
        return False
    import resource

    size = _address_space()
    if size is None:
        return False
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = size + int(memory_mb * _MIB)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ValueError, OSError):
        return False
    return True


def _unlimit_memory() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def _portable(exc: BaseException, ref: str) -> BaseException:
    """`exc` if it survives pickling, else a WorkerError that says what it was; an unexpected
    exception carries the worker's traceback as a note."""
    if not isinstance(exc, PromptdagError):
        exc.add_note("In the worker process:\n" + "".join(traceback.format_exception(exc)))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return WorkerError(f"{ref} raised {type(exc).__name__}: {exc}", ref=ref)
    return exc


def _call(conn: Connection, message: tuple[Any, ...]) -> tuple[Any, ...]:
    """One call in the worker: import the function (its project's root first on sys.path, so
    arguments of the project's own types can be unpickled), acknowledge, then run it under the
    memory cap."""
    _, ref, root, blobs, memory_mb = message
    packed = conn.recv_bytes()
    frames = [conn.recv_bytes() for _ in range(blobs)]
    try:
        fn = _resolve(root, ref)
        args = [frames[a.index] if isinstance(a, _Blob) else a for a in pickle.loads(packed)]
    except BaseException as exc:  # an import error is the call's error, for its caller
        return ("raised", _portable(exc, ref))
    del frames, packed
    conn.send(("started",))
    limited = _limit_memory(memory_mb)
    try:
        return ("ok", fn(*args))
    except MemoryError:
        del args
        return ("memory", limited)
    except BaseException as exc:  # whatever the call raised goes back to its caller
        return ("raised", _portable(exc, ref))
    finally:
        if limited:
            _unlimit_memory()


def _serve(fd: int, parent: int) -> None:
    """A worker's main: one call per message on the socket `fd` until it closes or a None
    arrives. The parent starts it as `python -c` (no multiprocessing bootstrap, so the parent's
    `__main__` is never imported again and needs no `if __name__ == "__main__"` guard)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        reply = _call(conn, message)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send(("raised", WorkerError(f"{message[1]} returned an unpicklable value: {exc}")))
        del reply


# --- the parent -------------------------------------------------------------------------------

_BOOT = (
    "import json, sys; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from promptdag.workers import _serve; _serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(theirs.fileno())]
        try:
            with theirs:
                # A child of a dispatcher thread: its death signal fires if that thread ends.
                self.process = subprocess.Popen(
                    [*argv, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=2,  # a worker's prints go to stderr, never into the parent's output
                    pass_fds=(theirs.fileno(),),
                )
        except BaseException:
            ours.close()
            raise
        self.conn = Connection(ours.detach())
        self.calls = 0
        self.killed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL (idempotent); the dispatcher reaps the process."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()  # a no-op once the process is reaped (its pid may be reused)

    def stop(self) -> None:
        """Kill, reap and close."""
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.conn.close()

    def exited(self) -> bool:
        return self.process.poll() is not None

    def death(self) -> str:
        """How the process ended, in words."""
        try:
            code = self.process.wait(2)
        except subprocess.TimeoutExpired:
            return "its pipe closed"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"


@dataclass(eq=False)
class _Task:
    ref: str
    root: str | None
    args: tuple[Any, ...]
    timeout: float | None
    memory_mb: float | None
    future: _CallFuture = field(init=False)
    state: str = "queued"  # queued → running → done
    worker: _Worker | None = None
    cut: BaseException | None = None  # why the running call was cut (its worker killed)
    started: bool = False  # the worker has the function imported and is running it

    def __post_init__(self) -> None:
        self.future = _CallFuture(self)


class _CallFuture(Future[Any]):
    """A call's future, which knows its call (so `abandon` can find it)."""

    def __init__(self, task: _Task):
        super().__init__()
        self.task = task


@dataclass(frozen=True)
class PoolStats:
    """A pool's state and counters since it started."""

    name: str
    workers: int
    busy: int
    queued: int
    max_queue: int
    completed: int
    failed: int
    timed_out: int
    over_memory: int
    crashed: int
    refused: int
    abandoned: int


def _target(fn: str | Callable[..., Any], root: str | None) -> tuple[str, str | None]:
    if isinstance(fn, str):
        if ":" not in fn:
            raise ValueError(f"worker target {fn!r} must be 'module:function'.")
        return fn, root
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        raise ValueError(
            f"a worker imports the function it runs: {qualname or fn!r} must be a module-level "
            "function of an importable module (not __main__, not nested)."
        )
    return f"{module}:{qualname}", root or project_root_of(sys.modules[module])


class WorkerPool:
    """Worker processes that run one call each at a time, under a time and a memory cap, behind
    a bounded queue. Thread-safe; usable from any event loop and from plain threads."""

    def __init__(
        self,
        name: str = "promptdag",
        *,
        workers: int = 1,
        max_queue: int | None = None,
        max_calls_per_worker: int = 500,
        start_timeout: float = 60.0,
    ):
        if workers < 1:
            raise ValueError(f"workers={workers}: a pool needs at least one worker.")
        self.name = name
        self.max_queue = 4 * workers if max_queue is None else max_queue
        self.max_calls_per_worker = max_calls_per_worker
        self.start_timeout = start_timeout
        self._lock = threading.Condition()
        self._queue: deque[_Task] = deque()
        self._running: set[_Task] = set()
        self._slots: list[_Worker | None] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._mean_s = 1.0  # running mean of call durations, for the retry-after hint
        self._counts = dict.fromkeys(
            ("completed", "failed", "timed_out", "over_memory", "crashed", "refused", "abandoned"),
            0,
        )
        self.resize(workers)

    # -- sizing and state

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def closed(self) -> bool:
        return self._closing

    def resize(self, workers: int) -> None:
        """Grow to `workers` dispatchers (a pool never shrinks while it runs)."""
        with self._lock:
            while len(self._threads) < workers:
                index = len(self._threads)
                self._slots.append(None)
                thread = threading.Thread(
                    target=self._dispatch,
                    args=(index,),
                    name=f"{self.name}-dispatch-{index}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def pids(self) -> list[int]:
        """The worker processes alive now."""
        with self._lock:
            return [w.pid for w in self._slots if w is not None and w.pid is not None]

    def busy_pids(self) -> list[int]:
        """The worker processes inside a call now (its function imported and started)."""
        with self._lock:
            return [
                t.worker.pid
                for t in self._running
                if t.started and t.worker is not None and t.worker.pid
            ]

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                name=self.name,
                workers=self.workers,
                busy=len(self._running),
                queued=len(self._queue),
                max_queue=self.max_queue,
                **self._counts,
            )

    def retry_after(self) -> int:
        """Seconds until a refused call would likely be admitted (at least 1)."""
        with self._lock:
            backlog = len(self._queue) + len(self._running)
            return max(1, math.ceil(self._mean_s * backlog / max(1, self.workers)))

    # -- calls

    def submit(
        self,
        fn: str | Callable[..., Any],
        *args: Any,
        timeout: float | None,
        memory_mb: float | None = None,
        root: str | None = None,
    ) -> Future[Any]:
        """Queue a call and return its future; `OverloadedError` at once when the queue is full.
        `timeout` counts from the moment a worker starts the call (None: no limit)."""
        ref, root = _target(fn, root)
        task = _Task(ref, root, args, timeout, memory_mb)
        with self._lock:
            if self._closing:
                self._counts["refused"] += 1
                raise OverloadedError(
                    f"worker pool {self.name!r} is shutting down.",
                    resource=self.name,
                    retry_after=5,
                )
            if len(self._queue) + len(self._running) >= self.workers + self.max_queue:
                self._counts["refused"] += 1
                wait = self.retry_after()
                raise OverloadedError(
                    f"worker pool {self.name!r} is full: {len(self._running)} call(s) running and "
                    f"{len(self._queue)} waiting (the cap). Retry in about {wait} s.",
                    resource=self.name,
                    retry_after=wait,
                )
            self._queue.append(task)
            self._lock.notify()
        return task.future

    async def run(
        self,
        fn: str | Callable[..., Any],
        *args: Any,
        timeout: float | None,
        memory_mb: float | None = None,
        root: str | None = None,
    ) -> Any:
        """`fn(*args)` in a worker, awaited without blocking the event loop. Cancelling the
        awaiting task (a deadline, a client gone) takes the call out of the queue or kills its
        worker."""
        future = self.submit(fn, *args, timeout=timeout, memory_mb=memory_mb, root=root)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def call(
        self,
        fn: str | Callable[..., Any],
        *args: Any,
        timeout: float | None,
        memory_mb: float | None = None,
        root: str | None = None,
    ) -> Any:
        """The blocking form of `run`; an interrupt (Ctrl-C) kills the call's worker."""
        future = self.submit(fn, *args, timeout=timeout, memory_mb=memory_mb, root=root)
        try:
            return future.result()
        except BaseException:
            self.abandon(future)
            raise

    def abandon(self, future: Future[Any]) -> None:
        """Nobody waits for this call any more: drop it from the queue, or kill its worker."""
        if not isinstance(future, _CallFuture):
            return
        task = future.task
        with self._lock:
            if task.state == "queued":
                with contextlib.suppress(ValueError):
                    self._queue.remove(task)
                task.state = "done"
                self._counts["abandoned"] += 1
                future.cancel()
            elif task.state == "running" and task.worker is not None and task.cut is None:
                self._counts["abandoned"] += 1
                task.cut = FutureCancelledError(f"{task.ref}: the caller stopped waiting")
                task.worker.kill()

    # -- shutdown

    def shutdown(self, timeout: float = 0.0) -> None:
        """Refuse new calls, fail waiting ones, give running ones up to `timeout` seconds, then
        kill every worker; calls cut short raise `OverloadedError`. Idempotent."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._closing = True
            while self._queue:
                task = self._queue.popleft()
                task.state = "done"
                if task.future.set_running_or_notify_cancel():
                    task.future.set_exception(self._cut_by_shutdown(task))
            self._lock.notify_all()
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            for task in self._running:
                if task.cut is None:
                    task.cut = self._cut_by_shutdown(task)
            for worker in self._slots:
                if worker is not None:
                    worker.kill()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)

    async def aclose(self, timeout: float = 0.0) -> None:
        """`shutdown` from async code, off the event loop."""
        await asyncio.to_thread(self.shutdown, timeout)

    def _cut_by_shutdown(self, task: _Task) -> OverloadedError:
        return OverloadedError(
            f"worker pool {self.name!r} shut down before {task.ref} finished. Retry the request.",
            resource=self.name,
            retry_after=5,
        )

    # -- the dispatcher threads

    def _next(self) -> _Task | None:
        with self._lock:
            while True:
                if self._closing:
                    return None
                while self._queue:
                    task = self._queue.popleft()
                    if task.future.set_running_or_notify_cancel():
                        task.state = "running"
                        self._running.add(task)
                        return task
                self._lock.wait()

    def _dispatch(self, index: int) -> None:
        try:
            while (task := self._next()) is not None:
                started = time.monotonic()
                try:
                    outcome: tuple[bool, Any] = (True, self._execute(index, task))
                except BaseException as exc:  # delivered to the caller through the future
                    outcome = (False, exc)
                self._finish(task, outcome, time.monotonic() - started)
        finally:
            with self._lock:
                worker, self._slots[index] = self._slots[index], None
            if worker is not None:
                worker.stop()

    def _finish(self, task: _Task, outcome: tuple[bool, Any], seconds: float) -> None:
        ok, value = outcome
        with self._lock:
            task.state = "done"
            self._running.discard(task)
            self._mean_s = 0.8 * self._mean_s + 0.2 * seconds
            self._counts["completed" if ok else "failed"] += 1
            self._lock.notify_all()
        if ok:
            task.future.set_result(value)
        else:
            task.future.set_exception(value)

    def _worker(self, index: int) -> _Worker:
        with self._lock:
            worker = self._slots[index]
        if worker is not None and not worker.exited() and not worker.killed:
            return worker
        if worker is not None:
            worker.stop()
        try:
            fresh = _Worker()
        except OSError as exc:
            raise WorkerError(f"worker pool {self.name!r} cannot start a worker: {exc}") from exc
        with self._lock:
            self._slots[index] = fresh
            if self._closing:
                fresh.kill()
        return fresh

    def _retire(self, index: int, worker: _Worker) -> None:
        with self._lock:
            if self._slots[index] is worker:
                self._slots[index] = None
        worker.stop()

    def _execute(self, index: int, task: _Task) -> Any:
        """Run one task on this dispatcher's worker; a worker that dies before it started the
        call (killed while idle) is replaced once and the call resent."""
        for attempt in (1, 2):
            worker = self._worker(index)
            with self._lock:
                task.worker = worker
                if task.cut is not None:  # shut down while the worker started
                    raise task.cut
            if self._send(worker, task):
                task.started = True
                break
            death = worker.death()
            self._retire(index, worker)
            if task.cut is not None:
                raise task.cut
            if attempt == 2:
                raise WorkerError(
                    f"{task.ref}: the worker process died before starting the call ({death}).",
                    ref=task.ref,
                )
        reply = self._answer(index, worker, task)
        worker.calls += 1
        # A call that raised leaves its worker healthy (the exception came back as a message);
        # one that ran out of memory may have left native state behind, so that worker goes.
        if reply[0] == "memory" or worker.calls >= self.max_calls_per_worker:
            self._retire(index, worker)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "memory":
            with self._lock:
                self._counts["over_memory"] += 1
            if task.memory_mb is None or not reply[1]:
                raise WorkerError(f"{task.ref} ran out of memory in its worker.", ref=task.ref)
            cap = f"{task.memory_mb:g} MB"
            raise WorkerLimitError("memory", f"over {cap}", cap, task.ref)
        raise reply[1]

    def _send(self, worker: _Worker, task: _Task) -> bool:
        """Send the call and wait for the worker to import its function; False if it died first."""
        packed: list[Any] = []
        blobs: list[bytes | bytearray] = []
        for a in task.args:
            if isinstance(a, bytes | bytearray) and len(a) >= _BLOB_MIN:
                packed.append(_Blob(len(blobs)))
                blobs.append(a)
            else:
                packed.append(a)
        try:
            payload = pickle.dumps(packed, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the caller's arguments cannot travel: its error
            raise WorkerError(f"{task.ref}: its arguments cannot be pickled: {exc}") from exc
        try:
            worker.conn.send(("call", task.ref, task.root, len(blobs), task.memory_mb))
            worker.conn.send_bytes(payload)
            for blob in blobs:
                worker.conn.send_bytes(blob)
            if not worker.conn.poll(self.start_timeout):
                worker.kill()
                raise WorkerError(
                    f"{task.ref}: the worker did not start the call within {self.start_timeout:g} s "
                    "(importing the function hung).",
                    ref=task.ref,
                )
            reply = worker.conn.recv()
        except (EOFError, OSError):
            return False
        if reply[0] == "started":
            return True
        raise reply[1]  # the import failed

    def _answer(self, index: int, worker: _Worker, task: _Task) -> tuple[Any, ...]:
        """Wait for the call's reply under its time cap; kill the worker past it."""
        reply: tuple[Any, ...] | None = None
        try:
            answered = worker.conn.poll(task.timeout)
            if answered:
                reply = worker.conn.recv()
        except (EOFError, OSError):
            answered = True  # the worker died: the pipe closed
        if task.cut is not None:  # killed on purpose: the caller left, or a shutdown
            self._retire(index, worker)
            raise task.cut
        if not answered:
            self._retire(index, worker)
            with self._lock:
                self._counts["timed_out"] += 1
            cap = f"{task.timeout:g} s"
            raise WorkerLimitError("time", f"over {cap}", cap, task.ref)
        if reply is None:
            death = worker.death()
            self._retire(index, worker)
            if task.memory_mb and worker.process.returncode == -signal.SIGABRT:
                # Native code whose allocation fails under the cap aborts (C++ std::bad_alloc
                # → std::terminate → SIGABRT) where Python code would raise MemoryError.
                with self._lock:
                    self._counts["over_memory"] += 1
                cap = f"{task.memory_mb:g} MB"
                raise WorkerLimitError("memory", f"over {cap}", cap, task.ref)
            with self._lock:
                self._counts["crashed"] += 1
            memory = f"; its memory cap was {task.memory_mb:g} MB" if task.memory_mb else ""
            raise WorkerError(
                f"{task.ref}: the worker process died during the call ({death}{memory}).",
                ref=task.ref,
            )
        return reply


# --- pools shared per process -----------------------------------------------------------------

_pools: dict[str, WorkerPool] = {}
_pools_lock = threading.Lock()


def worker_pool(name: str, *, workers: int = 1, max_queue: int | None = None) -> WorkerPool:
    """This process's pool called `name`, made on first use (again after a shutdown) and grown
    to at least `workers`. `max_queue` applies when the pool is made (default: 4 per worker)."""
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None or pool.closed:
            pool = _pools[name] = WorkerPool(name, workers=workers, max_queue=max_queue)
        elif workers > pool.workers:
            pool.resize(workers)
        return pool


def shutdown_pools(timeout: float = 0.0) -> None:
    """Shut every pool of this process down: running calls get up to `timeout` seconds between
    them, then their workers are killed. Runs at interpreter exit too."""
    deadline = time.monotonic() + max(0.0, timeout)
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.shutdown(max(0.0, deadline - time.monotonic()))


async def ashutdown_pools(timeout: float = 0.0) -> None:
    """`shutdown_pools` from async code (a server's shutdown), off the event loop."""
    await asyncio.to_thread(shutdown_pools, timeout)


atexit.register(shutdown_pools)
