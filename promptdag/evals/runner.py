"""Run a suite: one Pipeline of the suite's declared pipeline per variant the cases use (built
through the driver factory with the given overrides, e.g. `{"llm_cache": "replay-only"}`), every
case's inputs run through `Pipeline.run` with a few at once, each case's failure caught and
reported as its error, then every assertion evaluated on the answer or the output it names.

Variant of a case: the case's own `variant`, else the `variant` argument, else the suite's,
else the variants file's default. Problems that stop the whole suite (unknown case ids, a
variant or override that does not build) raise ConfigError/ProjectError before any case runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from promptdag.contract import PipelineSpec
from promptdag.errors import PromptdagError
from promptdag.evals.assertions import AssertionResult, CaseOutput
from promptdag.evals.evaluate import evaluate
from promptdag.evals.judge import Judge
from promptdag.evals.result import CaseResult, SuiteResult
from promptdag.evals.suite import Case, Suite
from promptdag.factory import build_pipeline
from promptdag.pipeline import Pipeline
from promptdag.project import Project, load_project
from promptdag.variants import load_variants

__all__ = ["request_text", "run_suite"]

# How much of one input value the judge reads (the rest is cut, saying how long it was).
_REQUEST_CHARS = 4000


def _with_references(suite: Suite, selected: list[Case]) -> list[Case]:
    """The selected cases plus the cases their pairwise assertions compare against."""
    wanted = {c.id for c in selected}
    wanted |= {
        a.options["reference_case"]
        for c in selected
        for a in c.asserts
        if "reference_case" in a.options
    }
    return [c for c in suite.cases if c.id in wanted]


def _variant_of(case: Case, variant: str | None, suite: Suite, default: str) -> str:
    return case.variant or variant or suite.variant or default


async def _build(
    variants: Iterable[str], suite: Suite, project: Project, overrides: Mapping[str, Any]
) -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {}
    try:
        for name in sorted(set(variants)):
            pipelines[name] = build_pipeline(
                pipeline=suite.pipeline or None, variant=name, overrides=overrides, project=project
            )
    except BaseException:
        await _close(pipelines)
        raise
    return pipelines


async def _close(pipelines: Mapping[str, Pipeline]) -> None:
    for pipeline in pipelines.values():
        await pipeline.aclose()


def request_text(case: Case, spec: PipelineSpec) -> str:
    """The case's inputs as the judge reads them: one `name: value` line each (a file by its
    path, a secret input left out, a long value cut)."""
    lines = [f"{name}: <file {path}>" for name, path in sorted(case.files.items())]
    for name, value in sorted(case.inputs.items()):
        if name in spec.inputs and spec.inputs[name].secret:
            continue
        text = str(value)
        if len(text) > _REQUEST_CHARS:
            text = f"{text[:_REQUEST_CHARS]}… ({len(text)} chars in all)"
        lines.append(f"{name}: {text}")
    return "\n".join(lines)


async def _run_case(
    case: Case, pipeline: Pipeline, root: Path
) -> tuple[CaseOutput | None, str | None, float]:
    """The case's output, or the one-line reason it did not run; never raises (but cancels)."""
    started = time.perf_counter()
    try:
        run = await pipeline.run(case.request_inputs(root, pipeline.spec))
    except PromptdagError as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
    except OSError as exc:
        return None, f"cannot read {case.source}: {exc}", time.perf_counter() - started
    except Exception as exc:  # a bug must not hide the other cases; it is reported as an error
        return None, f"internal error: {type(exc).__name__}: {exc}", time.perf_counter() - started
    data = run.as_dict()
    answer = pipeline.spec.answer
    out = CaseOutput(
        case_id=case.id,
        variant=pipeline.variant,
        text=run.answer_text(),
        usage=run.usage,
        fingerprint=run.fingerprint,
        outputs={**data["outputs"], answer: data["answer"]},
        answer=answer,
        model=run.model,
        inputs=dict(case.inputs),
        request=request_text(case, pipeline.spec),
    )
    return out, None, time.perf_counter() - started


async def _assess(
    case: Case,
    ran: tuple[CaseOutput | None, str | None, float],
    variant: str,
    judge: Judge | None,
    outputs: Mapping[str, CaseOutput | None],
    load: Callable[[str], Any],
) -> CaseResult:
    out, error, seconds = ran
    if out is None:
        results = tuple(
            AssertionResult(a.index, a.type, "error", "not evaluated: the case did not run")
            for a in case.asserts
        )
    else:
        results = tuple(
            [await evaluate(a, out, judge=judge, outputs=outputs, load=load) for a in case.asserts]
        )
    return CaseResult(
        case=case.id,
        variant=variant,
        source=case.source,
        assertions=results,
        output=None if out is None else out.text,
        output_sha256=None if out is None else hashlib.sha256(out.text.encode()).hexdigest(),
        usage=None if out is None else out.usage,
        seconds=round(seconds, 4),
        run_error=error,
    )


async def run_suite(
    suite: Suite,
    *,
    project: Project | str | Path | None = None,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    case_ids: Iterable[str] | None = None,
    judge: Judge | None = None,
    concurrency: int = 2,
    load: Callable[[str], Any] | None = None,
) -> SuiteResult:
    """Run the cases of `suite` (those in `case_ids`, plus any they reference) on the project's
    current code and evaluate their assertions. Case failures become error results; the judge
    is used, not closed (its owner closes it). `load` imports a `python` check's callable
    (default: from the project's tree; the gate loads them from the base ref's)."""
    proj = project if isinstance(project, Project) else load_project(project)
    selected = suite.select(case_ids)
    to_run = _with_references(suite, selected)
    defined = load_variants(proj.variants_path)
    if variant is not None:
        defined.get(variant)  # an unknown name is a VariantError listing the defined ones
    variants = {c.id: _variant_of(c, variant, suite, defined.default) for c in to_run}
    pipelines = await _build(variants.values(), suite, proj, dict(overrides or {}))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def run(case: Case) -> tuple[CaseOutput | None, str | None, float]:
        async with gate:
            return await _run_case(case, pipelines[variants[case.id]], suite.root)

    try:
        ran = dict(
            zip([c.id for c in to_run], await asyncio.gather(*map(run, to_run)), strict=True)
        )
    finally:
        await _close(pipelines)
    outputs = {i: r[0] for i, r in ran.items()}
    calls_before = 0 if judge is None else len(judge.calls)
    loader = load or proj.import_object
    results = [
        await _assess(c, ran[c.id], variants[c.id], judge, outputs, loader) for c in selected
    ]
    return SuiteResult(
        suite,
        results,
        judge_model=None if judge is None else judge.model,
        judge_calls=0 if judge is None else len(judge.calls) - calls_before,
    )
