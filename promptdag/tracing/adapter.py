"""The Hamilton lifecycle adapter that traces every run: one request row (who, which variant
and build, status, totals) and one row per LLM call (prompt node and version, rendered prompt,
response, tokens, cost, latency, retries), committed before the run returns.

Every call the run attempted is recorded, failed runs included: the calls come from the run's
own record (`RunState.calls`, kept by the LLM client inside `Pipeline.run`), which holds the
answered calls of a fan-out that failed part-way, the failed call with its error and attempts,
and the calls cancelled with it. A run outside a run scope (a bare Driver) falls back to the
calls among its requested outputs (`LLMCall` or a list of them, found by type).

Cheap per run: no per-node hook (the async driver would start a task per node for it); a
sync hook when the graph starts, and everything else once in `post_graph_execute`, which also
computes the run's fingerprint once for `Pipeline.run`; hashing and SQL happen in the writer
thread. A run refused by the input checks never starts its graph: `Pipeline.run` records it
through `record_refusal`. Each submit tells the writer whether other runs are in flight (more
submits are coming), so that under load one transaction stores many runs.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hamilton.graph_types import HamiltonGraph
from hamilton.lifecycle.base import BasePostGraphExecuteAsync, BasePreGraphExecute

from promptdag.catalog import version_key
from promptdag.llm.client import LLMCall, current_run
from promptdag.prompting import prompt_text
from promptdag.tracing.context import RequestContext, current_request, http_status, new_request_id

if TYPE_CHECKING:
    from hamilton import graph

    from promptdag.tracing.store import TraceWriter

__all__ = ["TraceAdapter"]


@dataclass
class _Run:
    started: float
    clock: float
    final_vars: list[str]
    calls: list[tuple[str, str, float, LLMCall]] = field(default_factory=list)


class TraceAdapter(BasePreGraphExecute, BasePostGraphExecuteAsync):
    """Feeds a TraceWriter. Runs without a RequestContext are recorded as source "library"."""

    def __init__(self, writer: TraceWriter):
        self.writer = writer
        self.runs: dict[str, _Run] = {}
        self._graph_builds: weakref.WeakKeyDictionary[Any, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def pre_graph_execute(
        self,
        *,
        run_id: str,
        graph: graph.FunctionGraph,
        final_vars: list[str],
        inputs: dict[str, Any],
        overrides: dict[str, Any],
    ) -> None:
        self.runs[run_id] = _Run(time.time(), time.perf_counter(), list(final_vars))

    async def post_graph_execute(
        self,
        *,
        run_id: str,
        graph: graph.FunctionGraph,
        success: bool,
        error: Exception | None,
        results: dict[str, Any] | None,
    ) -> None:
        run = self.runs.pop(run_id, None)
        if run is None:
            return
        state = current_run()
        if state is not None:  # the run's own record: failed and cancelled calls too
            run.calls = _attributed(state.calls, graph)
        elif results is not None:  # a bare Driver: the calls among the requested outputs
            run.calls = _returned(results, graph)
        ctx = current_request() or RequestContext(
            request_id=new_request_id(), variant="", assignment="", source="library"
        )
        build = ctx.build or self._graph_build(graph)
        request = _request_row(run, ctx, build, graph, _status(success, error), results)
        request["http_status"] = http_status(error, request["error_type"])
        calls = [_call_row(i, c, build) for i, c in enumerate(run.calls)]
        # Other runs in flight will submit soon: the writer may commit them all together.
        await self.writer.submit(request, calls, busy=bool(self.runs))

    async def record_refusal(
        self,
        graph: graph.FunctionGraph,
        final_vars: list[str],
        error: BaseException,
        started: float,
        clock: float,
    ) -> None:
        """Record a run refused before its graph started (its inputs failed the checks, so no
        lifecycle hook ran): a request row with the error and its HTTP status, no calls.
        `started` is its time.time(), `clock` its time.perf_counter() when it began."""
        ctx = current_request() or RequestContext(
            request_id=new_request_id(), variant="", assignment="", source="library"
        )
        build = ctx.build or self._graph_build(graph)
        run = _Run(started, clock, list(final_vars))
        request = _request_row(run, ctx, build, graph, _status(False, error), None)
        request["http_status"] = http_status(error)
        await self.writer.submit(request, [], busy=bool(self.runs))

    def _graph_build(self, graph: graph.FunctionGraph) -> dict[str, Any]:
        """For runs outside a request: prompt versions and hashes from the graph, once per graph."""
        build = self._graph_builds.get(graph)
        if build is None:
            hg = HamiltonGraph.from_graph(graph)
            prompts = {
                n.name: {
                    "version": graph.config.get(version_key(n.name)),
                    "source_sha256": n.version,
                }
                for n in hg.nodes
                if version_key(n.name) in graph.config and not n.is_external_input
            }
            config = {k: graph.config.get(k) for k in ("llm_backend", "llm_model")}
            build = {"graph_version": hg.version, "prompt_versions": prompts, "config": config}
            self._graph_builds[graph] = build
        return build


def _attributed(
    calls: list[LLMCall], graph: graph.FunctionGraph
) -> list[tuple[str, str, float, LLMCall]]:
    """The run's calls with their node and module, steps in the order they first ended, each
    step's items in item order."""
    first: dict[str, int] = {}
    for i, call in enumerate(calls):
        first.setdefault(call.step, i)
    ordered = sorted(calls, key=lambda c: (first[c.step], -1 if c.index is None else c.index))
    out = []
    for call in ordered:
        n = graph.nodes.get(call.node)
        module = "" if n is None else n.tags.get("module", "")
        out.append((call.node, module, call.finished_ts or time.time(), call))
    return out


def _returned(
    results: dict[str, Any], graph: graph.FunctionGraph
) -> list[tuple[str, str, float, LLMCall]]:
    """The LLM calls a bare Driver's run returned (outputs that are an LLMCall or a list of
    them), with their node and module."""
    out: list[tuple[str, str, float, LLMCall]] = []
    now = time.time()
    for name, value in results.items():
        calls = [value] if isinstance(value, LLMCall) else value if isinstance(value, list) else []
        n = graph.nodes.get(name)
        module = "" if n is None else n.tags.get("module", "")
        out.extend((name, module, c.finished_ts or now, c) for c in calls if isinstance(c, LLMCall))
    return out


def _status(success: bool, error: BaseException | None) -> tuple[str, str | None, str | None]:
    if success:
        return "ok", None, None
    if error is None:  # cancelled: the run's deadline passed, or the service is stopping
        state = current_run()
        if state is not None and state.deadline is not None and time.monotonic() >= state.deadline:
            return "error", "DeadlineExceededError", "the run passed its deadline"
        return "error", "CancelledError", "the run was cancelled"
    return "error", type(error).__name__, str(error)


def _request_row(
    run: _Run,
    ctx: RequestContext,
    build: dict[str, Any],
    graph: graph.FunctionGraph,
    outcome: tuple[str, str | None, str | None],
    results: dict[str, Any] | None,
) -> dict[str, Any]:
    git = build.get("git") or {}
    prompts: dict[str, Any] = build.get("prompt_versions") or {}
    costs = [c.cost_usd for *_, c in run.calls]
    status, error_type, error_message = outcome
    config = build.get("config") or {}
    return {
        "request_id": ctx.request_id,
        "started_ts": run.started,
        "finished_ts": time.time(),
        "latency_s": round(time.perf_counter() - run.clock, 6),
        "source": ctx.source,
        "subject_id": ctx.subject_id,
        "conversation_id": ctx.conversation_id,
        "variant": ctx.variant or None,
        "assignment": ctx.assignment or None,
        "dataflow": _dataflow(graph, run.final_vars, prompts),
        "backend": config.get("llm_backend"),
        "model": config.get("llm_model") or (run.calls[-1][3].model if run.calls else None),
        "git_sha": git.get("sha"),
        "git_dirty": git.get("dirty"),
        "fingerprint_id": _fingerprint_id(ctx, build, results) if status == "ok" else None,
        "graph_version": build.get("graph_version"),
        "config_sha256": build.get("config_sha256"),
        "prompt_versions": prompts,
        "prompt_set": " ".join(f"{n}@{p.get('version')}" for n, p in sorted(prompts.items())),
        "status": status,
        "error_type": error_type,
        "error_message": error_message,
        "calls": len(run.calls),
        "input_tokens": sum(c.input_tokens for *_, c in run.calls),
        "output_tokens": sum(c.output_tokens for *_, c in run.calls),
        "cost_usd": None if None in costs else round(sum(c for c in costs if c is not None), 8),
        "pipeline": build.get("pipeline"),
        "key_id": ctx.key_id,
        "client_request_id": ctx.client_request_id,
        "incomplete": any(c.incomplete for *_, c in run.calls),
    }


def _call_row(
    index: int, entry: tuple[str, str, float, LLMCall], build: dict[str, Any]
) -> dict[str, Any]:
    node_name, module, finished, call = entry
    prompt_node = (build.get("llm_steps") or {}).get(call.step)
    meta = (build.get("prompt_versions") or {}).get(prompt_node or "") or {}
    return {
        "call_index": index,
        "node": node_name,
        "dataflow": module,
        "step": call.step,
        "chunk_index": call.index,
        "prompt_node": prompt_node,
        "prompt_version": meta.get("version"),
        "prompt_source_sha256": meta.get("source_sha256"),
        "prompt_text": call.prompt,
        "response_text": _response_text(call),
        "model": call.model,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cost_usd": call.cost_usd,
        "latency_s": call.latency_s,
        "attempts": call.attempts,
        "cached": call.cached,
        "finish_reason": call.finish_reason,
        "cache_key": call.request_key or None,
        "finished_ts": finished,
        "incomplete": call.incomplete,
        "error_type": call.error_type,
        "error_message": call.error_message,
    }


def _response_text(call: LLMCall) -> str | None:
    """What the model answered: its text, or its refusal; None when a failed call got no answer."""
    if call.refusal and not call.text:
        return call.refusal
    if call.error_type is not None and not call.text and not call.finish_reason:
        return None
    return call.text


def _dataflow(graph: graph.FunctionGraph, final_vars: list[str], prompts: dict[str, Any]) -> str:
    """The dataflow modules that define the requested outputs (prompt packs left out)."""
    modules = set()
    for name in final_vars:
        n = graph.nodes.get(name)
        if n is not None and name not in prompts:
            modules.add(n.tags.get("module", ""))
    return ",".join(sorted(m for m in modules if m))


def _fingerprint_id(
    ctx: RequestContext, build: dict[str, Any], results: dict[str, Any] | None
) -> str | None:
    """The id `Pipeline.fingerprint` gives this run (the same recipe), when the build is known;
    the whole fingerprint is left in the run's context for `Pipeline.run`."""
    if "libraries" not in build or results is None:
        return None
    from promptdag.pipeline import run_fingerprint

    rendered = {n: prompt_text(results[n]) for n in build["prompt_versions"] if n in results}
    ctx.fingerprint = run_fingerprint(build, rendered)
    return str(ctx.fingerprint["id"])
