"""The Ray engine: one Ray actor per worker (1 CPU each), each building the pipeline once
through the one factory and running several items at a time on its event loop (an async
actor), plus one limiter actor holding the batch-wide `LimiterCore`, which every worker's LLM
asks before a request leaves. Ray is an optional extra: `pip install 'promptdag[ray]'`.

Without an address the engine starts a local Ray instance (`ray.init(num_cpus=N,
include_dashboard=False)`) and stops it at the end; with `address` (`auto`, or `HOST:PORT` of a
cluster's head) it connects to that cluster. In a process where Ray is already initialized it
uses that instance and leaves it running. Every node needs the project and the input files at
the same paths as the machine that starts the batch, and the same Python environment (workers
check that they build the same pipeline: the build fingerprint must match). The variables promptdag and the openai
SDK read (`OPENAI_*`, `PROMPTDAG_*`, `TIKTOKEN_CACHE_DIR`) are passed to the workers through
Ray's `runtime_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from typing import Any

from promptdag.batch.limits import Grant, LimiterCore, Limits
from promptdag.batch.sources import BatchItem
from promptdag.batch.worker import BatchWorker, WorkerLost, WorkerSetup
from promptdag.errors import ConfigError, PromptdagError
from promptdag.gc_tuning import settle_process

__all__ = ["RayEngine"]

START_TIMEOUT_S = 300.0
_FORWARD_PREFIXES = ("OPENAI_", "PROMPTDAG_")
_FORWARD = ("TIKTOKEN_CACHE_DIR",)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            [f"--engine ray needs Ray ({exc}): pip install 'promptdag[ray]'."]
        ) from exc
    return ray


class _ActorRemote:
    """The limiter actor, as a worker's `RemoteLimiter`."""

    def __init__(self, actor: Any, worker: str):
        self.actor = actor
        self.worker = worker

    async def acquire(self, tokens: int) -> Grant:
        grant: Grant = await self.actor.acquire.remote(self.worker, tokens)
        return grant

    def release(self, ticket: int, used_tokens: int) -> None:
        self.actor.release.remote(ticket, used_tokens)


class _LimiterActor:
    """The batch-wide limiter, in one async actor."""

    def __init__(self, limits: Limits):
        self.core = LimiterCore(limits)

    async def acquire(self, worker: str, tokens: int) -> Grant:
        return await self.core.acquire(worker, tokens)

    async def release(self, ticket: int, used_tokens: int) -> None:
        self.core.release(ticket, used_tokens)

    async def release_worker(self, worker: str) -> int:
        return self.core.release_worker(worker)


class _WorkerActor:
    """A batch worker in a Ray actor."""

    def __init__(self, setup: WorkerSetup, limiter: Any):
        import ray

        name = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"
        remote = None if limiter is None else _ActorRemote(limiter, name)
        self.worker = BatchWorker(setup, remote, name=name)

    async def ready(self) -> tuple[str, str]:
        if not self.worker.started:
            await self.worker.start()
            settle_process()  # the actor's process runs nothing else
        return self.worker.name, self.worker.build_id

    async def run(self, item: BatchItem) -> dict[str, Any]:
        return await self.worker.run(item)

    async def aclose(self) -> None:
        await self.worker.aclose()


@functools.cache
def _actor_classes() -> tuple[Any, Any]:
    ray = _import_ray()
    return ray.remote(_WorkerActor), ray.remote(_LimiterActor)


def _cause(exc: BaseException) -> str:
    """The last line of what a failed actor raised (Ray wraps it in a long traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error: " in line or "Error(" in line]
    return (errors or lines or [type(exc).__name__])[-1]


class RayEngine:
    """`await launch()` (the actors start building), `await ready(build_id)`, then
    `await run(item)` concurrently, then `await aclose()`."""

    name = "ray"
    forked = 0  # actors are Ray's processes, never forked from the batch

    def __init__(
        self,
        setup: WorkerSetup,
        *,
        workers: int | None,
        address: str | None,
        in_flight: int | None,
    ):
        self.setup = setup
        self.requested = workers
        self.address = address
        self.in_flight = in_flight
        self.workers = 0
        self._ray: Any = None
        self._owns = False
        self._limiter: Any = None
        self._actors: list[Any] = []
        self._names: dict[Any, str] = {}
        self._load: dict[Any, int] = {}
        self._restarts = 0
        self._per_worker = 1
        self._worker_cls: Any = None
        self._build_id: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    def _env(self) -> dict[str, str]:
        return {
            k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES) or k in _FORWARD
        }

    def _init(self) -> Any:
        """Ray, initialized: the instance this process has, else a new one, else `address`."""
        ray = self._ray = _import_ray()
        if ray.is_initialized():
            return ray
        try:
            if self.address:
                ray.init(address=self.address)
            else:
                cores = os.cpu_count() or 1
                ray.init(num_cpus=self.requested or cores, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local instance"
            hint = (
                " The cluster uses token authentication (Ray 2.52+ does by default): set "
                "RAY_AUTH_MODE=token here too, with the head's token in ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN."
                if "auth" in str(exc).lower() or self.address
                else ""
            )
            raise ConfigError([f"cannot start Ray on {where}: {exc}.{hint}"]) from exc
        self._owns = True
        return ray

    async def launch(self) -> None:
        """Start Ray (or connect), the limiter and the worker actors, which build meanwhile."""
        if self._ray is not None:
            return
        ray = self._init()
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.workers = self.requested or cpus
        if self.workers < 1 or self.workers > cpus:
            raise ConfigError(
                [
                    f"--workers {self.workers}: the Ray cluster has {cpus} CPU(s), and each "
                    "worker takes one. Give --workers at most that."
                ]
            )
        worker_cls, limiter_cls = _actor_classes()
        if self.setup.limits.active:
            self._limiter = limiter_cls.options(num_cpus=0, max_concurrency=100_000).remote(
                self.setup.limits
            )
        from promptdag.batch.runner import _default_in_flight

        total = self.in_flight or _default_in_flight(self.setup.limits, self.workers)
        self._per_worker = -(-total // self.workers)
        self._worker_cls = worker_cls
        for _ in range(self.workers):
            self._add()

    async def ready(self, build_id: str) -> None:
        """Wait until every worker actor has built its pipeline, and check it is the batch's."""
        await self.launch()
        self._build_id = build_id
        ray = self._ray
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                answers = await asyncio.gather(*(a.ready.remote() for a in self._actors))
        except TimeoutError as exc:
            raise PromptdagError(
                f"the Ray workers did not start within {START_TIMEOUT_S:g} s (is the cluster "
                "short of CPUs, or busy?)."
            ) from exc
        except ray.exceptions.RayActorError as exc:
            raise ConfigError([f"a Ray batch worker could not start: {_cause(exc)}"]) from exc
        for actor, (name, built) in zip(self._actors, answers, strict=True):
            self._check_build(name, built)
            self._names[actor] = name

    def _check_build(self, name: str, built: str) -> None:
        if built != self._build_id:
            raise ConfigError(
                [
                    f"Ray batch worker {name} built the pipeline as build {built}, not the "
                    f"batch's {self._build_id}: the project, config or libraries on its node "
                    "differ. Run every node from the same code and environment."
                ]
            )

    def _add(self) -> Any:
        env = self._env()
        options: dict[str, Any] = {"num_cpus": 1, "max_concurrency": self._per_worker + 4}
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor = self._worker_cls.options(**options).remote(self.setup, self._limiter)
        self._actors.append(actor)
        self._load[actor] = 0
        return actor

    async def _replace(self, dead: Any) -> None:
        """A worker died: free its limiter slots, start another (a few times at most)."""
        if dead in self._actors:
            self._actors.remove(dead)
            name = self._names.pop(dead, None)
            if self._limiter is not None and name is not None:
                self._limiter.release_worker.remote(name)
        if self._restarts < 2 * self.workers:
            self._restarts += 1
            actor = self._add()
            try:
                name, built = await actor.ready.remote()
                self._check_build(name, built)
                self._names[actor] = name
            except (self._ray.exceptions.RayActorError, ConfigError):
                self._actors.remove(actor)
                self._ray.kill(actor)
        async with self._changed:
            self._changed.notify_all()

    async def _pick(self) -> Any:
        async with self._changed:
            while True:
                ready = [a for a in self._actors if a in self._names]
                if ready:
                    return min(ready, key=lambda a: self._load[a])
                if not self._actors:
                    raise PromptdagError(
                        "every Ray batch worker has died and the restart limit is reached; "
                        "the rows so far are kept (run again with --resume)."
                    )
                await self._changed.wait()

    async def run(self, item: BatchItem) -> dict[str, Any]:
        actor = await self._pick()
        self._load[actor] += 1
        ref = actor.run.remote(item)
        try:
            row: dict[str, Any] = await ref
            return row
        except self._ray.exceptions.RayActorError as exc:
            task = asyncio.get_running_loop().create_task(self._replace(actor))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise WorkerLost(
                f"the Ray worker {self._names.get(actor, '?')} died while running this item: "
                f"{_cause(exc)}"
            ) from exc
        except asyncio.CancelledError:
            self._ray.cancel(ref)
            raise
        finally:
            self._load[actor] -= 1

    async def aclose(self) -> None:
        """Close the workers' pipelines, end the actors, and Ray if this engine started it."""
        ray = self._ray
        if ray is None:
            return
        if self._actors:
            closing = asyncio.gather(
                *(a.aclose.remote() for a in self._actors), return_exceptions=True
            )
            with contextlib.suppress(TimeoutError):  # then they are killed all the same
                await asyncio.wait_for(closing, 30)
        for actor in [*self._actors, *([self._limiter] if self._limiter else [])]:
            ray.kill(actor)
        self._actors.clear()
        if self._owns:
            ray.shutdown()
