"""The base ref's side of the gate, in a process of its own so that the base tree's modules never
mix with the head's: it takes the base's prompt snapshot at once, then runs the base's eval
cases on request (the base's suite, checks and pipeline: the bar).

The process is forked (`worker.Worker`) from the gate's own process after the framework and its
heavy libraries (Hamilton, pandas, the openai SDK) are imported and before any project module is,
so it starts in milliseconds instead of importing them again, and runs the framework code a
fresh interpreter would (the installed promptdag, never a copy inside the base tree). The child
moves into the base tree and drops the head's directory from `sys.path`. Where fork cannot be
used (`worker.can_fork`, or a module of the head project is already imported), a fresh
interpreter (`python -P -m promptdag.gate.base_side ROOT`) serves the same protocol."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path
from typing import IO, Any

from promptdag.contract import load_contract
from promptdag.errors import GateError, PromptdagError
from promptdag.gate.worker import Worker, answer, can_fork, reply, requests, serve_stdio

__all__ = ["BaseSide"]

SNAPSHOT_TIMEOUT_S = 600.0
CASES_TIMEOUT_S = 1800.0


class BaseSide:
    """The base tree's process. `snapshot()` returns the base's snapshot (taken as soon as the
    process starts, its token counts left out: `snapshot.fill_tokens`); `run_cases(...)` runs
    cases of a base suite there; `close()` ends it."""

    def __init__(self, root: Path, worker: Worker) -> None:
        self.root = root
        self.worker = worker
        self._snapshot: dict[str, Any] | None = None

    @classmethod
    def start(cls, root: Path, data_dir: Path, head_root: Path) -> BaseSide:
        """The process for the project at `root` (the base worktree), with the response cache in
        `data_dir`; `head_root` is the project the gate runs in (kept off the child's path)."""
        if can_fork() and not _head_modules_loaded(head_root):
            serve = functools.partial(_serve_forked, root, data_dir, head_root)
            return cls(root, Worker.fork("base-tree", serve, pending=1))
        env = {k: v for k, v in os.environ.items() if k != "PROMPTDAG_PROJECT"}
        env["PROMPTDAG_DATA_DIR"] = str(data_dir)
        # -P: the tree's own directories never shadow the installed promptdag on sys.path.
        cmd = [sys.executable, "-P", "-m", "promptdag.gate.base_side", str(root)]
        return cls(root, Worker.spawn("base-tree", cmd, root, env, pending=1))

    def snapshot(self) -> dict[str, Any]:
        """The base's prompt snapshot; GateError when it could not be taken."""
        if self._snapshot is None:
            data = self.worker.receive(
                SNAPSHOT_TIMEOUT_S, f"taking the prompt snapshot of {self.root}"
            )
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
        data = self.worker.request(
            request, CASES_TIMEOUT_S, f"running suite {suite.stem} on the base tree"
        )
        if "error" in data:
            raise GateError(f"running suite {suite.stem} on the base tree failed: {data['error']}")
        result: dict[str, Any] = data["ok"]
        return result

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> BaseSide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _head_modules_loaded(head_root: Path) -> bool:
    """Whether a module of the head project (its dataflows, its prompt packs) is imported in
    this process: a child forked now would not start as a fresh one."""
    try:
        contract = load_contract(head_root)
    except PromptdagError:
        return True  # unknown: do not fork
    tops = {n.split(".")[0] for n in (*contract.dataflows, contract.prompts)}
    return any(name.split(".")[0] in tops for name in list(sys.modules))


def _serve_forked(
    root: Path, data_dir: Path, head_root: Path, inbox: IO[bytes], outbox: IO[bytes]
) -> int:
    """In the forked child: the base tree's cwd, environment and sys.path, then `serve`."""
    os.chdir(root)
    os.environ.pop("PROMPTDAG_PROJECT", None)
    os.environ["PROMPTDAG_DATA_DIR"] = str(data_dir)
    head = head_root.resolve()
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != head]
    return serve(root, inbox, outbox)


def serve(root: Path, inbox: IO[bytes], outbox: IO[bytes]) -> int:
    """Send the snapshot of the project at `root` (its token counts left to the gate, which
    counts the head's anyway), then answer each request with its cases' result, until the
    requests end; 0 when every reply was delivered."""
    from promptdag.gate.snapshot import take_snapshot

    reply(outbox, answer(lambda: take_snapshot(root, count_tokens=False)))
    for request in requests(inbox):
        reply(outbox, answer(functools.partial(asyncio.run, _run_cases(root, **request))))
    _shutdown_pools()
    return 0


async def _run_cases(
    root: Path, suite: str, cases: list[str], cache: str, variant: str | None
) -> dict[str, Any]:
    import json

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


if __name__ == "__main__":
    serve_stdio(functools.partial(serve, Path(sys.argv[1]).resolve()))
