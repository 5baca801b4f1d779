"""Local batch workers made by `fork` from the batch process, which has imported the libraries
a worker needs: a worker then skips the second or so that a fresh interpreter spends importing
Hamilton, pandas and the openai SDK (on two cores, about a tenth of a 40-PDF batch).

A fork is safe only while no other thread runs (a thread may hold a lock, the import lock or
a logging handler's, that would stay held forever in the child), so `can_fork` says no as soon
as one does; the engine then starts a fresh interpreter, as it always did, and so it does for a
worker that replaces a lost one. The child leaves the batch's event loop, signal handlers and
buffered output alone and exits with `os._exit` (nothing of the batch's is flushed or finalized
twice). `ForkedProcess` gives the engine what it uses of `asyncio.subprocess.Process`, its exit
watched through a pidfd on the event loop (no thread)."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

__all__ = ["ForkedProcess", "can_fork", "fork_worker", "preload"]

# What building and running a pipeline imports that a fresh worker would import again.
_LIBRARIES = ("pandas", "hamilton.async_driver", "promptdag.factory", "promptdag.batch.worker")
_SDK = ("openai", "openai.types.chat")


def can_fork() -> bool:
    """True when this process may fork a worker: Linux (fork and pidfd) and no other thread."""
    return (
        sys.platform == "linux"
        and hasattr(os, "pidfd_open")
        and threading.active_count() == 1
        and os.environ.get("PROMPTDAG_BATCH_FORK", "1") != "0"
    )


def preload(http_client: str) -> None:
    """Import, in the batch process, what every worker would import (the SDK included: the
    workers make the calls), so that forked workers share it instead."""
    for name in (*_LIBRARIES, *_SDK, *(("aiohttp",) if http_client == "aiohttp" else ())):
        importlib.import_module(name)


class ForkedProcess:
    """A forked worker: `pid`, `returncode`, `await wait()`, `kill()`."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


def fork_worker(main: Callable[[], None], close_fds: list[int]) -> ForkedProcess:
    """Fork a child that runs `main()` (which starts its own event loop) and exits; its stdout
    goes to stderr, `close_fds` (the batch's listening sockets) are closed in it."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return ForkedProcess(pid)
    code = 70
    try:
        signal.set_wakeup_fd(-1)  # the batch loop's: a signal here must not wake it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the batch, which stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in close_fds:
            os.close(fd)
        os.dup2(2, 1)
        main()
        code = 0
    except SystemExit as exc:  # as the interpreter would exit
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # the child's own failure, shown before it exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
