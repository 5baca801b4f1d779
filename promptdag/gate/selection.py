"""DAG-aware selection: which eval cases a prompt change can affect. A prompt node changed for a
variant when the variant now selects another version (or pack), or when the version it selects
renders differently or has another source; a case is affected when an output of its pipeline
(the answer, or another declared output) is downstream of a changed prompt node in its variant's
DAG (Hamilton lineage). No node is known by name: the outputs come from the contract."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["Selection", "changed_prompt_nodes", "downstream", "select_cases"]


def downstream(graph: dict[str, Any], node: str) -> set[str]:
    """Every node reachable from `node` along the graph's edges."""
    children: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.get("edges", []):
        children[src].append(dst)
    seen: set[str] = set()
    stack = [node]
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _resolved(snapshot: dict[str, Any], variant: str) -> dict[str, dict[str, Any] | None]:
    v = snapshot.get("variants", {}).get(variant)
    if not v or "prompts" not in v:
        return {}
    return {
        node: snapshot["prompts"].get(f"{v['pack']}/{node}@{version}")
        for node, version in v["prompts"].items()
    }


def _fingerprint(entry: dict[str, Any] | None) -> Any:
    if entry is None:
        return None
    return (entry["source_sha256"], sorted((f, r["sha256"]) for f, r in entry["rendered"].items()))


def changed_prompt_nodes(base: dict[str, Any], head: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per head variant: changed prompt node → why."""
    out: dict[str, dict[str, str]] = {}
    for name, variant in head.get("variants", {}).items():
        before, after = _resolved(base, name), _resolved(head, name)
        reasons: dict[str, str] = {}
        for node, entry in after.items():
            old_version = base.get("variants", {}).get(name, {}).get("prompts", {}).get(node)
            new_version = variant["prompts"][node]
            if node not in before:
                reasons[node] = (
                    "new in this variant" if name in base.get("variants", {}) else "new variant"
                )
            elif old_version != new_version or _fingerprint(before[node]) is None:
                reasons[node] = f"version {old_version} → {new_version}"
            elif _fingerprint(before[node]) != _fingerprint(entry):
                reasons[node] = f"{new_version} renders differently"
        if reasons:
            out[name] = reasons
    return out


@dataclass(frozen=True)
class Selection:
    """Which cases run, and the reason for each (or why it was skipped)."""

    selected: dict[str, str]  # case id → why it runs
    skipped: dict[str, str]  # case id → why not


def _reason(outputs: list[str], graph: dict[str, Any], changed: dict[str, str]) -> str | None:
    """Why a case with these outputs (its pipeline's answer first) is affected by the changed
    nodes, grouped by the first output each reaches (the answer when it does); None if none."""
    groups: dict[str, list[str]] = {}
    for node, why in sorted(changed.items()):
        below = downstream(graph, node) | {node}
        hit = next((o for o in outputs if o in below), None)
        if hit is not None:
            groups.setdefault(hit, []).append(f"{node} ({why})")
    if not groups:
        return None
    ordered = [o for o in outputs if o in groups]
    return "; ".join(f"{o} is downstream of {', '.join(groups[o])}" for o in ordered)


def select_cases(
    cases: list[dict[str, Any]],
    head: dict[str, Any],
    changed: dict[str, dict[str, str]],
    *,
    run_all: bool = False,
) -> Selection:
    """`cases`: dicts with `id`, `variant` (resolved at head), optionally `base_variant` (resolved
    at base), and `outputs`: the outputs of the case's pipeline, its answer first."""
    selected: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for case in cases:
        variant = case["variant"]
        if run_all:
            selected[case["id"]] = "--all"
            continue
        before = case.get("base_variant")
        if before and before != variant:
            selected[case["id"]] = (
                f"its variant moved {before} → {variant} (the default variant changed)"
            )
            continue
        graph = head.get("variants", {}).get(variant, {}).get("graph")
        if graph is None:
            selected[case["id"]] = f"variant {variant} is new or does not build at head"
            continue
        outputs: list[str] = list(case["outputs"])
        reason = _reason(outputs, graph, changed.get(variant, {}))
        if reason is not None:
            selected[case["id"]] = reason
        else:
            skipped[case["id"]] = (
                f"no changed prompt upstream of {', '.join(outputs)} in variant {variant}"
            )
    return Selection(selected, skipped)
