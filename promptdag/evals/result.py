"""What a suite run produced: per-case and per-assertion results as pandas tables, the pass rate
against the suite's threshold, and the reports (Markdown, JSON, JUnit XML) rendered from them.

pass rate = passed cases / evaluated cases, where evaluated = pass + fail + error. A case whose
assertions were all skipped (no judge model) is not evaluated: it is counted apart and never
counts as passed. The suite passes when at least one case was evaluated and the pass rate
reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from promptdag.evals.assertions import AssertionResult, Status
from promptdag.evals.suite import Suite

__all__ = ["CASE_COLUMNS", "RESULT_COLUMNS", "CaseResult", "SuiteResult", "case_status"]

RESULT_COLUMNS = [
    "suite",
    "case",
    "variant",
    "index",
    "type",
    "status",
    "detail",
    "output_sha256",
]
CASE_COLUMNS = [
    "case",
    "variant",
    "source",
    "status",
    "pass",
    "fail",
    "skip",
    "error",
    "output",
    "output_sha256",
    "usage",
    "seconds",
    "run_error",
]
STATUSES: tuple[Status, ...] = ("pass", "fail", "skip", "error")


def case_status(run_error: str | None, assertions: list[AssertionResult]) -> Status:
    """error if the run or an assertion errored; else fail if one failed; else pass if one
    passed; else skip (every assertion was skipped)."""
    seen = {a.status for a in assertions}
    if run_error is not None or "error" in seen:
        return "error"
    if "fail" in seen:
        return "fail"
    return "pass" if "pass" in seen else "skip"


@dataclass(frozen=True)
class CaseResult:
    """One case: how it ran and what each of its assertions found."""

    case: str
    variant: str
    source: str
    assertions: tuple[AssertionResult, ...]
    output: str | None = None
    output_sha256: str | None = None
    usage: dict[str, Any] | None = None
    seconds: float = 0.0
    run_error: str | None = None

    @property
    def status(self) -> Status:
        return case_status(self.run_error, list(self.assertions))

    def count(self, status: Status) -> int:
        return sum(1 for a in self.assertions if a.status == status)


def _case_row(c: CaseResult) -> list[Any]:
    counts = [c.count(s) for s in STATUSES]
    output = [c.output, c.output_sha256, c.usage, c.seconds, c.run_error]
    return [c.case, c.variant, c.source, c.status, *counts, *output]


@dataclass
class SuiteResult:
    """A suite run: `results` (one row per assertion), `cases` (one row per case), the pass rate
    and `case_outputs` (case id → output text) for comparing two refs."""

    suite: Suite
    case_results: list[CaseResult]
    judge_model: str | None = None
    judge_calls: int = 0
    results: pd.DataFrame = field(init=False, repr=False)
    cases: pd.DataFrame = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = [
            [
                self.suite.name,
                c.case,
                c.variant,
                a.index,
                a.type,
                a.status,
                a.detail,
                c.output_sha256,
            ]
            for c in self.case_results
            for a in c.assertions
        ]
        self.results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        self.cases = pd.DataFrame([_case_row(c) for c in self.case_results], columns=CASE_COLUMNS)

    @property
    def threshold(self) -> float:
        return self.suite.threshold

    @property
    def counts(self) -> dict[str, int]:
        """Cases by status."""
        return {s: sum(1 for c in self.case_results if c.status == s) for s in STATUSES}

    @property
    def assertion_counts(self) -> dict[str, int]:
        return {s: sum(c.count(s) for c in self.case_results) for s in STATUSES}

    @property
    def evaluated(self) -> int:
        counts = self.counts
        return counts["pass"] + counts["fail"] + counts["error"]

    @property
    def pass_rate(self) -> float | None:
        """Passed / evaluated cases; None when no case was evaluated."""
        return self.counts["pass"] / self.evaluated if self.evaluated else None

    @property
    def passed(self) -> bool:
        rate = self.pass_rate
        return rate is not None and rate >= self.threshold

    @property
    def case_outputs(self) -> dict[str, str]:
        return {c.case: c.output for c in self.case_results if c.output is not None}

    def to_markdown(self) -> str:
        from promptdag.evals.report import to_markdown

        return to_markdown(self)

    def to_json(self) -> dict[str, Any]:
        from promptdag.evals.report import to_json

        return to_json(self)

    def to_junit(self) -> str:
        from promptdag.evals.report import to_junit

        return to_junit(self)

    def write_junit(self, path: str | Path) -> None:
        Path(path).write_text(self.to_junit(), encoding="utf-8")
