"""`promptdag gate BASE`: one verdict on a prompt change. Lock check + the review report of
BASE → the working tree + the eval cases a changed prompt can affect (cases and thresholds read
from BASE, so a change cannot loosen its own bar; a case is affected when an output of its suite's
declared pipeline is downstream of a changed prompt node) + a pairwise regression judge on base vs
head answers. Exit 0 pass, 1 gate failed, 2 could not run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptdag.config import data_dir
from promptdag.contract import Contract, PipelineSpec, load_contract
from promptdag.errors import ConfigError, GateError, ProjectError, PromptdagError
from promptdag.evals import (
    Judge,
    Suite,
    judge_from_config,
    list_suites,
    load_suite,
    run_suite,
    suite_changes,
)
from promptdag.gate.lockfile import LOCK_FILE, LockCheck, check_lock, lock_from_snapshot, read_lock
from promptdag.gate.refs import project_subdir, ref_worktree, repo_root, snapshot_tree
from promptdag.gate.report import Review, compare
from promptdag.gate.selection import Selection, changed_prompt_nodes, select_cases
from promptdag.project import find_project

__all__ = ["GateOptions", "GateResult", "run_gate"]


@dataclass(frozen=True)
class GateOptions:
    base: str
    report_dir: Path
    run_all: bool = False
    cache: str = "use"
    judge_config: dict[str, Any] = field(default_factory=dict)
    max_loss_share: float = 0.2


@dataclass
class SuiteGate:
    name: str
    selection: Selection
    result: dict[str, Any] | None = None  # SuiteResult.to_json()
    judge: dict[str, Any] = field(default_factory=dict)  # case → outcome, plus totals

    @property
    def failed(self) -> bool:
        return self.result is not None and not self.result["passed"]


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

    def reasons(self) -> list[str]:
        out = list(self.problems) + self.lock.messages()
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
            if s.failed:
                out.append(
                    f"eval suite {s.name}: pass rate {s.result['pass_rate']} is below its "
                    f"threshold {s.result['threshold']} (read from {self.base})"
                )
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


def _base_suites(base_root: Path, base_snap: dict[str, Any]) -> dict[str, Suite]:
    """The base ref's suites, validated against the base tree (its own contract, files and
    variants); none when the base has no promptdag contract (an absent snapshot) or no suites
    directory yet."""
    if base_snap.get("absent") or not load_contract(base_root).suites.is_dir():
        return {}
    return {name: load_suite(name, root=base_root) for name in list_suites(base_root)}


def _cases(
    suite: Suite, spec: PipelineSpec, head: dict[str, Any], base: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each case with the variant it runs at head and the one it ran at base (a case without a
    variant follows the default variant, which the change may have moved), and the outputs of
    its pipeline, the answer first."""
    outputs = list(dict.fromkeys([spec.answer, *spec.outputs]))
    return [
        {
            "id": c.id,
            "variant": c.variant or suite.variant or head.get("default_variant"),
            "base_variant": c.variant or suite.variant or base.get("default_variant"),
            "outputs": outputs,
        }
        for c in suite.cases
    ]


def _base_outputs(
    base_root: Path, suite: Suite, case_ids: list[str], env: dict[str, str]
) -> dict[str, str]:
    """The selected cases' outputs on the base tree, in a subprocess in its worktree."""
    cmd = [
        sys.executable,
        "-P",
        "-c",
        "from promptdag.cli import main; main()",
        "eval",
        "--suite",
        str(suite.path),
        "--json",
    ]
    for case in case_ids:
        cmd += ["--case", case]
    proc = subprocess.run(
        cmd, cwd=base_root, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if proc.returncode not in (0, 1):
        raise GateError(
            f"running suite {suite.name} on the base tree failed: {proc.stderr.strip()[-500:]}"
        )
    return {c["case"]: c["output"] for c in json.loads(proc.stdout)["cases"] if c.get("output")}


async def _judge_suite(
    judge: Judge, head: dict[str, str], base: dict[str, str], share: float
) -> dict[str, Any]:
    outcomes = {}
    for case, output in sorted(head.items()):
        if case in base:
            verdict = await judge.compare(output, base[case])
            outcomes[case] = {"outcome": verdict.outcome, "reason": verdict.reason}
    counts = {
        k: sum(1 for o in outcomes.values() if o["outcome"] == k)
        for k in ("win", "tie", "loss", "error")
    }
    judged = counts["win"] + counts["tie"] + counts["loss"]
    failed = judged > 0 and counts["loss"] / judged > share
    return {
        "cases": outcomes,
        **{f"{k}s" if k != "loss" else "losses": v for k, v in counts.items()},
        "judged": judged,
        "failed": failed,
    }


async def _evaluate(
    opts: GateOptions,
    head_root: Path,
    base_root: Path,
    suites: dict[str, Suite],
    head_snap: dict[str, Any],
    base_snap: dict[str, Any],
    env: dict[str, str],
) -> tuple[list[SuiteGate], str, dict[str, int]]:
    changed = changed_prompt_nodes(base_snap, head_snap)
    contract: Contract = load_contract(head_root)
    judge = judge_from_config(opts.judge_config, project=head_root) if opts.judge_config else None
    note = "" if judge is not None else "skipped: no judge model configured (--judge-model MODEL)"
    calls = {"calls": 0, "cached_calls": 0}
    gates = []
    try:
        for name, base_suite in sorted(suites.items()):
            spec = contract.pipeline(base_suite.pipeline or None)
            selection = select_cases(
                _cases(base_suite, spec, head_snap, base_snap),
                head_snap,
                changed,
                run_all=opts.run_all,
            )
            gate = SuiteGate(name, selection)
            if selection.selected:
                suite = load_suite(base_suite.path, root=head_root)  # base cases, head tree
                result = await run_suite(
                    suite,
                    project=head_root,
                    case_ids=list(selection.selected),
                    overrides={"llm_cache": opts.cache},
                    judge=judge,
                )
                gate.result = result.to_json()
                relative = base_suite.path.resolve().relative_to(base_root.resolve()).as_posix()
                gate.result["file"] = f"{opts.base}:{relative}"
                for case in gate.result["cases"]:
                    calls["calls"] += (case.get("usage") or {}).get("calls", 0)
                    calls["cached_calls"] += (case.get("usage") or {}).get("cached_calls", 0)
                if judge is not None:
                    base = _base_outputs(base_root, base_suite, list(selection.selected), env)
                    gate.judge = await _judge_suite(
                        judge, result.case_outputs, base, opts.max_loss_share
                    )
            gates.append(gate)
    finally:
        if judge is not None:
            await judge.aclose()
    return gates, note, calls


def run_gate(opts: GateOptions) -> GateResult:
    """Run every step against BASE; raises GateError when the gate cannot run at all."""
    head_root = find_project()
    repo, sub = repo_root(head_root), project_subdir(head_root)
    cache_dir = data_dir(head_root)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMPTDAG_PROJECT"},
        "PROMPTDAG_DATA_DIR": str(cache_dir),
    }
    with ref_worktree(repo, opts.base) as tree:
        base_root = tree / sub
        base_snap = snapshot_tree(base_root, cache_dir)
        head_snap = snapshot_tree(head_root, cache_dir)
        problems = [f"head: {p}" for p in head_snap.get("problems", [])]
        fresh = lock_from_snapshot(head_snap) if not problems else None
        lock = (
            check_lock(read_lock(head_root / LOCK_FILE), fresh, read_lock(base_root / LOCK_FILE))
            if fresh
            else LockCheck()
        )
        try:
            base_suites = _base_suites(base_root, base_snap)
            head_suites = {n: load_suite(n, root=head_root) for n in list_suites(head_root)}
        except (ConfigError, ProjectError) as exc:
            raise GateError(f"cannot read the eval suites: {exc}") from exc
        changes = [
            f"{name}: {c}"
            for name in sorted(set(base_suites) & set(head_suites))
            for c in suite_changes(base_suites[name], head_suites[name])
        ]
        changes += [
            f"{n}: new suite (not gating until it is on {opts.base})"
            for n in sorted(set(head_suites) - set(base_suites))
        ]
        changes += [
            f"{n}: removed (still gating: read from {opts.base})"
            for n in sorted(set(base_suites) - set(head_suites))
        ]
        review = compare(
            base_snap,
            head_snap,
            base_label=opts.base,
            head_label="working tree",
            suite_changes=changes,
        )
        try:
            gates, note, calls = asyncio.run(
                _evaluate(opts, head_root, base_root, base_suites, head_snap, base_snap, env)
            )
        except PromptdagError as exc:
            if isinstance(exc, GateError):
                raise
            raise GateError(f"the eval step could not run: {exc}") from exc
    return GateResult(opts.base, lock, review, gates, problems, note, calls, opts.max_loss_share)
