"""The steps of `promptdag gate` (see `promptdag.gate.gate`): the two snapshots (the base's in
its own process, `base_side`), the lock check, the suites read from the base, the review report,
the eval cases each change reaches run at head and on the base tree, usage against the base, the
pairwise judge, and the verdict's reasons. Imports Hamilton, pandas and the openai SDK."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Callable
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
from promptdag.gate.base_side import BaseSide
from promptdag.gate.checks import static_findings
from promptdag.gate.counting import TokenCounts
from promptdag.gate.gate import GateOptions, GateResult, SuiteGate, usage_changes
from promptdag.gate.lockfile import LOCK_FILE, LockCheck, check_lock, lock_from_snapshot, read_lock
from promptdag.gate.refs import (
    absent_snapshot,
    git,
    has_contract,
    head_label,
    project_subdir,
    resolve_ref,
)
from promptdag.gate.report import compare
from promptdag.gate.selection import Selection, changed_nodes, select_cases, with_reasons
from promptdag.gate.snapshot import fill_tokens, take_snapshot
from promptdag.pipeline import LLM_INPUT
from promptdag.project import project_imports

__all__ = [
    "case_changes",
    "eval_code_changes",
    "price_by_configured_model",
    "run_steps",
]


def _check_files(suites: dict[str, Suite], root: Path) -> list[str]:
    """The files (relative to `root`) of the `python` checks the suites call."""
    files = set()
    for suite in suites.values():
        for case in suite.cases:
            for a in case.asserts:
                ref = a.options.get("callable") if a.type == "python" else None
                if isinstance(ref, str):
                    module = ref.partition(":")[0].replace(".", "/")
                    for rel in (f"{module}.py", f"{module}/__init__.py"):
                        if (root / rel).is_file():
                            files.add(rel)
    return sorted(files)


def eval_code_changes(
    repo: Path, base_sha: str, head_root: Path, base_root: Path, suites: dict[str, Suite]
) -> list[str]:
    """The evaluation code this change edits (its suites' python checks, and the framework's
    eval package when the repository holds it): the gate runs the base's copy, and a human
    approves the change, which takes effect on the next pull request."""
    sub = project_subdir(head_root)
    paths = [(sub / rel).as_posix() for rel in _check_files(suites, base_root)]
    framework = Path(__file__).resolve().parents[1] / "evals"
    if framework.is_relative_to(repo):
        paths.append(framework.relative_to(repo).as_posix())
    if not paths:
        return []
    changed = git(repo, "diff", "--name-only", base_sha, "--", *paths).splitlines()
    framework_dir = paths[-1] if framework.is_relative_to(repo) else None
    return [
        f"evaluation code changed: {p} (the gate ran the base's copy; a reviewer approves it, "
        "and it takes effect on the next pull request)"
        if framework_dir is None or not p.startswith(framework_dir)
        else f"evaluation framework changed: {p} (the gate ran this change's copy of the "
        "framework: a reviewer must approve it)"
        for p in sorted(changed)
    ]


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


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def case_changes(
    base_suite: Suite, head_suite: Suite | None, base_root: Path, head_root: Path
) -> dict[str, str]:
    """Why each case of the base suite is reached by a change outside the DAG: an input file it
    reads differs between the two trees, or this change edits its definition in the suite (the
    gate runs the base's definition; the edit takes effect once merged). Case id → why."""
    head_cases = {c.id for c in head_suite.cases} if head_suite is not None else set()
    out: dict[str, str] = {}
    for case in base_suite.cases:
        why = []
        for rel in sorted(set(case.files.values())):
            after = _file_bytes(head_root / rel)
            if after is None:
                why.append(f"its input file {rel} is missing at head")
            elif _file_bytes(base_root / rel) != after:
                why.append(f"its input file {rel} changed")
        if head_suite is not None and case.id in head_cases:
            old, new = base_suite.case_definition(case.id), head_suite.case_definition(case.id)
            keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            if keys:
                why.append(
                    f"its definition in the suite changed ({', '.join(keys)}); the gate runs "
                    "the base's definition until this is merged"
                )
        if why:
            out[case.id] = "; ".join(why)
    return out


def _base_loader(base_root: Path) -> Callable[[str], Any]:
    """Imports a suite's `python` check from the base tree, so a change cannot rewrite the code
    that judges it; a check the base does not define is a GateError."""

    def load(ref: str) -> Any:
        module_name, _, attr = ref.partition(":")
        top = module_name.split(".")[0]
        with project_imports(base_root, tops=(top,)):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise GateError(f"cannot import {module_name} from the base tree: {exc}") from exc
        where = Path(getattr(module, "__file__", "") or "").resolve()
        if base_root.resolve() not in where.parents:
            raise GateError(f"{module_name} was imported from {where}, not from the base tree.")
        if not hasattr(module, attr):
            raise GateError(f"{module_name} on the base tree has no {attr!r}.")
        return getattr(module, attr)

    return load


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


@dataclass
class _Run:
    """What the evaluation step shares across suites."""

    opts: GateOptions
    head_root: Path
    base_root: Path
    base_side: BaseSide | None  # None: the base has no promptdag contract, so no suites
    judge: Judge | None
    calls: dict[str, int]
    head_snap: dict[str, Any] = field(default_factory=dict)
    base_snap: dict[str, Any] = field(default_factory=dict)


def price_by_configured_model(result: dict[str, Any], snapshot: dict[str, Any]) -> None:
    """Re-price each case's usage at the price of the model its variant configures (from that
    side's snapshot), cached calls included: the cost users would pay, so a model switch shows
    as cost even when both sides ran on the offline model. The run's own figure stays in
    `run_cost_usd`; `cost_model` names the model priced (the cost is None when it has no price)."""
    prices, variants = snapshot.get("prices", {}), snapshot.get("variants", {})
    for case in result.get("cases", []):
        usage = case.get("usage")
        model = variants.get(case.get("variant") or "", {}).get("model")
        if not usage or model is None:
            continue
        price = prices.get(model)
        usage["run_cost_usd"] = usage.get("cost_usd")
        usage["cost_model"] = model
        usage["cost_usd"] = (
            None
            if price is None
            else round(
                (usage.get("input_tokens", 0) * price[0] + usage.get("output_tokens", 0) * price[1])
                / 1_000_000,
                6,
            )
        )


async def _run_selected(
    run: _Run, gate: SuiteGate, base_suite: Suite, variant: str | None, on_base: bool
) -> None:
    """Run the gate's selected cases at head (the base's suite and checks) and on the base tree
    (unless the variant does not exist there), then compare usage and judge."""
    suite = load_suite(base_suite.path, root=run.head_root)  # base cases, head tree
    cases = list(gate.selection.selected)
    result = await run_suite(
        suite,
        project=run.head_root,
        variant=variant,
        case_ids=cases,
        overrides={"llm_cache": run.opts.cache},
        judge=run.judge,
        load=_base_loader(run.base_root),
    )
    gate.result = result.to_json()
    price_by_configured_model(gate.result, run.head_snap)
    relative = base_suite.path.resolve().relative_to(run.base_root.resolve()).as_posix()
    gate.result["file"] = f"{run.opts.base}:{relative}"
    for case in gate.result["cases"]:
        run.calls["calls"] += (case.get("usage") or {}).get("calls", 0)
        run.calls["cached_calls"] += (case.get("usage") or {}).get("cached_calls", 0)
    if not on_base:
        return
    if run.base_side is None:
        raise GateError(f"suite {gate.name} has no base tree to run on.")
    gate.base = await asyncio.to_thread(
        run.base_side.run_cases, base_suite.path, cases, run.opts.cache, variant
    )
    gate.base["file"] = gate.result["file"]  # not the temporary worktree's path
    price_by_configured_model(gate.base, run.base_snap)
    for case, before, after in gate.pairs():
        rises, drops = usage_changes(
            case, (before or {}).get("usage"), (after or {}).get("usage"), gate.usage_growth
        )
        gate.rises += rises
        gate.drops += drops
    if run.judge is not None:
        base_outputs = {c["case"]: c["output"] for c in gate.base["cases"] if c.get("output")}
        gate.judge = await _judge_suite(
            run.judge, result.case_outputs, base_outputs, run.opts.max_loss_share
        )


def _without_broken(
    selection: Selection, cases: list[dict[str, Any]], head: dict[str, Any]
) -> Selection:
    """Cases whose variant does not build at head are not run (the gate fails naming it)."""
    broken = {n for n, v in head.get("variants", {}).items() if "error" in v}
    out = {c["id"] for c in cases if c["variant"] in broken and c["id"] in selection.selected}
    if not out:
        return selection
    variant = {c["id"]: c["variant"] for c in cases}
    return Selection(
        {c: why for c, why in selection.selected.items() if c not in out},
        {
            **selection.skipped,
            **{c: f"variant {variant[c]} does not build at head (see the reasons)" for c in out},
        },
    )


def _live(snapshot: dict[str, Any], variant: str) -> bool:
    """Whether users get this variant: it has traffic, or it is the default."""
    v = snapshot.get("variants", {}).get(variant, {})
    return bool(v.get("weight")) or snapshot.get("default_variant") == variant


async def _evaluate(
    opts: GateOptions,
    head_root: Path,
    base_root: Path,
    suites: dict[str, Suite],
    head_snap: dict[str, Any],
    base_snap: dict[str, Any],
    base_side: BaseSide | None,
    head_suites: dict[str, Suite] | None = None,
) -> tuple[list[SuiteGate], str, dict[str, int], list[str]]:
    """Every suite's selected cases; then every changed variant no selected case runs on, on
    the unpinned cases of each suite it affects. Returns (runs, judge note, LLM calls, the
    changed variants no case covers)."""
    changed = changed_nodes(base_snap, head_snap)
    contract: Contract = load_contract(head_root)
    judge = judge_from_config(opts.judge_config, project=head_root) if opts.judge_config else None
    note = "" if judge is not None else "skipped: no judge model configured (--judge-model MODEL)"
    run = _Run(
        opts,
        head_root,
        base_root,
        base_side,
        judge,
        {"calls": 0, "cached_calls": 0},
        head_snap,
        base_snap,
    )
    gates: list[SuiteGate] = []
    covered: set[str] = set()
    uncovered: list[str] = []
    try:
        for name, base_suite in sorted(suites.items()):
            spec = contract.pipeline(base_suite.pipeline or None)
            cases = _cases(base_suite, spec, head_snap, base_snap)
            reached = case_changes(base_suite, (head_suites or {}).get(name), base_root, head_root)
            selection = _without_broken(
                with_reasons(
                    select_cases(cases, head_snap, changed, run_all=opts.run_all), reached
                ),
                cases,
                head_snap,
            )
            covered |= {c["variant"] for c in cases if c["id"] in selection.selected}
            gate = SuiteGate(name, selection, usage_growth=base_suite.usage_growth)
            if selection.selected:
                await _run_selected(run, gate, base_suite, None, on_base=True)
            gates.append(gate)
        for variant in sorted(set(changed) - covered):
            ran = False
            for name, base_suite in sorted(suites.items()):
                spec = contract.pipeline(base_suite.pipeline or None)
                unpinned = [
                    {**c, "variant": variant, "base_variant": variant}
                    for c, case in zip(
                        _cases(base_suite, spec, head_snap, base_snap),
                        base_suite.cases,
                        strict=True,
                    )
                    if case.variant is None
                ]
                picked = select_cases(unpinned, head_snap, changed).selected
                if not picked:
                    continue
                why = f"variant {variant} changed and no case runs on it: run on it; "
                selection = Selection({c: why + r for c, r in picked.items()}, {})
                gate = SuiteGate(
                    f"{name} on variant {variant}",
                    selection,
                    usage_growth=base_suite.usage_growth,
                    against_base=True,
                )
                on_base = "graph" in base_snap.get("variants", {}).get(variant, {})
                await _run_selected(run, gate, base_suite, variant, on_base=on_base)
                gates.append(gate)
                ran = True
            if not ran:
                uncovered.append(variant)
    finally:
        if judge is not None:
            await judge.aclose()
    return gates, note, run.calls, uncovered


def run_steps(
    opts: GateOptions, head_root: Path, repo: Path, base_ref: str, tree: Path, counts: TokenCounts
) -> GateResult:
    """Every step of the gate, with the base ref checked out in `tree` (`opts.base` is its
    label); raises GateError when the gate cannot run at all."""
    base_label = str(opts.base)
    sub = head_root.relative_to(repo)
    cache_dir = data_dir(head_root)
    with contextlib.ExitStack() as stack:
        base_root = tree / sub
        base_side = (
            stack.enter_context(BaseSide.start(base_root, cache_dir, head_root))
            if has_contract(base_root)
            else None
        )
        base_snap, head_snap = _snapshots(base_side, head_root, counts)
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
        changes += eval_code_changes(
            repo, resolve_ref(repo, base_ref), head_root, base_root, base_suites
        )
        changes += [
            f"{n}: new suite (not gating until it is on {base_label})"
            for n in sorted(set(head_suites) - set(base_suites))
        ]
        changes += [
            f"{n}: removed (still gating: read from {base_label})"
            for n in sorted(set(base_suites) - set(head_suites))
        ]
        review = compare(
            base_snap,
            head_snap,
            base_label=base_label,
            head_label=head_label(repo, head_root, ignore=(cache_dir,)),
            suite_changes=changes,
        )
        try:
            gates, note, calls, uncovered = asyncio.run(
                _evaluate(
                    opts,
                    head_root,
                    base_root,
                    base_suites,
                    head_snap,
                    base_snap,
                    base_side,
                    head_suites,
                )
            )
        except PromptdagError as exc:
            if isinstance(exc, GateError):
                raise
            raise GateError(f"the eval step could not run: {exc}") from exc
        where = _suite_files(head_root, base_suites)
    changed = changed_nodes(base_snap, head_snap)
    not_covered, notes = [], []
    for variant in uncovered:
        what = ", ".join(f"{n} ({why})" for n, why in sorted(changed[variant].items()))
        if _live(head_snap, variant):
            not_covered.append(
                f"not covered: variant {variant} changed ({what}) and users get it, but no "
                f'eval case covers it: add a case with variant = "{variant}" to {where}'
            )
        else:
            notes.append(
                f"not evaluated: variant {variant} (no traffic) changed ({what}) and no eval "
                f'case covers it: add a case with variant = "{variant}" to {where}'
            )
    notes += lock.acknowledged
    notes += [
        f"{v.key}: not evaluated: no variant uses it"
        for v in (*review.added, *review.edited)
        if not v.variants
    ]
    unjudged = [] if opts.judge_config else _unjudged(head_snap, changed)
    old_default, new_default = review.default_variant
    if old_default != new_default and old_default is not None and not opts.judge_config:
        unjudged.append(
            f"needs a judge or a reviewer's approval: the default variant moved {old_default} → "
            f"{new_default}, and no judge model ran"
        )
    approvals = static_findings(review)
    if unjudged and opts.require_judge:
        unjudged = [f"{u} (--require-judge)" for u in unjudged]
    else:
        approvals, unjudged = [*unjudged, *approvals], []
    return GateResult(
        base_label,
        lock,
        review,
        gates,
        problems,
        note,
        calls,
        opts.max_loss_share,
        not_covered=not_covered,
        notes=notes,
        approvals=approvals,
        unjudged=unjudged,
    )


def _unjudged(head: dict[str, Any], changed: dict[str, dict[str, str]]) -> list[str]:
    """Live variants whose rendered prompts or model settings changed: offline, the embedded
    model cannot show an instruction-level regression, so a judge or a reviewer must."""
    out = []
    for variant, nodes in sorted(changed.items()):
        prompts = set(head.get("variants", {}).get(variant, {}).get("prompts", {}))
        hit = {n: w for n, w in nodes.items() if n in prompts or n == LLM_INPUT}
        if hit and _live(head, variant):
            what = ", ".join(f"{n} ({w})" for n, w in sorted(hit.items()))
            out.append(
                f"needs a judge or a reviewer's approval: variant {variant} has traffic and its "
                f"rendered prompts or model settings changed ({what}), and no judge model ran"
            )
    return out


def _snapshots(
    base_side: BaseSide | None, head_root: Path, counts: TokenCounts
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(base, head) snapshots, taken at once: the base's in its own process (its modules never
    mix with the head's), the head's in this process, which runs the head's code anyway."""
    try:
        head = json.loads(json.dumps(take_snapshot(head_root, count_tokens=False)))  # as the base's
        fill_tokens(head, {}, counts.count)
    except PromptdagError as exc:
        raise GateError(f"cannot load the prompts of {head_root}: {exc}") from exc
    if base_side is None:
        return absent_snapshot(), head
    base = base_side.snapshot()
    fill_tokens(base, head, counts.count)
    return base, head


def _suite_files(head_root: Path, suites: dict[str, Suite]) -> str:
    """Where a new case goes: the suite files (relative to the project), else the directory."""
    files = sorted(
        s.path.relative_to(s.root).as_posix()
        for s in suites.values()
        if s.path.is_relative_to(s.root)
    )
    if files:
        return " or ".join(files)
    return load_contract(head_root).relpath(load_contract(head_root).suites) + "/<name>.toml"
