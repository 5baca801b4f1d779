"""`promptdag gate BASE`: one verdict on a prompt change. Lock check + the review report of
BASE → the working tree + the eval cases a changed prompt can affect (cases and thresholds read
from BASE, so a change cannot loosen its own bar; a case is affected when an output of its suite's
declared pipeline is downstream of a changed node, when an input file it reads changed, or when
the change edits its definition) + a pairwise regression judge on base vs head answers. Each
case's cost is estimated at the price of the model its variant configures, so a model switch
shows as cost. Exit 0 pass, 1 gate failed, 2 could not run, 3 needs approval.

This module holds what the gate returns and how it starts; the steps themselves, which need
Hamilton, pandas and the openai SDK, are in `promptdag.gate.steps`, imported only once the
gate's helper processes are on their way (`run_gate`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptdag.gate.counting import TokenCounts
from promptdag.gate.lockfile import LockCheck
from promptdag.gate.refs import default_base, ref_worktree, repo_root
from promptdag.project import find_project

if TYPE_CHECKING:
    from promptdag.gate.report import Review
    from promptdag.gate.selection import Selection

__all__ = ["GateOptions", "GateResult", "run_gate"]


@dataclass(frozen=True)
class GateOptions:
    base: str | None  # None: the merge base with the target branch (refs.default_base)
    report_dir: Path
    run_all: bool = False
    cache: str = "use"
    judge_config: dict[str, Any] = field(default_factory=dict)
    max_loss_share: float = 0.2
    require_judge: bool = False


@dataclass
class SuiteGate:
    name: str
    selection: Selection
    result: dict[str, Any] | None = None  # SuiteResult.to_json() of the head
    base: dict[str, Any] | None = None  # the same cases run on the base tree
    judge: dict[str, Any] = field(default_factory=dict)  # case → outcome, plus totals
    usage_growth: float = 0.25  # from the base suite
    rises: list[str] = field(default_factory=list)  # usage over the allowed growth
    drops: list[str] = field(default_factory=list)  # usage well under the base's
    # A changed variant run on cases written for another: the bar is the base's result on the
    # same variant (no case that passed there may fail), not the suite's threshold.
    against_base: bool = False

    @property
    def failed(self) -> bool:
        if self.result is None:
            return False
        if self.against_base and self.base is not None:
            return bool(self.regressions())
        return not self.result["passed"]

    def regressions(self) -> list[str]:
        """Cases that passed on the base and do not pass at head."""
        return [
            case
            for case, before, after in self.pairs()
            if before is not None
            and before["status"] == "pass"
            and (after is None or after["status"] != "pass")
        ]

    def pairs(self) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
        """(case id, base case, head case) for every selected case, in selection order."""
        base = {c["case"]: c for c in (self.base or {}).get("cases", [])}
        head = {c["case"]: c for c in (self.result or {}).get("cases", [])}
        return [(c, base.get(c), head.get(c)) for c in self.selection.selected]


@dataclass
class GateResult:
    base: str
    lock: LockCheck
    review: Review
    suites: list[SuiteGate]
    problems: list[str]
    judge_note: str
    llm_calls: dict[str, int]
    max_loss_share: float
    not_covered: list[str] = field(default_factory=list)  # changes users get, with no case
    notes: list[str] = field(default_factory=list)  # changes not evaluated, and why
    approvals: list[str] = field(default_factory=list)  # what a judge or a reviewer must pass
    unjudged: list[str] = field(default_factory=list)  # failures under --require-judge

    def reasons(self) -> list[str]:
        out = list(self.problems) + self.lock.messages() + self.not_covered + self.unjudged
        for s in self.suites:
            if s.result is None:
                continue
            errors: dict[str, list[str]] = {}
            for case in s.result["cases"]:
                if case.get("run_error"):
                    errors.setdefault(case["run_error"], []).append(case["case"])
            out += [
                f"eval suite {s.name}: case(s) {', '.join(cases)} could not run: {error}"
                for error, cases in errors.items()
            ]
            if s.failed and s.against_base and s.base is not None:
                out.append(
                    f"eval suite {s.name}: case(s) {', '.join(s.regressions())} passed on the "
                    "base with this variant and do not pass at head"
                )
            elif s.failed:
                out.append(
                    f"eval suite {s.name}: pass rate {_rate(s.result['pass_rate'])} is below its "
                    f"threshold {_rate(s.result['threshold'])} (read from {self.base})"
                )
            out += [f"eval suite {s.name}: {r}" for r in s.rises]
            if s.judge.get("failed"):
                out.append(
                    f"eval suite {s.name}: the regression judge found {s.judge['losses']} "
                    f"loss(es) in {s.judge['judged']} case(s), over the allowed share of "
                    f"{self.max_loss_share:.0%}"
                )
        return out

    @property
    def passed(self) -> bool:
        return not self.reasons()

    @property
    def verdict(self) -> str:
        """`failed` (any reason), else `needs approval` (a live variant's prompts or model
        settings changed and no judge ran, or a static check found something), else `passed`."""
        if not self.passed:
            return "failed"
        return "needs approval" if self.approvals else "passed"

    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed, 3 needs a judge or a reviewer's approval (2: could not run)."""
        return {"passed": 0, "failed": 1, "needs approval": 3}[self.verdict]


def _rate(value: float | None) -> str:
    return "n/a (no case was evaluated)" if value is None else f"{value:.0%}"


_METRICS = (("calls", "LLM calls"), ("tokens", "tokens"), ("cost_usd", "cost"))


def _metric(usage: dict[str, Any] | None, key: str) -> float | None:
    if not usage:
        return None
    if key == "tokens":
        return float(usage.get("input_tokens", 0) + usage.get("output_tokens", 0))
    value = usage.get(key)
    return None if value is None else float(value)


def _figure(key: str, value: float) -> str:
    return f"${value:.6f}".rstrip("0").rstrip(".") if key == "cost_usd" else f"{value:g}"


def usage_changes(
    case: str, base: dict[str, Any] | None, head: dict[str, Any] | None, growth: float
) -> tuple[list[str], list[str]]:
    """(rises over the allowed growth, drops beyond it) of one case's calls, tokens and cost
    against the base's, each one line with the figures."""
    rises, drops = [], []
    for key, label in _METRICS:
        before, after = _metric(base, key), _metric(head, key)
        if before is None or after is None or before == after:
            continue
        change = (after - before) / before if before else float("inf")
        figures = f"{_figure(key, before)} → {_figure(key, after)}"
        share = "from none" if before == 0 else f"{change:+.0%}"
        if change > growth:
            rises.append(
                f"case {case}: {label} {figures} ({share}), over the +{growth:.0%} allowed"
            )
        elif change < -growth:
            drops.append(
                f"case {case}: {label} {figures} ({share}): fewer calls or tokens can mean "
                "content was dropped"
            )
    return rises, drops


def run_gate(opts: GateOptions) -> GateResult:
    """Run every step against BASE; raises GateError when the gate cannot run at all."""
    head_root = find_project()
    repo = repo_root(head_root)
    if opts.base is None:
        base_ref, base_label = default_base(repo)
    else:
        base_ref = base_label = opts.base
    opts = dataclasses.replace(opts, base=base_label)
    # The token counter is forked before the heavy imports below: it loads its encoding on
    # another core while this process imports Hamilton, pandas and the openai SDK.
    with TokenCounts.start() as counts, ref_worktree(repo, base_ref) as tree:
        from promptdag.gate.steps import run_steps

        return run_steps(opts, head_root, repo, base_ref, tree, counts)
