"""The review report of a prompt change: two snapshots (`promptdag.gate.snapshot.take_snapshot`,
one per git ref) in, a `Review` out, shown as Markdown (a PR comment), JSON (machines) or HTML
(an artifact).

A prompt version `pack/node@version` is added, removed, or edited (same key, another source hash
or another rendered text on some fixture). Each change carries the unified diff of the rendered
text per fixture (an added version is compared with the one before it in its pack), tokens and
the estimated input cost of one call before and after, and the inputs it gained or lost.
Variants: version and pack switches, weight, config, model, added or removed, a variant that no
longer builds; and the default variant. Lineage: what each changed prompt node feeds in each
affected variant's DAG. Same two snapshots in, byte-identical Markdown, JSON and HTML out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from promptdag.gate.report_html import highlight_mermaid, render_html
from promptdag.gate.selection import renders_differently

__all__ = [
    "CallCost",
    "Dag",
    "FixtureDiff",
    "Lineage",
    "Review",
    "TextChange",
    "VariantChange",
    "VersionChange",
    "compare",
]

Snapshot = Mapping[str, Any]


@dataclass(frozen=True)
class FixtureDiff:
    """One fixture's rendered text before and after: token counts and unified diff lines."""

    fixture: str
    tokens_before: int | None
    tokens_after: int | None
    diff: tuple[str, ...]


@dataclass(frozen=True)
class CallCost:
    """Estimated input cost in USD of one call on one fixture with `model` (None: no price)."""

    model: str
    fixture: str
    before_usd: float | None
    after_usd: float | None


@dataclass(frozen=True)
class TextChange:
    """Prompt node `node`: key `before` in the base snapshot against key `after` in the head."""

    node: str
    before: str | None
    after: str | None
    fixtures: tuple[FixtureDiff, ...]
    costs: tuple[CallCost, ...]
    inputs_added: tuple[str, ...]
    inputs_removed: tuple[str, ...]


@dataclass(frozen=True)
class VersionChange:
    """A prompt version added, edited or removed, and what its rendered text became."""

    key: str
    status: str  # "added" | "edited" | "removed"
    defined_at: str
    description: str
    variants: tuple[str, ...]  # the variants selecting it (head; base for a removed version)
    text: TextChange


@dataclass(frozen=True)
class VariantChange:
    """A variant added, removed, changed, broken (no longer builds) or fixed (builds again)."""

    name: str
    status: str
    fields: dict[str, tuple[Any, Any]]  # "weight", "pack", "model", "config.KEY", "prompt NODE"
    switches: tuple[TextChange, ...]
    error: str | None


@dataclass(frozen=True)
class Lineage:
    """What changed prompt node `node` feeds in `variant`'s DAG. `selected` is False when no
    variant selects a changed version of it: the default variant's DAG shows what it would feed."""

    node: str
    variant: str
    selected: bool
    outputs: tuple[str, ...]
    downstream: tuple[str, ...]


@dataclass(frozen=True)
class Dag:
    """The head default variant's DAG with the changed nodes highlighted."""

    variant: str
    highlight: tuple[str, ...]
    mermaid: str
    graph: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Review:
    """Everything a reviewer needs to judge a prompt change, in three renderings."""

    base_label: str
    head_label: str
    added: tuple[VersionChange, ...]
    edited: tuple[VersionChange, ...]
    removed: tuple[VersionChange, ...]
    default_variant: tuple[str | None, str | None]
    default_switches: tuple[TextChange, ...]
    variants: tuple[VariantChange, ...]
    changed_nodes: tuple[str, ...]
    changed_by_variant: dict[str, tuple[str, ...]]
    lineage: tuple[Lineage, ...]
    dag: Dag | None
    suite_changes: tuple[str, ...]
    problems: tuple[str, ...]
    compared: dict[str, int]  # prompt versions and variants in the head snapshot

    @property
    def versions(self) -> tuple[VersionChange, ...]:
        return (*self.added, *self.edited, *self.removed)

    @property
    def has_changes(self) -> bool:
        """Any prompt, variant or default difference, or a snapshot problem."""
        moved = self.default_variant[0] != self.default_variant[1]
        return moved or bool(self.versions or self.variants or self.problems)

    def verdict(self) -> str:
        """One line: `3 prompt versions changed: 1 added, 1 edited, 1 removed; ...`."""
        n, old, new = len(self.versions), *self.default_variant
        text = f"{n} prompt version{'' if n == 1 else 's'} changed: {len(self.added)} added, "
        text += f"{len(self.edited)} edited, {len(self.removed)} removed"
        text += f"; default variant {old} → {new}" if old != new else ""
        if self.variants:
            text += (
                f"; {len(self.variants)} variant{'' if len(self.variants) == 1 else 's'} changed"
            )
        if broken := [v.name for v in self.variants if v.error]:
            text += f"; not building: {', '.join(broken)}"
        if self.problems:
            text += (
                f"; {len(self.problems)} snapshot problem{'' if len(self.problems) == 1 else 's'}"
            )
        return text + "."

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with sorted keys at every level (the DAG's raw graph left out)."""
        data = asdict(self)
        if data["dag"]:
            del data["dag"]["graph"]
        return _sorted(data)

    def to_markdown(self, max_chars: int = 60_000) -> str:
        """A PR comment under `max_chars` (GitHub's limit: 65,536); long diffs are cut short."""
        from promptdag.gate.report_layout import render_markdown

        return render_markdown(self, max_chars)

    def to_html(self) -> str:
        """A standalone page: inline CSS, coloured diffs, the DAG as inline SVG; no scripts."""
        from promptdag.gate.report_layout import layout

        return render_html(layout(self))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _number(version: str) -> int:
    return int(re.sub(r"\D", "", version) or 0)


def _selected(variant: Mapping[str, Any]) -> dict[str, str]:
    """node -> the selected `pack/node@version` of a variant that builds (else empty)."""
    if "error" in variant:
        return {}
    return {n: f"{variant['pack']}/{n}@{v}" for n, v in variant.get("prompts", {}).items()}


class _Compare:
    """The two snapshots and their labels; each method computes one part of the Review."""

    def __init__(self, base: Snapshot, head: Snapshot, base_label: str, head_label: str):
        self.base, self.head, self.labels = base, head, (base_label, head_label)
        self.bp: dict[str, Any] = base.get("prompts", {})
        self.hp: dict[str, Any] = head.get("prompts", {})
        self.bv: dict[str, Any] = base.get("variants", {})
        self.hv: dict[str, Any] = head.get("variants", {})

    def cost(self, side: Snapshot, model: str, tokens: int | None) -> float | None:
        price = side.get("prices", {}).get(model)
        return None if price is None or tokens is None else tokens * price[0] / 1_000_000

    def fixture(self, fx: str, before: str | None, after: str | None) -> FixtureDiff:
        a = self.bp.get(before or "", {}).get("rendered", {}).get(fx, {})
        b = self.hp.get(after or "", {}).get("rendered", {}).get(fx, {})
        lines = difflib.unified_diff(
            a.get("text", "").splitlines(),
            b.get("text", "").splitlines(),
            f"{self.labels[0]}: {before or '(none)'} [{fx}]",
            f"{self.labels[1]}: {after or '(none)'} [{fx}]",
            lineterm="",
        )
        return FixtureDiff(fx, a.get("tokens"), b.get("tokens"), tuple(lines))

    def text(
        self, node: str, before: str | None, after: str | None, models: Iterable[str]
    ) -> TextChange:
        old, new = self.bp.get(before or "", {}), self.hp.get(after or "", {})
        sides = (set(old.get("rendered", {})), set(new.get("rendered", {})))
        # Two texts compare on the fixtures both sides rendered: a fixture the change adds (or
        # removes) is no edit of the prompt. A version without the other side shows them all.
        names = sorted(sides[0] & sides[1] if old and new else sides[0] | sides[1])
        fixtures = tuple(self.fixture(fx, before, after) for fx in names)
        costs = tuple(
            CallCost(
                m,
                f.fixture,
                self.cost(self.base, m, f.tokens_before),
                self.cost(self.head, m, f.tokens_after),
            )
            for m in sorted(set(models))
            for f in fixtures
        )
        ins = (
            (set(old.get("inputs", ())), set(new.get("inputs", ())))
            if old and new
            else (set(), set())
        )
        return TextChange(
            node,
            before,
            after,
            fixtures,
            costs,
            tuple(sorted(ins[1] - ins[0])),
            tuple(sorted(ins[0] - ins[1])),
        )

    def users(self, variants: Mapping[str, Any], key: str) -> list[str]:
        return sorted(n for n, v in variants.items() if key in _selected(v).values())

    def models(self, key: str) -> set[str]:
        """Models of the variants selecting `key` on either side, else the default variant's."""
        using = [self.bv[n] for n in self.users(self.bv, key)] + [
            self.hv[n] for n in self.users(self.hv, key)
        ]
        default = self.hv.get(self.head.get("default_variant") or "", {})
        return {v["model"] for v in using} or ({default["model"]} if "model" in default else set())

    def predecessor(self, key: str) -> str | None:
        """The base version an added one is compared with: the latest before it in its pack."""
        new = self.hp[key]
        same = [
            (_number(p["version"]), k)
            for k, p in self.bp.items()
            if (p["pack"], p["node"]) == (new["pack"], new["node"])
        ]
        earlier = [s for s in same if s[0] < _number(new["version"])]
        return max(earlier or same)[1] if same else None

    def version(self, key: str, status: str) -> VersionChange:
        entry = (self.bp if status == "removed" else self.hp)[key]
        before = self.predecessor(key) if status == "added" else key
        after = None if status == "removed" else key
        variants = self.users(self.bv if status == "removed" else self.hv, key)
        text = self.text(entry["node"], before, after, self.models(key))
        return VersionChange(
            key,
            status,
            entry.get("defined_at", ""),
            entry.get("description", ""),
            tuple(variants),
            text,
        )

    def is_edited(self, key: str) -> bool:
        old, new = self.bp[key], self.hp[key]
        # A fixture added or removed edits nothing: the texts compare where both sides rendered.
        return old.get("source_sha256") != new.get("source_sha256") or renders_differently(old, new)

    def switches(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[TextChange]:
        """Prompt nodes whose selected version differs between two variants that both build."""
        a, b = _selected(old), _selected(new)
        if not a or not b:
            return []
        models = {v["model"] for v in (old, new)}
        return [
            self.text(n, a.get(n), b.get(n), models)
            for n in sorted({*a, *b})
            if a.get(n) != b.get(n)
        ]

    def variant(self, name: str) -> VariantChange | None:
        old, new = self.bv.get(name), self.hv.get(name)
        if old is None or new is None:
            status = "added" if old is None else "removed"
            return VariantChange(name, status, {}, (), (new or {}).get("error"))
        switches = self.switches(old, new)
        fields = {
            **_fields(old, new),
            **{f"prompt {s.node}": (s.before, s.after) for s in switches},
        }
        errors = ("error" in old, "error" in new)
        status = {(False, True): "broken", (True, False): "fixed"}.get(errors, "changed")
        if status == "changed" and not fields:
            return None
        return VariantChange(name, status, fields, tuple(switches), new.get("error"))


def _fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Changed plain fields and config values. When both build, the prompt selection keys are
    left to the switches; a side that does not build has no pack or model to compare."""
    both = "error" not in old and "error" not in new
    plain = ("weight", "description", "pack", "model") if both else ("weight", "description")
    out = {f: (old.get(f), new.get(f)) for f in plain if old.get(f) != new.get(f)}
    selecting = {"prompt_pack", *(f"{n}_version" for n in (*_selected(old), *_selected(new)))}
    oc, nc = old.get("config", {}), new.get("config", {})
    for key in sorted({*oc, *nc}):
        if oc.get(key) != nc.get(key) and not (both and key in selecting):
            out[f"config.{key}"] = (oc.get(key), nc.get(key))
    return out


def _descendants(graph: Mapping[str, Any], node: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(terminal outputs, everything downstream) of `node` in a snapshot graph."""
    children: dict[str, set[str]] = {}
    for a, b in graph.get("edges", []):
        children.setdefault(a, set()).add(b)
    seen: set[str] = set()
    todo = [node]
    while todo:
        new = children.get(todo.pop(), set()) - seen
        seen |= new
        todo += sorted(new)
    return tuple(sorted(n for n in seen if not children.get(n))), tuple(sorted(seen))


def _lineage(
    nodes: Iterable[str], affected: Mapping[str, Sequence[str]], c: _Compare
) -> list[Lineage]:
    """Per changed node, per variant whose selection of it changed (else the default variant)."""
    out, default = [], c.head.get("default_variant") or ""
    for node in sorted(set(nodes)):
        pairs = [(v, True) for v, ns in sorted(affected.items()) if node in ns] or [
            (default, False)
        ]
        for variant, selected in pairs:
            graph = c.hv.get(variant, {}).get("graph")
            if graph and any(n["name"] == node for n in graph["nodes"]):
                out.append(Lineage(node, variant, selected, *_descendants(graph, node)))
    return out


def _changed_by_variant(c: _Compare, edited: set[str]) -> dict[str, tuple[str, ...]]:
    """Per variant in both snapshots: prompt nodes whose selected version changed or was edited."""
    out = {}
    for name in sorted(set(c.bv) & set(c.hv)):
        old, new = _selected(c.bv[name]), _selected(c.hv[name])
        if nodes := sorted(n for n, k in new.items() if k in edited or (old and old.get(n) != k)):
            out[name] = tuple(nodes)
    return out


def compare(
    base: Snapshot,
    head: Snapshot,
    *,
    base_label: str,
    head_label: str,
    suite_changes: Sequence[str] = (),
) -> Review:
    """The review of the change from snapshot `base` to snapshot `head`. A snapshot that could
    not be taken holds only `problems`: then those are reported and nothing else is compared."""
    if "prompts" not in base or "prompts" not in head:
        base, head = {"problems": base.get("problems", [])}, {"problems": head.get("problems", [])}
    c = _Compare(base, head, base_label, head_label)
    edited = sorted(k for k in set(c.bp) & set(c.hp) if c.is_edited(k))
    added = [c.version(k, "added") for k in sorted(set(c.hp) - set(c.bp))]
    removed = [c.version(k, "removed") for k in sorted(set(c.bp) - set(c.hp))]
    defaults = (base.get("default_variant"), head.get("default_variant"))
    old_default, new_default = (c.bv.get(defaults[0] or "", {}), c.hv.get(defaults[1] or "", {}))
    default_switches = c.switches(old_default, new_default) if defaults[0] != defaults[1] else []
    by_variant = _changed_by_variant(c, set(edited))
    affected = {**by_variant}
    if default_switches:
        nodes = {s.node for s in default_switches} | set(by_variant.get(defaults[1] or "", ()))
        affected[defaults[1] or ""] = tuple(sorted(nodes))
    changed = tuple(sorted({n for ns in affected.values() for n in ns}))
    versions = [*added, *(c.version(k, "edited") for k in edited), *removed]
    graph = new_default.get("graph")
    return Review(
        base_label=base_label,
        head_label=head_label,
        added=tuple(added),
        edited=tuple(v for v in versions if v.status == "edited"),
        removed=tuple(removed),
        default_variant=defaults,
        default_switches=tuple(default_switches),
        variants=tuple(v for n in sorted({*c.bv, *c.hv}) if (v := c.variant(n))),
        changed_nodes=changed,
        changed_by_variant=by_variant,
        lineage=tuple(_lineage([*(v.text.node for v in versions), *changed], affected, c)),
        dag=Dag(defaults[1] or "", changed, highlight_mermaid(graph["mermaid"], changed), graph)
        if graph
        else None,
        suite_changes=tuple(suite_changes),
        problems=tuple(
            f"{side}: {p}"
            for side, s in (("base", base), ("head", head))
            for p in s.get("problems", [])
        ),
        compared={"prompt_versions": len(c.hp), "variants": len(c.hv)},
    )
