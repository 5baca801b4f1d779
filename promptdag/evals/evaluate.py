"""One assertion evaluated on one case's output: deterministic checks run here, judge-based ones
ask the judge, or are skipped ("skipped: no judge model configured") and never count as passed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from promptdag.errors import PromptdagError
from promptdag.evals.assertions import CHECKS, AssertionResult, CaseOutput, Status, python
from promptdag.evals.judge import NO_JUDGE_REASON, Judge
from promptdag.evals.options import ASSERTION_TYPES
from promptdag.evals.suite import AssertionSpec

__all__ = ["SKIPPED_NO_JUDGE", "evaluate", "expectation_met"]

SKIPPED_NO_JUDGE = (
    f"skipped: {NO_JUDGE_REASON} (run with --judge-model MODEL, or --config judge_model=MODEL)"
)
_RAW_CHARS = 300


def expectation_met(outcome: str, expect: str) -> bool:
    """Whether a pairwise outcome (win, tie, loss) satisfies `expect` (e.g. win-or-tie)."""
    return outcome in expect.split("-or-")


async def _rubric(opts: Mapping[str, Any], out: CaseOutput, judge: Judge) -> tuple[Status, str]:
    verdict = await judge.rubric(
        out.text_of(opts.get("output")), opts["rubric"], request=out.request
    )
    if verdict.passed is None:
        return (
            "error",
            f"judge {judge.model} gave no verdict; raw answer: {verdict.raw[:_RAW_CHARS]!r}",
        )
    word: Status = "pass" if verdict.passed else "fail"
    return word, f"judge {judge.model}: {word} — {verdict.reason or 'no reason given'}"


async def _pairwise(
    opts: Mapping[str, Any],
    out: CaseOutput,
    judge: Judge,
    outputs: Mapping[str, CaseOutput | None],
) -> tuple[Status, str]:
    reference = opts.get("reference")
    if reference is None:
        ref_case = opts["reference_case"]
        ref_out = outputs.get(ref_case)
        if ref_out is None:
            return "error", f"reference case {ref_case!r} has no output (its run failed)"
        reference = ref_out.text_of(opts.get("output"))
    expect = opts.get("expect", "win-or-tie")
    verdict = await judge.compare(
        out.text_of(opts.get("output")),
        reference,
        criteria=opts.get("criteria", ""),
        request=out.request,
    )
    if verdict.outcome == "error":
        raw = " | ".join(r[:_RAW_CHARS] for r in verdict.raw)
        return "error", f"judge {judge.model} gave no verdict in both orders; raw answers: {raw!r}"
    status: Status = "pass" if expectation_met(verdict.outcome, expect) else "fail"
    against = f"case {opts['reference_case']}" if "reference_case" in opts else "the reference"
    return status, (
        f"judge {judge.model}: {verdict.outcome} against {against} (expected {expect})"
        f" — {verdict.reason or 'no reason given'}"
    )


async def _judged(
    spec: AssertionSpec,
    out: CaseOutput,
    judge: Judge | None,
    outputs: Mapping[str, CaseOutput | None],
) -> tuple[Status, str]:
    if judge is None:
        return "skip", SKIPPED_NO_JUDGE
    try:
        if spec.type == "llm-rubric":
            return await _rubric(spec.options, out, judge)
        return await _pairwise(spec.options, out, judge, outputs)
    except PromptdagError as exc:
        return "error", f"judge {judge.model} failed: {exc}"


async def evaluate(
    spec: AssertionSpec,
    out: CaseOutput,
    *,
    judge: Judge | None = None,
    outputs: Mapping[str, CaseOutput | None] | None = None,
    load: Callable[[str], Any] | None = None,
) -> AssertionResult:
    """Evaluate `spec` on `out`; `outputs` (case id → its output) serves `reference_case`;
    `load` imports a `python` check's callable (default: from sys.path)."""
    if ASSERTION_TYPES[spec.type].judge:
        status, detail = await _judged(spec, out, judge, outputs or {})
    else:
        try:
            if spec.type == "python" and load is not None:
                status, detail = python(spec.options, out, load)
            else:
                status, detail = CHECKS[spec.type](spec.options, out)
        except Exception as exc:  # a check must never take the suite down: report it
            status, detail = (
                "error",
                f"{spec.type} could not be checked: {type(exc).__name__}: {exc}",
            )
    return AssertionResult(spec.index, spec.type, status, detail)
