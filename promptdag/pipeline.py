"""A built, validated Driver for one declared pipeline and one variant, and the one way to run
it: request inputs are checked against the pipeline's declared inputs (never a prompt node or a
config key), the run gets a whole-run deadline, every LLM call is recorded, and the result
carries its provenance fingerprint."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hamilton.async_driver import AsyncDriver
from hamilton.graph_types import HamiltonGraph
from hamilton.lifecycle.base import BasePreNodeExecute

from promptdag.catalog import PromptVersion, version_key
from promptdag.config import canonical_config
from promptdag.contract import PipelineSpec
from promptdag.errors import ConfigError, DeadlineExceededError, InputError, TraceStoreError
from promptdag.inputs import check_inputs
from promptdag.llm.client import LLM, LLMCall, run_scope
from promptdag.llm.tokens import token_counter
from promptdag.node_tasks import RUN_TASKS
from promptdag.project import Project
from promptdag.prompting import prompt_text
from promptdag.provenance import (
    canonical_member,
    fingerprint_id_of,
    library_versions,
    sha256_text,
)
from promptdag.redaction import redact_config
from promptdag.tracing.context import RequestContext, current_request, new_request_id, request_scope

__all__ = [
    "LLM_INPUT",
    "NodeScope",
    "Pipeline",
    "RunResult",
    "render_prompts",
    "run_fingerprint",
    "usage_of",
]

# The input through which every dataflow node that calls the model receives the LLM client.
LLM_INPUT = "llm"

log = logging.getLogger("promptdag.tracing")
_HAMILTON_LOGGERS = (
    "hamilton.async_driver",
    "hamilton.driver",
    "hamilton.execution.graph_functions",
)


def usage_of(calls: list[LLMCall]) -> dict[str, Any]:
    """Totals over LLM calls: calls, cache hits, tokens, estimated cost, LLM seconds."""
    costs = [c.cost_usd for c in calls]
    return {
        "calls": len(calls),
        "cached_calls": sum(1 for c in calls if c.cached),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "cost_usd": None
        if any(x is None for x in costs)
        else round(sum(c or 0.0 for c in costs), 6),
        "llm_seconds": round(sum(c.latency_s for c in calls), 4),
    }


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


@dataclass(frozen=True)
class RunResult:
    """What one run produced, with what produced it."""

    pipeline: str
    variant: str
    answer: Any
    outputs: dict[str, Any]
    prompts: dict[str, str]
    llm_calls: list[LLMCall]
    fingerprint: dict[str, Any]
    latency_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def usage(self) -> dict[str, Any]:
        return usage_of(self.llm_calls)

    @property
    def model(self) -> str | None:
        return self.llm_calls[-1].model if self.llm_calls else None

    @property
    def incomplete(self) -> bool:
        """Whether any answer was cut off, filtered or refused (returned only under
        llm_allow_incomplete; otherwise such an answer fails the run)."""
        return any(c.incomplete for c in self.llm_calls)

    def answer_text(self) -> str:
        """The answer as a person reads it: text as is, anything else as indented JSON."""
        import json

        if isinstance(self.answer, str):
            return self.answer
        return json.dumps(_jsonable(self.answer), indent=2, ensure_ascii=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "variant": self.variant,
            "answer": _jsonable(self.answer),
            "outputs": _jsonable(self.outputs),
            "model": self.model,
            "incomplete": self.incomplete,
            "usage": self.usage,
            "latency_s": self.latency_s,
            "prompts": {n: {"rendered": t} for n, t in self.prompts.items()},
            "llm_calls": [c.record() for c in self.llm_calls],
            "notes": self.notes,
            "provenance": self.fingerprint,
        }


class NodeScope(BasePreNodeExecute):
    """Hands each node that takes the LLM a view bound to the node's declared step, so every
    call is tied to its step and prompt, and an undeclared node cannot call the model.

    A synchronous hook: Hamilton's async driver calls it during its graph walk, with the very
    kwargs dict it then hands to the node's task (the LLM is a request input, so it is there
    already, never a pending task). An async hook would cost a future and an `asyncio.gather`
    per node on every run (benchmarks/overhead.py measured it)."""

    def __init__(self, steps: Mapping[str, str]):
        self.steps = dict(steps)  # node calling the LLM → its declared step
        self.names = tuple(sorted(self.steps))

    def pre_node_execute(
        self,
        *,
        run_id: str,
        node_: Any,
        kwargs: dict[str, Any],
        task_id: str | None = None,
    ) -> None:
        llm = kwargs.get(LLM_INPUT)
        if isinstance(llm, LLM):
            kwargs[LLM_INPUT] = llm.bound(node_.name, self.steps.get(node_.name), self.names)


class _DropHamiltonErrorLogs(logging.Filter):
    """Hamilton's driver logs a chat invitation on every failed run, and its graph walk a
    failing sync hook's node inputs (document text, passwords); nodes themselves run through
    NodeTasks, which logs nothing. promptdag raises a typed error instead, so error records of
    Hamilton's loggers are dropped while a run is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class _QuietHamilton:
    """The filter on Hamilton's loggers for as long as any run of this process is executing;
    removed when the last one ends, so nothing outlives promptdag's own calls."""

    active: ClassVar[int] = 0
    filter = _DropHamiltonErrorLogs()

    def __enter__(self) -> None:
        if _QuietHamilton.active == 0:
            for name in _HAMILTON_LOGGERS:
                logging.getLogger(name).addFilter(self.filter)
        _QuietHamilton.active += 1

    def __exit__(self, *exc: object) -> None:
        _QuietHamilton.active -= 1
        if _QuietHamilton.active == 0:
            for name in _HAMILTON_LOGGERS:
                logging.getLogger(name).removeFilter(self.filter)


async def _reap(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _fresh(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, scalars) whose containers are all new: a
    run's fingerprint shares its build's values, and the caller may change its own. A third
    of `copy.deepcopy`'s cost, paid on every run."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def run_fingerprint(build: Mapping[str, Any], rendered: Mapping[str, str]) -> dict[str, Any]:
    """The one recipe of a run's fingerprint: the build info (`Pipeline.build_info`) plus the
    hash of each prompt as rendered in the run, and an id over all (`fingerprint_id` of the
    rest; a Pipeline's build part is encoded once, see `_BuildInfo`). Shares the build's values."""
    info = {k: v for k, v in build.items() if k not in _PER_RUN}
    info["prompts"] = {
        n: {**meta, "rendered_sha256": sha256_text(rendered[n]) if n in rendered else None}
        for n, meta in build["prompt_versions"].items()
    }
    fixed = build.members if isinstance(build, _BuildInfo) else _members(build)
    info["id"] = fingerprint_id_of(
        {**fixed, "prompts": canonical_member("prompts", info["prompts"])}
    )
    return info


_PER_RUN = ("prompt_versions", "prompts", "id")  # build keys a run's fingerprint replaces


def _members(build: Mapping[str, Any]) -> dict[str, str]:
    """The canonical JSON members of a build's fixed part (`fingerprint_id`'s encoding)."""
    return {k: canonical_member(k, v) for k, v in build.items() if k not in _PER_RUN}


class _BuildInfo(dict[str, Any]):
    """A Pipeline's build info, shared by its runs and never changed, with the canonical JSON
    of its fixed part encoded once (`members`), so a run's fingerprint id encodes only its
    prompts. Its copies and pickles are plain dicts, which carry no stale encoding."""

    def __init__(self, info: Mapping[str, Any]):
        super().__init__(info)
        self.members = _members(info)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


@dataclass
class Pipeline:
    """One declared pipeline's Driver for one variant: its LLM client, its selected prompts and
    its build-time provenance."""

    project: Project
    spec: PipelineSpec
    variant: str
    config: dict[str, Any]
    driver: AsyncDriver
    llm: LLM
    prompts: dict[str, PromptVersion]
    git: dict[str, Any]
    _ready: bool = False
    _build_info: _BuildInfo | None = None
    _prompt_outputs: list[str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def graph(self) -> HamiltonGraph:
        return HamiltonGraph.from_graph(self.driver.graph)

    @property
    def steps(self) -> dict[str, str]:
        """Node calling the LLM → its declared step name."""
        return {s.node: s.name for s in self.project.contract.llm_steps.values()}

    def build_info(self) -> dict[str, Any]:
        """Everything fixed when the Driver was built (no per-request data); computed once,
        a deep copy each call so callers may change theirs."""
        return copy.deepcopy(self._build())

    def _build(self) -> dict[str, Any]:
        """The build info itself, shared: read it, never change it."""
        if self._build_info is None:
            self._build_info = self._compute_build_info()
        return self._build_info

    def _compute_build_info(self) -> _BuildInfo:
        graph = self.graph
        config = redact_config(self.config)  # no credentials from llm_base_url in provenance
        return _BuildInfo(
            {
                "pipeline": self.name,
                "variant": self.variant,
                "git": self.git,
                "config": config,
                "config_sha256": sha256_text(canonical_config(config)),
                "graph_version": graph.version,
                "prompt_versions": {
                    n: {
                        "version": p.version,
                        "pack": p.pack,
                        "source_sha256": graph[n].version,
                        "defined_at": f"{self.project.relpath(p.file)}:{p.line}",
                    }
                    for n, p in sorted(self.prompts.items())
                },
                "llm_steps": {
                    s.name: s.prompt
                    for s in sorted(self.project.contract.llm_steps.values(), key=lambda s: s.name)
                },
                "libraries": library_versions(),
            }
        )

    def prompt_outputs(self) -> list[str]:
        """The prompt nodes this pipeline's outputs depend on (rendered and hashed each run)."""
        if self._prompt_outputs is None:
            from promptdag.factory import _upstream

            needed = _upstream(self.graph, self.spec.final_vars)
            self._prompt_outputs = sorted(n for n in self.prompts if n in needed)
        return list(self._prompt_outputs)

    def fingerprint(self, rendered: Mapping[str, str]) -> dict[str, Any]:
        """Build info plus the hash of each prompt as rendered in this run, and an id over all."""
        return run_fingerprint(self._build(), rendered)

    async def execute(
        self,
        outputs: list[str],
        inputs: Mapping[str, Any],
        *,
        overrides: Mapping[str, Any] | None = None,
        calls: list[LLMCall] | None = None,
    ) -> dict[str, Any]:
        """Run the DAG for `outputs` with checked request inputs; LLM calls go to `calls`.
        `overrides` is for fixtures and tests, never for request data."""
        if not self._ready:
            await self.driver.ainit()
            self._ready = True
        hamilton_inputs = {**inputs, LLM_INPUT: self.llm}
        deadline = float(self.config["llm_deadline_s"])
        tasks: list[asyncio.Task[Any]] = []  # the run's node tasks (NodeTasks records them)
        token = RUN_TASKS.set(tasks)
        with _QuietHamilton(), run_scope(deadline) as state:
            try:
                async with asyncio.timeout(deadline):
                    return await self.driver.execute(
                        outputs, inputs=hamilton_inputs, overrides=dict(overrides or {})
                    )
            except TimeoutError as exc:
                await _reap(tasks)
                step = state.step or "the steps before the first LLM call"
                raise DeadlineExceededError(
                    f"the run passed its deadline of {deadline:g} s during {step}. "
                    "Raise llm_deadline_s, or send a smaller input.",
                    backend=self.llm.settings.backend,
                    model=self.llm.settings.model,
                    step=state.step,
                ) from exc
            except BaseException:
                await _reap(tasks)
                raise
            finally:
                RUN_TASKS.reset(token)
                # Each task's context holds this list, and the list its tasks: without this,
                # every run's tasks stay alive as a cycle until the collector finds them.
                tasks.clear()
                if calls is not None:
                    calls.extend(state.calls)

    async def run(self, inputs: Mapping[str, Any] | None = None) -> RunResult:
        """Run the pipeline on one request's inputs and return its outputs with provenance."""
        started, started_ts = time.perf_counter(), time.time()
        ctx = current_request() or RequestContext(
            request_id=new_request_id(),
            variant=self.variant,
            assignment="library",
            source="library",
        )
        # This run's own context: the adapter leaves the run's fingerprint in it.
        ctx = dataclasses.replace(ctx, build=ctx.build or self._build(), fingerprint=None)
        try:
            checked = check_inputs(self.spec, dict(inputs or {}))
        except InputError as exc:
            if not ctx.caller_traces_refusals:
                with request_scope(ctx):
                    await self._trace_refusal(exc, started_ts, started)
            raise
        calls: list[LLMCall] = []
        prompt_nodes = self.prompt_outputs()
        with request_scope(ctx):
            out = await self.execute([*self.spec.final_vars, *prompt_nodes], checked, calls=calls)
        order = {step: i for i, step in enumerate(self.project.contract.llm_steps)}
        calls.sort(key=lambda c: (order.get(c.step, len(order)), c.index or 0))
        rendered = {n: prompt_text(out[n]) for n in prompt_nodes}
        note = self.llm_token_note()
        notes = [note] if note else []
        if self.spec.notes:
            notes.extend(str(n) for n in out.get(self.spec.notes) or [])
        return RunResult(
            pipeline=self.name,
            variant=self.variant,
            answer=out[self.spec.answer],
            outputs={k: out[k] for k in self.spec.outputs},
            prompts=rendered,
            llm_calls=calls,
            fingerprint=_fresh(
                ctx.fingerprint
                if ctx.fingerprint is not None and ctx.build is self._build()
                else self.fingerprint(rendered)
            ),
            latency_s=round(time.perf_counter() - started, 4),
            notes=notes,
        )

    async def _trace_refusal(self, error: InputError, started_ts: float, clock: float) -> None:
        """A run refused by the input checks never starts its graph, so no lifecycle hook sees
        it: the attached trace adapters record it here. A trace store that cannot write is
        logged; the caller gets the input error all the same."""
        from promptdag.tracing.adapter import TraceAdapter

        for adapter in self.driver.adapter.adapters:
            if isinstance(adapter, TraceAdapter):
                try:
                    await adapter.record_refusal(
                        self.driver.graph, self.spec.final_vars, error, started_ts, clock
                    )
                except TraceStoreError as trace_error:
                    log.error("the refused run's trace was not stored: %s", trace_error)

    def llm_token_note(self) -> str:
        return token_counter(self.config["llm_model"]).note

    def selected_versions(self) -> dict[str, str]:
        return {n: self.config[version_key(n)] for n in sorted(self.prompts)}

    async def aclose(self) -> None:
        await self.llm.aclose()
        if self.llm.cache is not None:
            self.llm.cache.close()


async def render_prompts(
    pipeline: Pipeline, fixture: Mapping[str, Any], name: str = "fixture"
) -> dict[str, str]:
    """Each selected prompt rendered on `fixture` through the real DAG: the prompt node's text,
    or, where its LLM step declares a `rendered` node (per-item prompts), that node's first item.
    Upstream nodes named in the fixture are set directly; no LLM is called."""
    nodes = {n.name: n for n in pipeline.graph.nodes}
    prompts = sorted(pipeline.prompts)
    per_item = {
        s.prompt: s.rendered
        for s in pipeline.project.contract.llm_steps.values()
        if s.rendered and s.prompt in pipeline.prompts and s.rendered in nodes
    }
    wanted = prompts + sorted(set(per_item.values()))
    bad = sorted(k for k in fixture if k in pipeline.prompts or k in pipeline.config)
    if bad:
        raise ConfigError(
            [
                f"fixture {name!r} sets {', '.join(bad)}: fixtures give inputs and upstream "
                "values, never prompt nodes or config."
            ]
        )
    known = {k: v for k, v in fixture.items() if k in nodes}
    overrides = {k: v for k, v in known.items() if not nodes[k].is_external_input}
    inputs = {k: v for k, v in known.items() if nodes[k].is_external_input}
    try:
        pipeline.driver.validate_execution(wanted, overrides=overrides, inputs=inputs)
    except ValueError as exc:
        versions = ", ".join(f"{n}@{p.version}" for n, p in sorted(pipeline.prompts.items()))
        raise ConfigError(
            [
                f"{versions} cannot be rendered on {name!r}: {' '.join(str(exc).split())} Add the "
                f"missing input to every fixture in {pipeline.project.contract.relpath(pipeline.project.contract.fixtures)} "
                "(or give the prompt parameter a default)."
            ]
        ) from exc
    out = await pipeline.driver.execute(wanted, inputs=inputs, overrides=overrides)
    rendered = {p: prompt_text(out[p]) for p in prompts}
    for prompt, node in per_item.items():
        if out.get(node):
            rendered[prompt] = prompt_text(out[node][0])
    return rendered
