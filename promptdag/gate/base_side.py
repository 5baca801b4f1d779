"""The base ref's side of the gate, in a process of its own so that the base tree's modules never
mix with the head's: it takes the base's prompt snapshot at once, then runs the base's eval
cases on request (the base's suite, checks and pipeline: the bar).

The process is forked from the gate's own process after the framework and its heavy libraries
(Hamilton, pandas, the openai SDK) are imported and before any project module is, so it starts in
milliseconds instead of importing them again, and runs the framework code a fresh interpreter
would (the installed promptdag, never a copy inside the base tree). The child moves into the
base tree, drops the head's directories from `sys.path`, and writes its stdout and stderr to a
log whose tail explains a failure. Where fork cannot be used (no `os.fork`, other threads
running, or a module of the head project already imported), a fresh interpreter
(`python -P -m promptdag.gate.base_side`) serves the same protocol: one JSON object per line,
requests on its stdin, replies (`{"ok": value}` or `{"error": message}`) on its stdout."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from promptdag.contract import load_contract
from promptdag.errors import GateError, PromptdagError

__all__ = ["BaseSide"]

SNAPSHOT_TIMEOUT_S = 600.0
CASES_TIMEOUT_S = 1800.0
_EXIT_WAIT_S = 30.0


class BaseSide:
    """The base tree's process. `snapshot()` returns the base's snapshot (taken as soon as the
    process starts); `run_cases(...)` runs cases of a base suite there; `close()` ends it."""

    def __init__(
        self, root: Path, requests: int, replies: int, log: Path, pid: int, proc: Any = None
    ) -> None:
        self.root = root
        self.forked = proc is None
        self._requests, self._replies, self._log = requests, replies, log
        self._pid, self._proc = pid, proc
        self._buffer = b""
        self._pending = 1  # the snapshot is on its way unasked
        self._snapshot: dict[str, Any] | None = None
        self._closed = False
        self._exit_status: int | None = None

    @classmethod
    def start(cls, root: Path, data_dir: Path, head_root: Path) -> BaseSide:
        """The process for the project at `root` (the base worktree), with the response cache in
        `data_dir`; `head_root` is the project the gate runs in (kept off the child's path)."""
        fd, name = tempfile.mkstemp(prefix="promptdag-base-", suffix=".log")
        log = Path(name)
        if _can_fork(head_root):
            return cls._fork(root, data_dir, head_root, fd, log)
        env = {k: v for k, v in os.environ.items() if k != "PROMPTDAG_PROJECT"}
        env["PROMPTDAG_DATA_DIR"] = str(data_dir)
        # -P: the tree's own directories never shadow the installed promptdag on sys.path.
        cmd = [sys.executable, "-P", "-m", "promptdag.gate.base_side", str(root)]
        with os.fdopen(fd, "wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        assert proc.stdin is not None and proc.stdout is not None
        return cls(root, proc.stdin.fileno(), proc.stdout.fileno(), log, proc.pid, proc)

    @classmethod
    def _fork(cls, root: Path, data_dir: Path, head_root: Path, log_fd: int, log: Path) -> BaseSide:
        to_child, requests = os.pipe()
        replies, from_child = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        gc.freeze()  # the imported modules' objects: never scanned again, in either process
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            code = 70
            try:
                os.close(requests)
                os.close(replies)
                _become_base(root, data_dir, head_root, log_fd)
                with os.fdopen(to_child, "rb") as inbox, os.fdopen(from_child, "wb") as outbox:
                    code = serve(root, inbox, outbox)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(to_child)
        os.close(from_child)
        os.close(log_fd)
        return cls(root, requests, replies, log, pid)

    def snapshot(self) -> dict[str, Any]:
        """The base's prompt snapshot; GateError when it could not be taken."""
        if self._snapshot is None:
            data = self._receive(SNAPSHOT_TIMEOUT_S, f"taking the prompt snapshot of {self.root}")
            if "error" in data:
                raise GateError(f"cannot load the prompts of {self.root}: {data['error']}")
            self._snapshot = data["ok"]
        return self._snapshot

    def run_cases(
        self, suite: Path, cases: list[str], cache: str, variant: str | None
    ) -> dict[str, Any]:
        """`cases` of the suite file `suite` run on the base tree, with response cache mode
        `cache` (and `variant` for cases that name none): the SuiteResult's JSON."""
        self.snapshot()  # replies come in order: the snapshot first
        request = {"suite": str(suite), "cases": cases, "cache": cache, "variant": variant}
        self._send(request)
        data = self._receive(CASES_TIMEOUT_S, f"running suite {suite.stem} on the base tree")
        if "error" in data:
            raise GateError(f"running suite {suite.stem} on the base tree failed: {data['error']}")
        result: dict[str, Any] = data["ok"]
        return result

    def close(self) -> None:
        """End the process: at once when it is still working on something, else after it has
        read the end of its requests and shut its own worker pools down."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self._kill()
        self._close_pipe(self._requests)  # the end of the requests: the process exits
        if not self._wait(_EXIT_WAIT_S):
            self._kill()
            self._wait(_EXIT_WAIT_S)
        self._close_pipe(self._replies)
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> BaseSide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the protocol, parent side -------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except OSError as exc:
            raise GateError(f"the base tree's process is gone: {self._tail()}") from exc
        self._pending += 1

    def _receive(self, timeout: float, doing: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                self._kill()
                raise GateError(f"{doing} took over {timeout:g} s.")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                self._wait(_EXIT_WAIT_S)
                raise GateError(
                    f"{doing}: the base tree's process ended ({self._status()}): {self._tail()}"
                )
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self._pending -= 1
        data: dict[str, Any] = json.loads(line)
        return data

    def _close_pipe(self, fd: int) -> None:
        stream = None
        if self._proc is not None:
            stream = self._proc.stdin if fd == self._requests else self._proc.stdout
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
            else:
                os.close(fd)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        self._pending = 0

    def _wait(self, timeout: float) -> bool:
        """Whether the process has ended (reaped) within `timeout` seconds."""
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

    def _tail(self, lines: int = 6) -> str:
        """The last meaningful lines the process wrote to its log (box borders dropped)."""
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no log"
        kept = [ln.strip(" │╭╮╰╯─") for ln in text.strip().splitlines()]
        return " / ".join([ln for ln in kept if ln][-lines:]) or "it wrote nothing"


def _can_fork(head_root: Path) -> bool:
    """Fork only from a single-threaded process in which no module of the head project (its
    dataflows, its prompt packs) is imported: the child must start as a fresh one would."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        contract = load_contract(head_root)
    except PromptdagError:
        return False  # the head does not load either: the gate reports that; keep it simple
    tops = {n.split(".")[0] for n in (*contract.dataflows, contract.prompts)}
    return not any(name.split(".")[0] in tops for name in list(sys.modules))


def _become_base(root: Path, data_dir: Path, head_root: Path, log_fd: int) -> None:
    """In the forked child: the base tree's cwd, environment and sys.path; stdin from
    /dev/null, stdout and stderr to the log."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    os.chdir(root)
    os.environ.pop("PROMPTDAG_PROJECT", None)
    os.environ["PROMPTDAG_DATA_DIR"] = str(data_dir)
    head = head_root.resolve()
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != head]


# --- the protocol, the base side -----------------------------------------------------------------


def serve(root: Path, inbox: IO[bytes], outbox: IO[bytes]) -> int:
    """Send the snapshot of the project at `root` (its token counts left to the gate, which
    counts the head's anyway: `snapshot.fill_tokens`), then answer each request line with its
    cases' result, until the requests end; 0 when every reply was delivered."""
    from promptdag.gate.snapshot import take_snapshot

    _reply(outbox, _answer(lambda: take_snapshot(root, count_tokens=False)))
    for line in inbox:
        request = json.loads(line)
        _reply(outbox, _answer(functools.partial(asyncio.run, _run_cases(root, **request))))
    _shutdown_pools()
    return 0


def _answer(work: Callable[[], Any]) -> dict[str, Any]:
    """`{"ok": value}`, or `{"error": why}`: the gate raises it as a GateError, and the
    traceback goes to the log."""
    try:
        return {"ok": work()}
    except PromptdagError as exc:
        return {"error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def _reply(outbox: IO[bytes], message: dict[str, Any]) -> None:
    outbox.write(json.dumps(message, default=str).encode() + b"\n")
    outbox.flush()


async def _run_cases(
    root: Path, suite: str, cases: list[str], cache: str, variant: str | None
) -> dict[str, Any]:
    from promptdag.evals import load_suite, run_suite
    from promptdag.project import load_project

    project = load_project(root)
    result = await run_suite(
        load_suite(Path(suite), root=project.root),
        project=project,
        variant=variant,
        overrides={"llm_cache": cache},
        case_ids=cases,
    )
    data: dict[str, Any] = json.loads(json.dumps(result.to_json(), default=str))
    return data


def _shutdown_pools() -> None:
    """The worker pools the cases started (a forked child ends without running atexit)."""
    workers = sys.modules.get("promptdag.workers")
    if workers is not None:
        workers.shutdown_pools()


def main() -> None:
    """`python -P -m promptdag.gate.base_side ROOT`: serve on stdin/stdout."""
    root = Path(sys.argv[1]).resolve()
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what the project prints goes to the log, never into the replies
    sys.exit(serve(root, sys.stdin.buffer, outbox))


if __name__ == "__main__":
    main()
