"""DAG-aware selection: which eval cases a change can affect. A node changed for a variant when
it is a prompt node whose selected version (or pack) changed or renders differently, when its
code changed (Hamilton's node version), or when it is a config value that changed (defaults,
app config, the variant's settings; the model settings reach every LLM call through the LLM
input); a case is affected when an output of its pipeline (the answer, or another declared
output) is downstream of a changed node in its variant's DAG (Hamilton lineage). No node is
known by name: the outputs come from the contract."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptdag.pipeline import LLM_INPUT

__all__ = [
    "LLM_ANSWER_KEYS",
    "Selection",
    "changed_nodes",
    "changed_prompt_nodes",
    "downstream",
    "renders_differently",
    "select_cases",
    "with_reasons",
]


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


def _fingerprint(entry: Mapping[str, Any] | None) -> Any:
    if entry is None:
        return None
    return (entry["source_sha256"], sorted((f, r["sha256"]) for f, r in entry["rendered"].items()))


def renders_differently(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two prompt versions' texts differ on a fixture both rendered on (a fixture added
    or removed says nothing about the prompt); on all, when they share none."""
    common = set(a["rendered"]) & set(b["rendered"])
    if not common:
        return bool(_fingerprint(a)[1] != _fingerprint(b)[1])
    return any(a["rendered"][f]["sha256"] != b["rendered"][f]["sha256"] for f in common)


def changed_prompt_nodes(base: dict[str, Any], head: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per head variant: changed prompt node → why."""
    out: dict[str, dict[str, str]] = {}
    for name, variant in head.get("variants", {}).items():
        before, after = _resolved(base, name), _resolved(head, name)
        reasons: dict[str, str] = {}
        for node, entry in after.items():
            old_version = base.get("variants", {}).get(name, {}).get("prompts", {}).get(node)
            new_version = variant["prompts"][node]
            released = before.get(node)
            if node not in before:
                reasons[node] = (
                    "new in this variant" if name in base.get("variants", {}) else "new variant"
                )
            elif old_version != new_version or released is None:
                reasons[node] = f"version {old_version} → {new_version}"
            elif entry is None or renders_differently(released, entry):
                reasons[node] = f"{new_version} renders differently"
            elif released["source_sha256"] != entry["source_sha256"]:
                reasons[node] = (
                    f"{new_version}'s source changed; it renders identically on every fixture"
                )
        if reasons:
            out[name] = reasons
    return out


# Build-time settings that change what the model answers; they reach every LLM-calling node
# through the framework's LLM input, not through a node of the graph.
LLM_ANSWER_KEYS = (
    "llm_backend",
    "llm_base_url",
    "llm_max_output_tokens",
    "llm_model",
    "llm_temperature",
)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _config_changes(
    old: dict[str, Any], new: dict[str, Any], explained: set[str], nodes: set[str]
) -> dict[str, str]:
    """Changed config values → the node each reaches (the key's own node, or the LLM input for
    model settings), with why; keys already explained by a prompt change are left out."""
    out: dict[str, str] = {}
    a, b = old.get("resolved"), new.get("resolved")
    if a is None or b is None:
        return out
    for key in sorted({*a, *b} - explained):
        if a.get(key) == b.get(key):
            continue
        why = f"config {key} {_short(a.get(key))} → {_short(b.get(key))}"
        if key in LLM_ANSWER_KEYS and LLM_INPUT in nodes:
            out[LLM_INPUT] = f"{out[LLM_INPUT]}, {why}" if LLM_INPUT in out else why
        elif key in nodes:
            out[key] = why
    return out


def changed_nodes(base: dict[str, Any], head: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per head variant: every changed node → why. Prompt nodes (another version, or a version
    that renders differently), nodes whose code changed (Hamilton's node version: the source
    of the function that defines it), and config values that changed (defaults, app config,
    the variant's own settings; model settings reach every LLM call)."""
    out = changed_prompt_nodes(base, head)
    for name, new in head.get("variants", {}).items():
        old = base.get("variants", {}).get(name)
        if old is None or "graph" not in new:
            continue
        reasons = out.get(name, {})
        explained = {"prompt_pack", *(f"{n}_version" for n in new.get("prompts", {}))}
        nodes = {n["name"] for n in new["graph"]["nodes"]}
        before, after = old.get("node_versions"), new.get("node_versions")
        if before is not None and after is not None:
            for node, version in sorted(after.items()):
                if node in reasons or before.get(node) == version:
                    continue
                reasons[node] = "new node" if node not in before else "its code changed"
        for node, why in _config_changes(old, new, explained, nodes).items():
            reasons.setdefault(node, why)
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
    return "; ".join(_phrase(o, groups[o]) for o in ordered)


def _phrase(output: str, causes: list[str]) -> str:
    itself = [c for c in causes if c.startswith(f"{output} (")]
    others = [c for c in causes if c not in itself]
    parts = [f"{c.replace(f'{output} (', f'{output} itself changed (', 1)}" for c in itself]
    parts += [f"{output} is downstream of {', '.join(others)}"] if others else []
    return "; ".join(parts)


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
                f"nothing changed upstream of {', '.join(outputs)} in variant {variant}"
            )
    return Selection(selected, skipped)


def with_reasons(selection: Selection, reasons: dict[str, str]) -> Selection:
    """`selection` with every case in `reasons` (case id → why) selected too: a skipped case
    moves to the selected ones with that reason, a selected one gets it added to its own."""
    if not reasons:
        return selection
    selected = dict(selection.selected)
    for case, why in reasons.items():
        selected[case] = f"{selected[case]}; {why}" if case in selected else why
    skipped = {c: why for c, why in selection.skipped.items() if c not in reasons}
    return Selection(selected, skipped)
