"""`run_batch`: one declared pipeline over many inputs, on the local engine or on Ray.

The batch process starts the engine's workers (each builds the pipeline once through the one
factory), lists the inputs and builds the pipeline itself meanwhile (a bad config stops the
batch before any item runs; its build fingerprint is the one every worker must match), hands
the workers items (at most `in_flight` at a time), and writes each row as it comes back.
`--resume` skips the inputs whose id and content hash already have an `ok` row made by this
build. Limits on requests, tokens and calls in flight hold across all workers; `max_cost_usd`
stops handing out items when the estimated spend (spent so far + the items in flight, at the
mean cost of a finished item) would pass it. A failed item is a row with its error, and the
batch goes on (`fail_fast`: stop at the first, cancelling the items in flight).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from promptdag.batch.limits import Limits
from promptdag.batch.progress import BatchProgress, duration
from promptdag.batch.rows import OutputColumns, RowContext, arrow_schema, error_row
from promptdag.batch.sources import BatchItem, BatchSource, content_hash, item_inputs, open_source
from promptdag.batch.store import Previous, ResultStore
from promptdag.batch.worker import WorkerLost, WorkerSetup, build_id_of
from promptdag.errors import ConfigError, ForbiddenInputError, PromptdagError
from promptdag.inputs import coerce_input
from promptdag.llm.client import resolve_http_client
from promptdag.pipeline import usage_of

__all__ = ["ENGINES", "BatchOptions", "BatchSummary", "Engine", "run_batch"]

ENGINES = ("local", "ray")
_SHOWN_ERRORS = 5


class Engine(Protocol):
    """Runs items on workers: `launch` (the workers start building), `ready` (they have built
    the batch's build), then `run` concurrently, then `aclose`."""

    name: str
    workers: int
    forked: int  # workers forked from this process (the local engine; 0 otherwise)

    async def launch(self) -> None: ...

    async def ready(self, build_id: str) -> None: ...

    async def run(self, item: BatchItem) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class BatchOptions:
    """What `promptdag batch` takes; `inputs` are given to every item (`--input NAME=VALUE`)."""

    source: str
    out: Path
    pipeline: str | None = None
    engine: str = "local"
    workers: int | None = None
    variant: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    id_column: str | None = None
    resume: bool = False
    overwrite: bool = False
    fail_fast: bool = False
    limits: Limits = field(default_factory=Limits)
    max_cost_usd: float | None = None
    in_flight: int | None = None
    ray_address: str | None = None
    project: Path | str | None = None
    require_clean: bool = False
    progress: bool = True
    log_every: float = 10.0
    http_client: str = "auto"  # the LLM's HTTP stack in the workers (llm.client.HTTP_CLIENTS)


@dataclass
class BatchSummary:
    """What one `run_batch` did."""

    pipeline: str
    variant: str
    engine: str
    workers: int
    out: Path
    total: int
    build_id: str
    batch_run: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # already ok (--resume)
    not_run: int = 0  # left when the batch stopped early
    stopped: str | None = None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    seconds: float = 0.0
    rows: int = 0  # rows in `out` at the end (each input once)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # the first few

    @property
    def exit_code(self) -> int:
        """0: every input ran (or was done); 1: some failed, or the batch stopped early."""
        return 1 if self.failed or self.not_run or self.stopped else 0

    def add(self, row: Mapping[str, Any]) -> None:
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
            if len(self.errors) < _SHOWN_ERRORS:
                self.errors.append((row["input_id"], row["error_type"], row["error_message"]))
        self.calls += int(row["llm_calls"] or 0)
        self.input_tokens += int(row["input_tokens"] or 0)
        self.output_tokens += int(row["output_tokens"] or 0)
        cost = row["cost_usd"]
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost

    def line(self) -> str:
        ran = self.ok + self.failed
        rate = f" ({ran / self.seconds:.2f} items/s)" if self.seconds > 0 and ran else ""
        cost = "cost n/a" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (
            f"batch {self.pipeline} (variant {self.variant}): {self.total} inputs · "
            f"{self.ok} ok · {self.failed} failed · {self.skipped} already ok · "
            f"{self.not_run} not run · {self.calls} calls · "
            f"{self.input_tokens}→{self.output_tokens} tokens · {cost} · "
            f"{duration(self.seconds)}{rate} · {self.engine} engine, {self.workers} workers → "
            f"{self.out} ({self.rows} rows)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "variant": self.variant,
            "engine": self.engine,
            "workers": self.workers,
            "out": str(self.out),
            "rows": self.rows,
            "total": self.total,
            "counts": {
                "ok": self.ok,
                "error": self.failed,
                "skipped": self.skipped,
                "not_run": self.not_run,
            },
            "stopped": self.stopped,
            "usage": {
                "calls": self.calls,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            },
            "seconds": round(self.seconds, 3),
            "build_id": self.build_id,
            "batch_run": self.batch_run,
            "errors": [
                {"input_id": i, "error_type": t, "error_message": m} for i, t, m in self.errors
            ],
            "exit_code": self.exit_code,
        }


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_constants(spec: Any, constants: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in constants if k not in spec.inputs)
    if unknown:
        raise ForbiddenInputError(unknown, list(spec.inputs))
    for name, value in constants.items():
        coerce_input(spec.inputs[name], value)


def _check_options(options: BatchOptions) -> None:
    problems = []
    if options.engine not in ENGINES:
        problems.append(f"--engine {options.engine!r}: use one of {', '.join(ENGINES)}.")
    for name, value in (
        ("--workers", options.workers),
        ("--in-flight", options.in_flight),
        ("--concurrency", options.limits.concurrency),
    ):
        if value is not None and value < 1:
            problems.append(f"{name} {value}: give a number >= 1.")
    for name, rate in (("--rpm", options.limits.rpm), ("--tpm", options.limits.tpm)):
        if rate is not None and rate <= 0:
            problems.append(f"{name} {rate:g}: give a number > 0.")
    if options.max_cost_usd is not None and options.max_cost_usd <= 0:
        problems.append(f"--max-cost-usd {options.max_cost_usd:g}: give an amount > 0.")
    if options.ray_address and options.engine != "ray":
        problems.append("--ray-address is for --engine ray.")
    try:
        resolve_http_client(options.http_client)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if options.resume and options.overwrite:
        problems.append("--resume continues the output, --overwrite replaces it: choose one.")
    if problems:
        raise ConfigError(problems)


def _build_diff(old: Mapping[str, Any], new: Mapping[str, Any], where: str = "") -> list[str]:
    """Dotted paths where two build infos differ (at most a handful)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b, path = old.get(key), new.get(key), f"{where}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _build_diff(a, b, f"{path}.")
        elif a != b:
            out.append(path)
    return out[:8]


def _not_ignored_in_git(out: Path, git: Mapping[str, Any], root: Path) -> bool:
    """Whether `out` lies in the project's git checkout without being ignored (its files then
    change the tree's diff hash, hence the build fingerprint that --resume matches)."""
    if not git.get("available") or git.get("source") != "git":
        return False
    import git as gitpython

    try:
        repo = gitpython.Repo(root, search_parent_directories=True)
        work = Path(repo.working_tree_dir or root).resolve()
        target = out.resolve()
        if not target.is_relative_to(work):
            return False
        return not repo.ignored(str(target.relative_to(work)))
    except gitpython.GitError:  # cannot ask git: no warning rather than a wrong one
        return False


def _previous(
    store: ResultStore,
    options: BatchOptions,
    pipeline: str,
    build_id: str,
    build: Mapping[str, Any],
    say: Callable[[str], None],
) -> Previous:
    if not options.resume or not store.exists():
        return Previous()
    previous = store.previous(pipeline, build_id)
    if previous.ok_elsewhere and not previous.done:
        others = [b for k, b in previous.builds.items() if k != build_id]
        diff = _build_diff(others[-1], build) if others else []
        say(
            f"note: {previous.ok_elsewhere} ok row(s) in {store.out} were made by another build "
            f"(the fingerprint differs{' in ' + ', '.join(diff) if diff else ''}); "
            "their inputs run again."
        )
    return previous


class _Run:
    """The state of one batch while it runs."""

    def __init__(
        self,
        options: BatchOptions,
        engine: Engine,
        summary: BatchSummary,
        progress: BatchProgress,
        writer: Any,
        parent_rows: RowContext,
        previous: Previous,
        spec: Any,
        say: Callable[[str], None],
    ):
        self.options, self.engine, self.summary = options, engine, summary
        self.progress, self.writer, self.parent_rows = progress, writer, parent_rows
        self.previous, self.spec, self.say = previous, spec, say
        self.slots: asyncio.Semaphore | None = None  # once the engine has started
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished = asyncio.Event()
        self.fatal: Exception | None = None
        self.spent = 0.0
        self.done = 0
        self.flying = 0  # handed out, row not recorded yet

    def _skip(self, item: BatchItem) -> bool:
        if not self.previous.done:
            return False
        try:
            digest = content_hash(item_inputs(item, self.spec, self.options.inputs))
        except (PromptdagError, OSError):  # unreadable now: it runs, and its row says why
            return False
        return (item.id, digest) in self.previous.done

    def _stop(self, reason: str) -> None:
        """Hand out no more items, and cancel those in flight."""
        if self.summary.stopped is None:
            self.summary.stopped = reason
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def _record(self, row: dict[str, Any]) -> None:
        self.writer.add(row)
        self.summary.add(row)
        self.progress.update(row)
        self.done += 1
        self.spent += float(row["cost_usd"] or 0.0)
        if row["status"] != "ok" and self.options.fail_fast:
            self._stop(
                f"--fail-fast: {row['input_id']} failed ({row['error_type']}); the items in "
                "flight were cancelled"
            )

    async def _one(self, item: BatchItem) -> None:
        started = time.perf_counter()
        try:
            try:
                row = await self.engine.run(item)
            except WorkerLost as exc:
                row = error_row(
                    self.parent_rows,
                    item.index,
                    item.id,
                    None,
                    "WorkerLost",
                    str(exc),
                    usage_of([]),
                    None,
                    time.perf_counter() - started,
                )
            finally:
                assert self.slots is not None
                self.slots.release()
            self._record(row)
        except Exception as exc:  # the engine or the writer broke: the batch stops and raises it
            if self.fatal is None:
                self.fatal = exc
                self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            self.flying -= 1
            self.finished.set()

    async def _within_budget(self) -> bool:
        """Whether one more item fits under max_cost_usd (waits for a first finished item
        once every worker has one in flight, to know what an item costs)."""
        limit = self.options.max_cost_usd
        if limit is None:
            return True
        while self.done == 0 and self.flying >= self.engine.workers:
            self.finished.clear()
            await self.finished.wait()
        per_item = self.spent / self.done if self.done else 0.0
        flying = self.flying
        if self.spent + (flying + 1) * per_item <= limit:
            return True
        self.summary.stopped = (
            f"--max-cost-usd {limit:g}: the estimated spend would pass it (${self.spent:.4f} "
            f"spent, about ${per_item:.4f} per item, {flying} in flight)"
        )
        return False

    async def _start(self, source: BatchSource) -> asyncio.Semaphore:
        """Start the engine (at the first item to run: a finished batch resumes at once)."""
        if self.slots is None:
            self.say(f"starting the {self.engine.name} engine...")
            await self.engine.ready(self.parent_rows.build_id)
            self.summary.workers = self.engine.workers
            limits = self.options.limits
            in_flight = self.options.in_flight or _default_in_flight(limits, self.engine.workers)
            forked = self.engine.forked
            self.say(
                f"batch {self.spec.name}: {source.count} inputs from {source.where}, "
                f"{self.engine.workers} workers{f' ({forked} forked)' if forked else ''}, "
                f"{in_flight} inputs in flight, limits: "
                f"{limits.describe()}"
            )
            self.slots = asyncio.Semaphore(in_flight)
        return self.slots

    async def dispatch(self, source: BatchSource) -> None:
        for item in source.items():
            if self.summary.stopped is not None and not self.previous.done:
                break  # nothing left to count as already done
            if self._skip(item):
                self.summary.skipped += 1
                self.progress.total -= 1
                continue
            if self.summary.stopped is None:
                slots = await self._start(source)
                await slots.acquire()
                if self.summary.stopped is None and await self._within_budget():
                    self.flying += 1
                    task = asyncio.create_task(self._one(item))
                    self.tasks.add(task)
                    task.add_done_callback(self._ended)
                    continue
                slots.release()
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        done = self.summary.ok + self.summary.failed + self.summary.skipped
        self.summary.not_run = self.summary.total - done
        if self.fatal is not None:
            raise self.fatal

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.progress.tick()


def _check_output(store: ResultStore, options: BatchOptions) -> None:
    if store.exists() and not (options.resume or options.overwrite):
        raise ConfigError(
            [
                f"{store.out} already exists: add --resume to run only the inputs it has no ok "
                "row for, or --overwrite to start over."
            ]
        )
    if options.overwrite:
        store.remove()


def _engine(
    options: BatchOptions, setup: WorkerSetup, workers: int | None, in_flight: int | None
) -> Engine:
    if options.engine == "ray":
        from promptdag.batch.ray_engine import RayEngine

        return RayEngine(setup, workers=workers, address=options.ray_address, in_flight=in_flight)
    from promptdag.batch.local import LocalEngine

    count = workers or _cores()
    total = in_flight or _default_in_flight(options.limits, count)
    return LocalEngine(setup, workers=count, per_worker=math.ceil(total / count))


def _default_in_flight(limits: Limits, workers: int) -> int:
    """Items in flight in total: enough to keep `concurrency` calls busy, else 4 per worker."""
    if limits.concurrency:
        return max(2 * limits.concurrency, 2 * workers)
    return 4 * workers


def new_batch_run() -> str:
    """An id for one invocation that sorts by time: 20261129T142500-3f2a."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


async def run_batch(
    options: BatchOptions, *, say: Callable[[str], None] | None = None
) -> BatchSummary:
    """Run the batch; `say` receives notes for the user (the CLI prints them on stderr).
    Raises ConfigError, InputError or ProjectError before any item runs when the batch cannot
    start; a failed item is a row, never an exception."""
    from promptdag.contract import load_contract
    from promptdag.project import find_project
    from promptdag.provenance import git_state, require_clean

    started = time.perf_counter()
    say = say or (lambda message: None)
    _check_options(options)
    root = find_project(options.project)
    spec = load_contract(root).pipeline(options.pipeline)
    _check_constants(spec, options.inputs)
    git = git_state(root)
    if options.require_clean:
        require_clean(git)
    store = ResultStore(Path(options.out))
    _check_output(store, options)
    batch_run = new_batch_run()
    setup = WorkerSetup(
        root=str(root),
        pipeline=spec.name,
        variant=options.variant,
        overrides=dict(options.overrides),
        constants=dict(options.inputs),
        git=git,
        batch_run=batch_run,
        limits=options.limits,
        http_client=resolve_http_client(options.http_client),
    )
    engine = _engine(options, setup, options.workers, options.in_flight)
    try:
        if not (options.resume and store.exists()):
            # the workers import and build while this process lists the inputs and builds too
            await engine.launch()
        source = await asyncio.to_thread(
            open_source, spec, options.source, id_column=options.id_column
        )
        pipeline = await asyncio.to_thread(_build, options, root, spec.name, git)
        try:
            return await _run(
                options, spec, pipeline, git, source, store, engine, batch_run, started, say
            )
        finally:
            await pipeline.aclose()
    finally:
        await engine.aclose()


def _build(options: BatchOptions, root: Path, pipeline: str, git: dict[str, Any]) -> Any:
    """This process's own build of the pipeline: it checks the config before any item runs,
    gives the build fingerprint the workers must match, and prices."""
    from promptdag.factory import build_pipeline

    built = build_pipeline(
        pipeline=pipeline,
        variant=options.variant,
        overrides=dict(options.overrides),
        project=root,
        git=git,
    )
    if options.max_cost_usd is not None:
        model = built.llm.settings.model
        if built.llm.cost(model, 1, 1) is None:
            project = built.project
            raise ConfigError(
                [
                    f"--max-cost-usd needs a price for model {model!r}: add it to [prices] in "
                    f"{project.relpath(project.variants_path)}."
                ]
            )
    return built


async def _run(
    options: BatchOptions,
    spec: Any,
    pipeline: Any,
    git: dict[str, Any],
    source: BatchSource,
    store: ResultStore,
    engine: Engine,
    batch_run: str,
    started: float,
    say: Callable[[str], None],
) -> BatchSummary:
    build_id = build_id_of(pipeline)
    build = pipeline.build_info()
    columns = OutputColumns.of(pipeline)
    schema = arrow_schema(columns)
    previous = _previous(store, options, spec.name, build_id, build, say)
    if _not_ignored_in_git(store.out, git, pipeline.project.root):
        say(
            f"warning: {store.out} is inside the git checkout and not ignored: its files make "
            "the tree dirty, which changes the build fingerprint, so a later --resume would "
            "find nothing done. Add it to .gitignore, or write it outside the checkout."
        )
    parent_rows = RowContext(
        pipeline=spec.name,
        variant=pipeline.variant,
        prompt_versions=_versions(pipeline),
        build_id=build_id,
        batch_run=batch_run,
        worker="batch",
        columns=columns,
    )
    store.start(spec.name, build_id, build)
    writer = store.writer(schema, batch_run)
    summary = BatchSummary(
        pipeline=spec.name,
        variant=pipeline.variant,
        engine=options.engine,
        workers=0,
        out=store.out,
        total=source.count,
        build_id=build_id,
        batch_run=batch_run,
    )
    if previous.done:
        say(f"resuming {store.out}: {len(previous.done)} input(s) already have an ok row.")
    try:
        with BatchProgress(
            source.count,
            enabled=options.progress,
            log_every=options.log_every,
            label=f"batch {spec.name}",
        ) as progress:
            run = _Run(options, engine, summary, progress, writer, parent_rows, previous, spec, say)
            ticker = asyncio.create_task(run.ticker())
            try:
                await run.dispatch(source)
            finally:
                ticker.cancel()
    finally:
        writer.close()
        summary.rows = store.compact(schema)
        summary.seconds = time.perf_counter() - started
    if summary.stopped:
        say(f"stopped scheduling: {summary.stopped}; {summary.not_run} input(s) not run.")
    return summary


def _versions(pipeline: Any) -> str:
    return json.dumps(pipeline.selected_versions(), sort_keys=True)
