"""A helper process of the gate that answers requests, one JSON object per line each way:
requests `{...}` in, replies `{"ok": value}` or `{"error": message}` out, in order.

`Worker.fork(serve)` forks the calling process: the child starts with everything already
imported (milliseconds instead of seconds), closes every file descriptor but its own pipes,
writes its stdout and stderr to a log whose tail explains a failure, and never returns into the
caller's code (it ends with `os._exit`, so the parent's atexit hooks and temporary-directory
finalizers never run twice). `Worker.spawn(cmd)` starts a fresh interpreter speaking the same
protocol on its stdin and stdout, for where fork cannot be used (`can_fork`)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from promptdag.errors import GateError, PromptdagError

__all__ = ["Worker", "answer", "can_fork", "reply", "requests", "serve_stdio"]

_EXIT_WAIT_S = 30.0

Serve = Callable[[IO[bytes], IO[bytes]], int]


def can_fork() -> bool:
    """Whether this process may fork a worker: POSIX, and no other thread running (a thread
    holding a lock at the fork would leave the child waiting on it forever)."""
    return hasattr(os, "fork") and threading.active_count() == 1


class Worker:
    """The parent's side of one worker process."""

    def __init__(
        self, name: str, requests: int, replies: int, log: Path, pid: int, proc: Any = None
    ) -> None:
        self.name = name
        self.forked = proc is None
        self._requests, self._replies, self._log = requests, replies, log
        self._pid, self._proc = pid, proc
        self._buffer = b""
        self._pending = 0  # replies owed
        self._closed = False
        self._exit_status: int | None = None

    @classmethod
    def fork(cls, name: str, serve: Serve, *, pending: int = 0) -> Worker:
        """Fork a child running `serve(inbox, outbox)`; `pending` replies it sends unasked."""
        log_fd, log_name = tempfile.mkstemp(prefix=f"promptdag-{name}-", suffix=".log")
        to_child, requests = os.pipe()
        replies, from_child = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # What is allocated so far (the imported modules) is never scanned by the collector
        # again, in either process: a collection would write to every page and copy it.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: never returns from here
            code = 70
            try:
                _only_fds(to_child, from_child, log_fd)
                with os.fdopen(to_child, "rb") as inbox, os.fdopen(from_child, "wb") as outbox:
                    code = serve(inbox, outbox)
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os._exit(code)
        for fd in (to_child, from_child, log_fd):
            os.close(fd)
        worker = cls(name, requests, replies, Path(log_name), pid)
        worker._pending = pending
        return worker

    @classmethod
    def spawn(
        cls, name: str, cmd: list[str], cwd: Path, env: dict[str, str], *, pending: int = 0
    ) -> Worker:
        """Start `cmd` as a fresh process serving the protocol on its stdin and stdout."""
        log_fd, log_name = tempfile.mkstemp(prefix=f"promptdag-{name}-", suffix=".log")
        with os.fdopen(log_fd, "wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        assert proc.stdin is not None and proc.stdout is not None
        worker = cls(
            name, proc.stdin.fileno(), proc.stdout.fileno(), Path(log_name), proc.pid, proc
        )
        worker._pending = pending
        return worker

    def request(self, message: dict[str, Any], timeout: float, doing: str) -> dict[str, Any]:
        """Send `message` and return its reply (`{"ok": ...}` or `{"error": ...}`)."""
        self.send(message, doing)
        return self.receive(timeout, doing)

    def send(self, message: dict[str, Any], doing: str) -> None:
        data = json.dumps(message).encode() + b"\n"
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except OSError as exc:
            raise self._ended(doing) from exc
        self._pending += 1

    def receive(self, timeout: float, doing: str) -> dict[str, Any]:
        """The next reply; GateError when it does not come within `timeout` seconds (the
        process is killed) or the process ended."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                self.kill()
                raise GateError(f"{doing} took over {timeout:g} s.")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise self._ended(doing)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self._pending -= 1
        data: dict[str, Any] = json.loads(line)
        return data

    def close(self) -> None:
        """End the process: at once when it still owes a reply, else once it has read the end
        of its requests and finished."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self.kill()
        self._close_fd(self._requests)  # the end of the requests: the process exits
        if not self._wait(_EXIT_WAIT_S):
            self.kill()
            self._wait(_EXIT_WAIT_S)
        self._close_fd(self._replies)
        self._log.unlink(missing_ok=True)

    def _ended(self, doing: str) -> GateError:
        self._wait(_EXIT_WAIT_S)
        return GateError(
            f"{doing}: the {self.name} process ended ({self._status()}): {self.tail()}"
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        self._pending = 0

    def tail(self, lines: int = 6) -> str:
        """The last meaningful lines the process wrote to its log (box borders dropped)."""
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no log"
        kept = [ln.strip(" │╭╮╰╯─") for ln in text.strip().splitlines()]
        return " / ".join([ln for ln in kept if ln][-lines:]) or "it wrote nothing"

    def _close_fd(self, fd: int) -> None:
        stream = None
        if self._proc is not None:
            stream = self._proc.stdin if fd == self._requests else self._proc.stdout
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
            else:
                os.close(fd)

    def _wait(self, timeout: float) -> bool:
        """Whether the process has ended (and is reaped) within `timeout` seconds."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid:
                self._exit_status = status
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def _status(self) -> str:
        if self._proc is not None:
            code = self._proc.returncode
        else:
            status = self._exit_status
            code = None if status is None else os.waitstatus_to_exitcode(status)
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit {code}"

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _only_fds(inbox: int, outbox: int, log: int) -> None:
    """In a forked child: stdin from /dev/null, stdout and stderr to the log, and every other
    descriptor of the parent closed (another worker's pipe held open here would keep that
    worker from ever seeing the end of its requests)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    keep = sorted({0, 1, 2, inbox, outbox})
    for low, high in zip(keep, [*keep[1:], _max_fd()], strict=True):
        os.closerange(low + 1, high)
    # sys.stdout and sys.stderr may have been replaced (a test runner's capture, now closed).
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def _max_fd() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return int(os.sysconf("SC_OPEN_MAX"))


# --- the child's side ----------------------------------------------------------------------------


def answer(work: Callable[[], Any]) -> dict[str, Any]:
    """`{"ok": value}`, or `{"error": why}`: the parent raises it as a GateError naming it, and
    the traceback goes to the log."""
    try:
        return {"ok": work()}
    except PromptdagError as exc:
        return {"error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def reply(outbox: IO[bytes], message: dict[str, Any]) -> None:
    outbox.write(json.dumps(message, default=str).encode() + b"\n")
    outbox.flush()


def requests(inbox: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The requests, until the parent closes its end."""
    for line in inbox:
        request: dict[str, Any] = json.loads(line)
        yield request


def serve_stdio(serve: Serve) -> None:
    """Run `serve` on this process's stdin and stdout (a spawned worker); what the code it runs
    prints goes to stderr (the log), never into the replies."""
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.exit(serve(sys.stdin.buffer, outbox))
