"""The local engine: N worker processes on this machine (default: one per core), each building
the pipeline once and running several items at a time on its own event loop (LLM calls overlap;
CPU-bound steps use its core), rows streamed back as they finish.

Workers are forked from the batch process once it has imported what they need, while no other
thread runs (promptdag.batch.forking), else fresh interpreters (`python -c ...`, importing only
promptdag and the project, not the program that started the batch). Each talks to the batch
process over one loopback TCP connection (length-prefixed pickles; a worker proves it is one of ours with a random token it
read on its stdin): items and limiter grants go out, rows and limiter requests come back. The
batch-wide limiter (`LimiterCore`) lives in the batch process, so `--rpm`, `--tpm` and
`--concurrency` hold across all workers.

A worker that dies (a crash in native code, the OOM killer) fails only the items it was running
(their rows say so) and is replaced. Workers ignore Ctrl-C (the batch stops them), write their
stdout to stderr (stdout is the batch's), and exit by themselves when the batch process is gone
(their connection closes), even after `kill -9`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import pickle
import secrets
import signal
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

from promptdag.batch.forking import ForkedProcess, can_fork, fork_worker, preload
from promptdag.batch.limits import Grant, LimiterCore
from promptdag.batch.sources import BatchItem
from promptdag.batch.worker import BatchWorker, WorkerLost, WorkerSetup
from promptdag.errors import ConfigError, PromptdagError
from promptdag.gc_tuning import settle_process

__all__ = ["LocalEngine", "worker_main"]

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
_HEADER = struct.Struct("!I")
_ENTRY = "from promptdag.batch.local import worker_main; worker_main()"


def _frame(messages: list[Any]) -> bytes:
    data = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _recv(reader: asyncio.StreamReader) -> list[Any]:
    """The messages of the next frame."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    messages = pickle.loads(await reader.readexactly(size))
    if not isinstance(messages, list):
        raise pickle.UnpicklingError(f"a frame holds a list of messages, not {type(messages)}")
    return messages


class _Outbox:
    """Messages to the other end of a connection, sent together: all those given during one
    pass of the event loop go out as one frame (one pickle, one write), so a worker running
    many LLM calls at once does not pay a system call (and a wake-up of the other process) for
    every limiter request, grant and release."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.queue: list[Any] = []

    def send(self, message: Any) -> None:
        if self.writer.is_closing():
            return
        if not self.queue:
            asyncio.get_running_loop().call_soon(self.flush)
        self.queue.append(message)

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        if queue and not self.writer.is_closing():
            self.writer.write(_frame(queue))


# --- in the worker process --------------------------------------------------------------------


class _StreamRemote:
    """The batch's limiter, reached over the worker's connection."""

    def __init__(self, outbox: _Outbox):
        self.outbox = outbox
        self.waiting: dict[int, asyncio.Future[Grant]] = {}
        self.ids = itertools.count(1)

    async def acquire(self, tokens: int) -> Grant:
        rid = next(self.ids)
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        self.outbox.send(("acquire", rid, tokens))
        return await future

    def granted(self, rid: int, grant: Grant) -> None:
        future = self.waiting.pop(rid, None)
        if future is None or future.done():  # its call was cancelled meanwhile: give it back
            self.release(grant.ticket, 0)
        else:
            future.set_result(grant)

    def release(self, ticket: int, used_tokens: int) -> None:
        self.outbox.send(("release", ticket, used_tokens))


async def _work(port: int, token: str, key: str, setup: WorkerSetup) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_frame([("hello", token, key)]))
    outbox = _Outbox(writer)
    remote = _StreamRemote(outbox) if setup.limits.active else None
    try:
        worker = BatchWorker(setup, remote)
        await worker.start()
        settle_process()
    except Exception as exc:  # reported to the batch, which stops with this message
        writer.write(_frame([("failed", type(exc).__name__, str(exc))]))
        await writer.drain()
        writer.close()
        return
    outbox.send(("ready", worker.name, worker.build_id))
    tasks: dict[int, asyncio.Task[None]] = {}

    async def one(task_id: int, item: BatchItem) -> None:
        try:
            row = await worker.run(item)
            outbox.send(("row", task_id, row))
            await writer.drain()
        finally:
            tasks.pop(task_id, None)

    try:
        stop = False
        while not stop:
            try:
                messages = await _recv(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the batch process is gone: stop
            for message in messages:
                kind = message[0]
                if kind == "item":
                    tasks[message[1]] = asyncio.create_task(one(message[1], message[2]))
                elif kind == "grant" and remote is not None:
                    remote.granted(message[1], message[2])
                elif kind == "cancel" and message[1] in tasks:
                    tasks[message[1]].cancel()
                elif kind == "stop":
                    stop = True
    finally:
        for task in list(tasks.values()):
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await worker.aclose()
        outbox.flush()
        writer.close()


def worker_main() -> None:
    """A worker process's entry point: its port and key in argv, its token and setup (a
    pickle) on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the batch, which stops us
    port, key = int(sys.argv[1]), sys.argv[2]
    token, setup = pickle.load(sys.stdin.buffer)
    asyncio.run(_work(port, token, key, setup))


# --- in the batch process ---------------------------------------------------------------------


@dataclass(eq=False)
class _Proc:
    index: int
    generation: int
    ready: asyncio.Future[str]
    process: asyncio.subprocess.Process | ForkedProcess | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None
    outbox: _Outbox | None = None
    name: str = ""
    lost: bool = False
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"w{self.index}.{self.generation}"

    @property
    def usable(self) -> bool:
        return not self.lost and self.ready.done() and not self.ready.exception()

    def send(self, message: Any) -> None:
        if self.outbox is not None:
            self.outbox.send(message)


class LocalEngine:
    """`await launch()` (the workers start building), `await ready(build_id)`, then
    `await run(item)` for at most `workers * per_worker` items at a time, then `aclose()`."""

    name = "local"

    def __init__(self, setup: WorkerSetup, *, workers: int, per_worker: int):
        self.setup = setup
        self.workers = workers
        self.per_worker = per_worker
        self.core = LimiterCore(setup.limits) if setup.limits.active else None
        self._token = secrets.token_hex(16)
        self._procs: list[_Proc] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._port = 0
        self._build_id: str | None = None
        self._closing = False
        self._restarts = 0
        self.forked = 0  # workers forked from this process (the rest are fresh interpreters)
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Task[None]] = set()

    async def launch(self) -> None:
        """Start the workers (they build meanwhile); once only. While no other thread runs,
        the workers are forked from this process once it has imported what they need
        (`promptdag.batch.forking`); otherwise each is a fresh interpreter."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        fork = can_fork()
        if fork:
            preload(self.setup.http_client)
        for index in range(self.workers):
            await self._spawn(index, 0, fork=fork and can_fork())

    async def ready(self, build_id: str) -> None:
        """Wait until every worker has built its pipeline, and check it is the batch's."""
        await self.launch()
        self._build_id = build_id
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                for proc in list(self._procs):
                    await proc.ready
        except TimeoutError as exc:
            raise PromptdagError(
                f"the local engine's workers did not start within {START_TIMEOUT_S:g} s."
            ) from exc
        for proc in self._procs:
            self._check_build(proc, proc.ready.result())

    def _check_build(self, proc: _Proc, built: str) -> None:
        if self._build_id is not None and built != self._build_id:
            raise ConfigError(
                [
                    f"batch worker {proc.name} built the pipeline as build {built}, not the "
                    f"batch's {self._build_id}: its project, config or libraries differ. Run "
                    "every worker from the same code and environment."
                ]
            )

    async def _spawn(self, index: int, generation: int, *, fork: bool = False) -> _Proc:
        loop = asyncio.get_running_loop()
        proc = _Proc(index, generation, loop.create_future())
        proc.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._procs.append(proc)
        if fork:
            args = (self._port, self._token, proc.key, self.setup)
            sockets = [] if self._server is None else list(self._server.sockets)
            try:
                proc.process = fork_worker(
                    lambda: asyncio.run(_work(*args)), [s.fileno() for s in sockets]
                )
            except OSError:  # fork refused (process or memory limit): a fresh interpreter
                pass
            else:
                self.forked += 1
                self._later(self._watch(proc))
                return proc
        proc.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _ENTRY,
            str(self._port),
            proc.key,
            stdin=asyncio.subprocess.PIPE,
            stdout=_fd(sys.stderr),
        )
        assert proc.process.stdin is not None
        proc.process.stdin.write(pickle.dumps((self._token, self.setup)))
        with contextlib.suppress(ConnectionError):  # it died at once: _exited reports it
            await proc.process.stdin.drain()
        proc.process.stdin.close()
        self._later(self._watch(proc))
        return proc

    async def _watch(self, proc: _Proc) -> None:
        assert proc.process is not None
        await proc.process.wait()
        self._exited(proc)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await asyncio.wait_for(_recv(reader), timeout=30)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, pickle.PickleError):
            writer.close()
            return
        ok = len(hello) == 1 and isinstance(hello[0], tuple) and len(hello[0]) == 3
        if (
            not ok
            or hello[0][0] != "hello"
            or not hmac.compare_digest(str(hello[0][1]), self._token)
        ):
            writer.close()
            return
        key = hello[0][2]
        found = [p for p in self._procs if p.key == key and p.writer is None and not p.lost]
        if not found:
            writer.close()
            return
        proc = found[0]
        proc.writer, proc.outbox = writer, _Outbox(writer)
        try:
            while True:
                for message in await _recv(reader):
                    self._handle(proc, message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker exited; _exited handles it once the process is gone
        finally:
            writer.close()

    def _handle(self, proc: _Proc, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "row":
            future = proc.pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == "acquire" and self.core is not None:
            grant = self.core.try_acquire(proc.key, message[2])
            if grant is None:  # no slot free: wait for one
                self._later(self._grant(proc, message[1], message[2]))
            else:
                proc.send(("grant", message[1], grant))
        elif kind == "release" and self.core is not None:
            self.core.release(message[1], message[2])
        elif kind == "ready":
            proc.name = message[1]
            try:
                self._check_build(proc, message[2])
            except ConfigError as exc:
                proc.ready.set_exception(exc)
                self._kill(proc)
                return
            proc.ready.set_result(message[2])
            self._later(self._notify())
        elif kind == "failed" and not proc.ready.done():
            proc.ready.set_exception(
                ConfigError([f"a batch worker could not build the pipeline: {message[2]}"])
            )

    async def _grant(self, proc: _Proc, rid: int, tokens: int) -> None:
        assert self.core is not None
        grant = await self.core.acquire(proc.key, tokens)
        if proc.lost:
            self.core.release(grant.ticket, tokens)
        else:
            proc.send(("grant", rid, grant))

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _exited(self, proc: _Proc) -> None:
        proc.lost = True
        proc.gone.set()
        assert proc.process is not None
        if self.core is not None:
            self.core.release_worker(proc.key)
        what = f"the worker process {proc.process.pid} exited (code {proc.process.returncode})"
        if not proc.ready.done():
            proc.ready.set_exception(
                PromptdagError(f"{what} before it was ready; its output above says why.")
            )
        for future in proc.pending.values():
            if not future.done():
                future.set_exception(WorkerLost(f"{what} while running this item."))
        proc.pending.clear()
        was_working = proc.ready.done() and not proc.ready.exception()
        if was_working and not self._closing and self._restarts < 2 * self.workers:
            self._restarts += 1
            self._later(self._spawn(proc.index, proc.generation + 1))
        self._later(self._notify())

    def _kill(self, proc: _Proc) -> None:
        if proc.process is not None and proc.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.kill()

    async def _pick(self) -> _Proc:
        async with self._changed:
            while True:
                usable = [p for p in self._procs if p.usable]
                if usable:
                    return min(usable, key=lambda p: len(p.pending))
                if not any(not p.lost for p in self._procs):
                    raise PromptdagError(
                        "every local batch worker has died and the restart limit is reached; "
                        "the rows so far are kept (run again with --resume)."
                    )
                await self._changed.wait()

    async def run(self, item: BatchItem) -> dict[str, Any]:
        proc = await self._pick()
        task_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        proc.pending[task_id] = future
        proc.send(("item", task_id, item))
        try:
            return await future
        except asyncio.CancelledError:
            proc.pending.pop(task_id, None)
            proc.send(("cancel", task_id))
            raise

    async def aclose(self) -> None:
        """Stop every worker (their items in flight are cancelled), then the server."""
        self._closing = True
        for proc in self._procs:
            if not proc.usable:  # still starting (the batch stopped before it ran): no items
                self._kill(proc)
            proc.send(("stop",))
        for proc in self._procs:
            if proc.process is None:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await proc.gone.wait()
            if not proc.gone.is_set():
                self._kill(proc)
                await proc.gone.wait()
        for proc in self._procs:
            for future in proc.pending.values():
                future.cancel()
            if proc.writer is not None:
                proc.writer.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            self._server = None


def _fd(stream: Any) -> int | None:
    """The stream's file descriptor, if it has one (a test's capture may not)."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
