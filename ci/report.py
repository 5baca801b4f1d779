"""The review report of a prompt change: two snapshots (`ci.snapshot.take_snapshot`, one per git
ref) in, a `Review` out, shown as Markdown (a PR comment), JSON (machines) or HTML (an artifact).

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
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ci.report_html import Block, Line, Span, highlight_mermaid, render_html, usd

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
        return _render_markdown(self, max_chars)

    def to_html(self) -> str:
        """A standalone page: inline CSS, coloured diffs, the DAG as inline SVG; no scripts."""
        return render_html(_layout(self))


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
        names = sorted({*old.get("rendered", {}), *new.get("rendered", {})})
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
        hashes = [{f: r["sha256"] for f, r in e.get("rendered", {}).items()} for e in (old, new)]
        return old.get("source_sha256") != new.get("source_sha256") or hashes[0] != hashes[1]

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


# --- Layout: the sections both renderings show, as blocks (see ci/report_html.py) ------------


def _codes(items: Iterable[Any]) -> Line:
    spans: list[Span] = []
    for item in items:
        spans += [", ", ("code", str(item))] if spans else [("code", str(item))]
    return tuple(spans) or ("none",)


def _arrow(a: Any, b: Any) -> str:
    return f"{'—' if a is None else a} → {'—' if b is None else b}"


def _text_blocks(t: TextChange) -> list[Block]:
    out: list[Block] = []
    if t.inputs_added or t.inputs_removed:
        line = (
            ("b", "Inputs"),
            ": added ",
            *_codes(t.inputs_added),
            "; removed ",
            *_codes(t.inputs_removed),
            ".",
        )
        out.append(("p", line))
    if t.costs:
        fx = {f.fixture: f for f in t.fixtures}
        head = ["model", "fixture", "tokens before → after", "cost per call before → after"]
        rows = [
            [(("code", c.model),), (c.fixture,), (_arrow(fx[c.fixture].tokens_before, fx[c.fixture].tokens_after),),
             (f"{usd(c.before_usd)} → {usd(c.after_usd)}",)]
            for c in t.costs
        ]  # fmt: skip
        out.append(("table", head, rows))
    for f in t.fixtures:
        same = "" if f.diff else "; rendered text unchanged."
        out.append(
            ("p", (("b", f.fixture), f": {_arrow(f.tokens_before, f.tokens_after)} tokens{same}"))
        )
        out += [("diff", f)] if f.diff else []
    return out


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:200] + "…"


def _fields_line(v: VariantChange) -> Line:
    """`weight: 0.5 → 0.0; prompt chunk_summary_prompt: … → …; error: …`"""
    spans: list[Span] = []
    for key, (a, b) in v.fields.items():
        spans += [
            *(["; "] if spans else []),
            f"{key}: ",
            ("code", _value(a)),
            " → ",
            ("code", _value(b)),
        ]
    if v.error:
        spans += [*(["; "] if spans else []), ("warn", "error"), f": {v.error}"]
    return tuple(spans)


def _switch(t: TextChange) -> Line:
    return (("code", t.before or "(none)"), " → ", ("code", t.after or "(none)"))


def _versions_layout(r: Review) -> list[Block]:
    head = ["prompt version", "change", "compared with", "selected by (head)", "inputs", "tokens"]
    rows = [
        [(("code", v.key),), (v.status,), _codes([v.text.before] if v.text.before else []), _codes(v.variants),
         (" ".join([*(f"+{i}" for i in v.text.inputs_added), *(f"−{i}" for i in v.text.inputs_removed)]) or "—",),
         ("; ".join(f"{f.fixture} {_arrow(f.tokens_before, f.tokens_after)}" for f in v.text.fixtures),)]
        for v in r.versions
    ]  # fmt: skip
    out: list[Block] = [("h", ("Prompt versions",)), ("table", head, rows)]
    for v in r.versions:
        summary = (("b", v.status), " ", ("code", v.key), f" ({v.defined_at}): {v.description}")
        out.append(("details", summary, _text_blocks(v.text)))
    return out


def _variants_layout(r: Review) -> list[Block]:
    out: list[Block] = []
    old, new = r.default_variant
    if old != new:
        out += [
            ("h", ("Default variant",)),
            ("p", (("code", str(old)), " → ", ("code", str(new)), ".")),
        ]
        out += [("details", _switch(t), _text_blocks(t)) for t in r.default_switches]
    if r.variants:
        status = {"broken": ("warn", "no longer builds"), "fixed": "builds again"}
        rows = [
            [(("code", v.name),), (status.get(v.status, v.status),), _fields_line(v)]
            for v in r.variants
        ]
        out += [("h", ("Variants",)), ("table", ["variant", "status", "changes"], rows)]
        out += [
            ("details", (("code", v.name), ": ", *_switch(t)), _text_blocks(t))
            for v in r.variants
            for t in v.switches
        ]
    return out


def _lineage_layout(r: Review) -> list[Block]:
    head = ["prompt node", "variant", "outputs", "everything downstream"]
    rows = [
        [(("code", ln.node),), (("code", ln.variant), "" if ln.selected else " (default; no variant selects a changed version)"),
         _codes(ln.outputs), (", ".join(ln.downstream) or "—",)]
        for ln in r.lineage
    ]  # fmt: skip
    return [("h", ("Downstream of each changed prompt node",)), ("table", head, rows)]


def _dag_layout(r: Review, dag: Dag) -> list[Block]:
    spans: list[Span] = []
    for node in dag.highlight:
        where = ", ".join(ln.variant for ln in r.lineage if ln.node == node and ln.selected)
        spans += [*([", "] if spans else []), ("code", node), f" ({where})"]
    caption = (
        ("Changed nodes (orange, thick red border): ", *spans, ".")
        if spans
        else ("No node changed.",)
    )
    return [
        ("h", ("DAG of variant ", ("code", dag.variant), f" ({r.head_label})")),
        ("p", caption),
        ("dag", dag),
    ]


def _layout(r: Review) -> list[Block]:
    out: list[Block] = [
        ("title", ("Prompt review: ", ("code", r.base_label), " → ", ("code", r.head_label)))
    ]
    out.append(("p", (("b", r.verdict()),)))
    if r.problems:
        out += [("h", ("Problems",)), ("list", [(p,) for p in r.problems])]
    out += [
        *(_versions_layout(r) if r.versions else []),
        *_variants_layout(r),
        *(_lineage_layout(r) if r.lineage else []),
    ]
    if r.suite_changes:
        out += [("h", ("Eval suites changed",)), ("list", [(s,) for s in r.suite_changes])]
    return out + (_dag_layout(r, r.dag) if r.dag else [])


# --- Markdown ---------------------------------------------------------------------------------

# (diff lines per fixture, characters per diff line), tried in turn until the comment fits.
_LEVELS = ((400, 2000), (120, 500), (40, 300), (10, 200), (0, 0))


def _md_text(text: str) -> str:
    """Literal text in Markdown: no HTML, no emphasis or links, no table-cell breaks."""
    text = html.escape(text, quote=False).replace("\n", " ")
    return re.sub(r"([\\`*\[\]|]|(?<!\w)_|_(?!\w))", r"\\\1", text)


def _md_code(text: str) -> str:
    ticks = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if "`" in text else ""
    return f"{ticks}{pad}{text.replace('|', chr(92) + '|').replace(chr(10), ' ')}{pad}{ticks}"


_HTML_SPANS = {"code": "<code>{}</code>", "b": "<b>{}</b>", "warn": "<b>⚠️ {}</b>"}
_MD_SPANS = {"b": "**{}**", "warn": "⚠️ **{}**"}


def _md_span(span: Span, in_html: bool) -> str:
    """A span in Markdown, or in the HTML that Markdown allows (a <details> summary)."""
    style, text = ("", span) if isinstance(span, str) else span
    if in_html:
        return _HTML_SPANS.get(style, "{}").format(html.escape(text))
    return _md_code(text) if style == "code" else _MD_SPANS.get(style, "{}").format(_md_text(text))


def _md_line(line: Line, in_html: bool = False) -> str:
    return "".join(_md_span(span, in_html) for span in line)


def _fence(lines: Sequence[str], lang: str) -> list[str]:
    ticks = "`" * max(3, max((len(m) for ln in lines for m in re.findall("`+", ln)), default=0) + 1)
    return [f"{ticks}{lang}", *lines, ticks]


def _md_diff(f: FixtureDiff, max_lines: int, width: int) -> list[str]:
    cut = [
        ln if len(ln) <= width else f"{ln[:width]} … ({len(ln) - width} more characters)"
        for ln in f.diff[:max_lines]
    ]
    out = _fence(cut, "diff") if cut else []
    if len(f.diff) > max_lines:
        out.append(f"_(truncated: {len(f.diff) - max_lines} more lines, see the HTML report)_")
    return [*out, ""]


def _md_blocks(blocks: Iterable[Block], max_lines: int, width: int) -> list[str]:
    out: list[str] = []
    for kind, *args in blocks:
        if kind in ("title", "h", "p"):
            out += [{"title": "## ", "h": "### ", "p": ""}[kind] + _md_line(args[0]), ""]
        elif kind == "list":
            out += [*(f"- {_md_line(item)}" for item in args[0]), ""]
        elif kind == "table":
            out += ["| " + " | ".join(args[0]) + " |", "|" + "---|" * len(args[0])]
            out += [
                "| " + " | ".join(_md_line(c) or "—" for c in row) + " |" for row in args[1]
            ] + [""]
        elif kind == "details":
            inner = _md_blocks(args[1], max_lines, width)
            out += [
                f"<details><summary>{_md_line(args[0], in_html=True)}</summary>",
                "",
                *inner,
                "</details>",
                "",
            ]
        elif kind == "diff":
            out += _md_diff(args[0], max_lines, width)
        elif kind == "dag":
            out += [*_fence(args[0].mermaid.splitlines(), "mermaid"), ""]
    return out


def _render_markdown(r: Review, max_chars: int) -> str:
    if not r.has_changes:
        line = f"No prompt differences between {_md_code(r.base_label)} and "
        line += f"{_md_code(r.head_label)} ({r.compared['prompt_versions']} prompt versions and "
        line += f"{r.compared['variants']} variants compared).\n"
        suites = _md_blocks(
            [("h", ("Eval suites changed",)), ("list", [(s,) for s in r.suite_changes])], 0, 0
        )
        return line + ("\n" + "\n".join(suites).rstrip("\n") + "\n" if r.suite_changes else "")
    blocks = _layout(r)
    for max_lines, width in _LEVELS:
        text = "\n".join(_md_blocks(blocks, max_lines, width)).rstrip("\n") + "\n"
        if len(text) <= max_chars:
            return text
    note = "\n\n(truncated: this comment is too long for GitHub, see the HTML report)\n"
    return text[: max_chars - len(note)] + note
