"""A built, validated Driver and the one way to run it: request inputs are checked against
REQUEST_INPUTS (never a prompt node or a config key), the run gets a whole-run deadline, and the
result carries its provenance fingerprint."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hamilton.async_driver import AsyncDriver
from hamilton.graph_types import HamiltonGraph

from promptdag.catalog import PromptVersion, version_key
from promptdag.config import REQUEST_INPUTS, canonical_config
from promptdag.errors import ConfigError, DeadlineExceededError, ForbiddenInputError, InputError
from promptdag.llm.client import LLM, run_scope
from promptdag.llm.tokens import token_counter
from promptdag.project import Project
from promptdag.provenance import fingerprint_id, library_versions, sha256_text

__all__ = ["SUMMARY_OUTPUTS", "Pipeline", "RunResult", "render_prompts"]

SUMMARY_OUTPUTS = (
    "summary",
    "chunk_summaries",
    "usage",
    "llm_calls",
    "document_tokens",
    "text_chunks",
    "chunk_summary_prompt",
    "final_summary_prompt",
)
_RUN_TASKS: contextvars.ContextVar[list[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "promptdag_run_tasks", default=None
)
_MAX_QUERY_CHARS = 2_000
_MAX_CONTENT_TYPE_CHARS = 100


@dataclass(frozen=True)
class RunResult:
    """What one run produced, with what produced it."""

    summary: str
    outputs: dict[str, Any]
    fingerprint: dict[str, Any]
    latency_s: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = self.outputs
        return {
            "summary": self.summary,
            "model": out["llm_calls"][-1]["model"] if out.get("llm_calls") else None,
            "usage": out.get("usage"),
            "latency_s": self.latency_s,
            "document": {
                "tokens": out.get("document_tokens"),
                "chunks": len(out.get("text_chunks") or []),
                **({"pages": len(out["pdf_document"].pages)} if "pdf_document" in out else {}),
            },
            "chunk_summaries": out.get("chunk_summaries"),
            "prompts": {n: {"rendered": out.get(n)} for n in self.fingerprint["prompts"]},
            "llm_calls": out.get("llm_calls"),
            "notes": self.notes,
            "provenance": self.fingerprint,
        }


class _DropHamiltonErrorLogs(logging.Filter):
    """Hamilton logs a failing node's inputs (document text, passwords) and a chat invitation;
    promptdag raises a typed error instead, so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def _quiet_hamilton() -> None:
    for name in ("hamilton.async_driver", "hamilton.driver", "hamilton.execution.graph_functions"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropHamiltonErrorLogs) for f in log.filters):
            log.addFilter(_DropHamiltonErrorLogs())


def _track_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Record the tasks Hamilton creates for a run (it makes one per node and abandons them on
    failure), so a failed or timed-out run can cancel and reap its own tasks, and no others."""
    previous = loop.get_task_factory()
    if getattr(previous, "_promptdag", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = (
            previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[assignment]
        )
        sink = _RUN_TASKS.get()
        if sink is not None:
            sink.append(task)
        return task

    factory._promptdag = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]


async def _reap(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _check_request(inputs: Mapping[str, Any]) -> None:
    bad = sorted(k for k in inputs if k not in REQUEST_INPUTS)
    if bad:
        raise ForbiddenInputError(bad, REQUEST_INPUTS)
    query = inputs.get("user_query", "")
    if not isinstance(query, str) or len(query) > _MAX_QUERY_CHARS:
        raise InputError(f"user_query must be text of at most {_MAX_QUERY_CHARS} characters.")
    ctype = inputs.get("content_type")
    if ctype is not None and (
        not isinstance(ctype, str)
        or not ctype.strip()
        or len(ctype) > _MAX_CONTENT_TYPE_CHARS
        or any(c in ctype for c in "$\n\r{}<>")
    ):
        raise InputError(
            f"content_type={ctype!r} is not allowed: a short label such as 'a news article' "
            f"(at most {_MAX_CONTENT_TYPE_CHARS} characters, no $ {{ }} < > or line breaks)."
        )
    if ("pdf_bytes" in inputs) == ("text" in inputs):
        raise InputError("send exactly one document: pdf_bytes (a PDF) or text (plain text).")


@dataclass
class Pipeline:
    """One variant's Driver, its LLM client, its selected prompts and its build-time provenance."""

    project: Project
    variant: str
    config: dict[str, Any]
    driver: AsyncDriver
    llm: LLM
    prompts: dict[str, PromptVersion]
    git: dict[str, Any]
    _ready: bool = False
    _build_info: dict[str, Any] | None = None

    @property
    def graph(self) -> HamiltonGraph:
        return HamiltonGraph.from_graph(self.driver.graph)

    def build_info(self) -> dict[str, Any]:
        """Everything fixed when the Driver was built (no per-request data); computed once,
        a deep copy each call so callers may change theirs."""
        if self._build_info is None:
            self._build_info = self._compute_build_info()
        return copy.deepcopy(self._build_info)

    def _compute_build_info(self) -> dict[str, Any]:
        graph = self.graph
        return {
            "variant": self.variant,
            "git": self.git,
            "config": self.config,
            "config_sha256": sha256_text(canonical_config(self.config)),
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
            "libraries": library_versions(),
        }

    def fingerprint(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Build info plus the hash of each prompt as rendered in this run, and an id over all."""
        info = self.build_info()
        prompts = {
            n: {**meta, "rendered_sha256": sha256_text(str(outputs[n])) if n in outputs else None}
            for n, meta in info.pop("prompt_versions").items()
        }
        info["prompts"] = prompts
        info["id"] = fingerprint_id(info)
        return info

    async def execute(
        self, outputs: list[str], inputs: Mapping[str, Any], *, document_text: str | None = None
    ) -> dict[str, Any]:
        """Run the DAG for `outputs`. Only REQUEST_INPUTS are accepted from callers."""
        _check_request({**inputs, **({"text": document_text} if document_text is not None else {})})
        if not self._ready:
            await self.driver.ainit()
            self._ready = True
        hamilton_inputs = {k: v for k, v in inputs.items() if k != "text"}
        hamilton_inputs["llm"] = self.llm
        overrides = {"document_text": document_text} if document_text is not None else None
        deadline = float(self.config["llm_deadline_s"])
        _quiet_hamilton()
        _track_tasks(asyncio.get_running_loop())
        tasks: list[asyncio.Task[Any]] = []
        token = _RUN_TASKS.set(tasks)
        with run_scope(deadline) as state:
            try:
                async with asyncio.timeout(deadline):
                    return await self.driver.execute(
                        outputs, inputs=hamilton_inputs, overrides=overrides
                    )
            except TimeoutError as exc:
                await _reap(tasks)
                raise DeadlineExceededError(
                    f"the run passed its deadline of {deadline:g} s during step "
                    f"{state.step or 'document_text'}. Raise llm_deadline_s, or send a shorter document.",
                    backend=self.llm.settings.backend,
                    model=self.llm.settings.model,
                    step=state.step or "document_text",
                ) from exc
            except BaseException:
                await _reap(tasks)
                raise
            finally:
                _RUN_TASKS.reset(token)

    async def summarize(self, *, text: str | None = None, **inputs: Any) -> RunResult:
        """Summarize one document (PDF bytes or text) and return the result with provenance."""
        started = time.perf_counter()
        wanted = list(SUMMARY_OUTPUTS) + ([] if text is not None else ["pdf_document"])
        out = await self.execute(wanted, inputs, document_text=text)
        token_note = self.llm_token_note()
        notes = [token_note] if token_note else []
        doc = out.get("pdf_document")
        if doc is not None:
            if doc.pypdf_warnings:
                notes.append(
                    f"pypdf reported {doc.pypdf_warnings} warning(s) while reading the PDF "
                    f"(first: {doc.first_warning!r}); the text may be incomplete."
                )
            notes.extend(doc.notes)
        return RunResult(
            summary=out["summary"],
            outputs=out,
            fingerprint=self.fingerprint(out),
            latency_s=round(time.perf_counter() - started, 4),
            notes=notes,
        )

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
    plus `<task>_requests` (the per-item rendering) where the dataflow has one. Upstream nodes
    named in the fixture (text_chunks, chunk_summaries) are set directly; no LLM is called."""
    nodes = {n.name: n for n in pipeline.graph.nodes}
    prompts = sorted(pipeline.prompts)
    per_item = [f"{p.removesuffix('_prompt')}_requests" for p in prompts]
    wanted = prompts + [r for r in per_item if r in nodes]
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
                f"{versions} cannot be rendered on {name!r}: {' '.join(str(exc).split())} Add the missing input to every "
                "fixture in prompts/fixtures.toml (or give the prompt parameter a default)."
            ]
        ) from exc
    out = await pipeline.driver.execute(wanted, inputs=inputs, overrides=overrides)
    rendered = {p: str(out[p]) for p in prompts}
    for prompt, requests in zip(prompts, per_item, strict=True):
        if out.get(requests):
            rendered[prompt] = str(out[requests][0])
    return rendered
