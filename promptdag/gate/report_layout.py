"""How a Review is laid out: the sections both renderings show, as blocks (HTML in
ci/report_html.py), and the Markdown writer that fits a PR comment under GitHub's limit."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from promptdag.gate.report import Dag, FixtureDiff, Review, TextChange, VariantChange
from promptdag.gate.report_html import Block, Line, Span, usd
from promptdag.gate.worddiff import unified_words, word_diff_plain

__all__ = ["layout", "render_markdown"]


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
    """`weight: 0.5 → 0.0; prompt NODE: … → …; error: …`"""
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
    legend = (
        "Rendered-text diffs are word level: a changed line starts with ~, removed words are "
        "[-marked-] and added words {+marked+} (struck through and highlighted in the HTML)."
    )
    out: list[Block] = [("h", ("Prompt versions",)), ("table", head, rows), ("p", (legend,))]
    for v in r.versions:
        title = (("b", v.status), " ", ("code", v.key), f" ({v.defined_at}): {v.description}")
        out.append(("details", title, _text_blocks(v.text)))
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


def layout(r: Review) -> list[Block]:
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
    """The diff in a code block, word level: a changed run of lines is one block of text with
    git's `[-removed-]{+added+}` markers, context lines start with a space."""
    lines: list[str] = []
    for kind, body in unified_words(f.diff):
        if isinstance(body, list):
            lines += [f"~{ln}" for ln in word_diff_plain(body).split("\n")]
        else:
            lines.append(body if kind in ("file", "hunk") else f" {body}")
    cut = [
        ln if len(ln) <= width else f"{ln[:width]} … ({len(ln) - width} more characters)"
        for ln in lines[:max_lines]
    ]
    out = _fence(cut, "text") if cut else []
    if len(lines) > max_lines:
        out.append(f"_(truncated: {len(lines) - max_lines} more lines, see the HTML report)_")
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
        elif kind == "dag" and args[0].highlight:  # no diagram when no node changed
            out += [*_fence(args[0].mermaid.splitlines(), "mermaid"), ""]
    return out


def render_markdown(r: Review, max_chars: int) -> str:
    if not r.has_changes:
        line = f"No prompt differences between {_md_code(r.base_label)} and "
        line += f"{_md_code(r.head_label)} ({r.compared['prompt_versions']} prompt versions and "
        line += f"{r.compared['variants']} variants compared).\n"
        suites = _md_blocks(
            [("h", ("Eval suites changed",)), ("list", [(s,) for s in r.suite_changes])], 0, 0
        )
        return line + ("\n" + "\n".join(suites).rstrip("\n") + "\n" if r.suite_changes else "")
    blocks = layout(r)
    for max_lines, width in _LEVELS:
        text = "\n".join(_md_blocks(blocks, max_lines, width)).rstrip("\n") + "\n"
        if len(text) <= max_chars:
            return text
    note = "\n\n(truncated: this comment is too long for GitHub, see the HTML report)\n"
    return text[: max_chars - len(note)] + note
