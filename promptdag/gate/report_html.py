"""The review report as a standalone HTML page, and the DAG drawings both renderings share.

`ci.report` lays a Review out as blocks (the same sections for Markdown and HTML); this module
writes them as one page with inline CSS, no scripts and no external resources; every string from
the snapshots is HTML-escaped. The DAG is drawn from the head snapshot's graph: its Mermaid text
(made by `promptdag.render.to_mermaid`) gives each node's kind, type, version and colours; the
changed nodes get class `changed` (`highlight_mermaid`), exactly as `to_mermaid(highlight=...)`
draws them. For the inline SVG the same graph is written as DOT in the visual language of
`drivers/render.py` and piped through Graphviz `dot`; without `dot` the page shows the Mermaid
text and says how to install it.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import graphviz

if TYPE_CHECKING:
    from promptdag.gate.report import Dag, FixtureDiff

__all__ = [
    "Block",
    "Line",
    "Span",
    "changed_part",
    "highlight_mermaid",
    "render_html",
    "snapshot_dot",
    "usd",
]

# Text: plain, or (style, text) with style "code", "b" or "warn".
Span = str | tuple[str, str]
Line = tuple[Span, ...]
# ("title" | "h" | "p", Line), ("list", [Line]), ("table", [header], [[Line]]),
# ("details", Line, [Block]), ("diff", FixtureDiff), ("dag", Dag)
Block = tuple[Any, ...]

CHANGED = ("changed in this change", "#fdba74", "#dc2626")  # as drivers/render.py draws it
_CLASSDEF_CHANGED = (
    f"  classDef changed fill:{CHANGED[1]},stroke:{CHANGED[2]},stroke-width:5px,color:#111827"
)
_NODE = re.compile(r'^  (n_\w+)\["([^"]*)"\]$')
_EDGE = re.compile(r"^  (n_\w+) (-->|-\.->) (n_\w+)$")
_CLASS = re.compile(r"^  class (\S+) (\w+)$")
_CLASSDEF = re.compile(r"^  classDef (\w+) fill:([^,]+),stroke:([^,]+),stroke-width:(\d+)px")
_UNREAD = re.compile(r'^  subgraph unread_config\["([^"]*)"\]$')


def usd(value: float | None) -> str:
    """`$0.00001095`, or `n/a` when the model has no price."""
    return "n/a" if value is None else "$" + (f"{value:.8f}".rstrip("0").rstrip(".") or "0")


def _unescape(text: str) -> str:
    return text.replace("#quot;", '"').replace("#lt;", "<").replace("#gt;", ">")


def _labels(mermaid: str) -> dict[str, tuple[str, list[str]]]:
    """Mermaid id -> (node name, the rest of its label: type, version)."""
    out = {}
    for line in mermaid.splitlines():
        if m := _NODE.match(line):
            name, *rest = (_unescape(p) for p in m.group(2).split("<br/>"))
            out[m.group(1)] = (name, rest)
    return out


def highlight_mermaid(mermaid: str, names: Collection[str]) -> str:
    """`to_mermaid` text with the nodes `names` moved to class `changed` (orange, 5px red)."""
    labels = _labels(mermaid)
    chosen = [i for i, (name, _) in sorted(labels.items(), key=lambda x: x[1][0]) if name in names]
    if not chosen:
        return mermaid
    classes: dict[str, list[str]] = {"changed": chosen}
    body: list[str] = []
    for line in mermaid.splitlines():
        if m := _CLASS.match(line):
            kept = [i for i in m.group(1).split(",") if i not in chosen]
            classes.update({m.group(2): kept} if kept else {})
        else:
            body.append(line)
    last = max(i for i, line in enumerate(body) if line.startswith("  classDef "))
    body.insert(last + 1, _CLASSDEF_CHANGED)
    body += [f"  class {','.join(ids)} {cls}" for cls, ids in sorted(classes.items())]  # as render
    return "\n".join(body) + "\n"


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Drawing:
    """What the snapshot's Mermaid says about each node: kind, label, colours, edge styles."""

    def __init__(self, mermaid: str):
        labels = _labels(mermaid)
        self.names = {i: name for i, (name, _) in labels.items()}
        self.rest = dict(labels.values())
        self.kind: dict[str, str] = {}
        self.styles: dict[str, tuple[str, str, int]] = {}
        self.dashed: set[tuple[str, str]] = set()
        self.legend: list[tuple[str, str]] = []
        self.title = self.unread_label = ""
        for line in mermaid.splitlines():
            if m := _CLASS.match(line):
                self.kind.update({self.names[i]: m.group(2) for i in m.group(1).split(",")})
            elif m := _CLASSDEF.match(line):
                self.styles[m.group(1)] = (m.group(2), m.group(3), int(m.group(4)))
            elif (m := _EDGE.match(line)) and m.group(2) == "-.->":
                self.dashed.add((self.names.get(m.group(1), ""), self.names.get(m.group(3), "")))
            elif m := _UNREAD.match(line):
                self.unread_label = _unescape(m.group(1))
            elif line.startswith("  %% legend: "):
                items = [i.split(" = ", 1) for i in line[13:].split("; ") if " = " in i]
                self.legend = [(k, t) for k, t in items]
            elif line.startswith("title: "):
                self.title = json.loads(line[7:])

    def node(self, name: str, changed: bool) -> str:
        kind = self.kind.get(name, "step")
        fill, border, width = self.styles.get(kind, ("#ffffff", "#374151", 1))
        rest = self.rest.get(name, [])
        label = f"<b>{html.escape(name)}</b>"
        label += "".join(
            f'<br/><font point-size="10" color="#374151">{html.escape(p)}</font>'
            if i == 0
            else f'<br/><font color="#713f12"><b>{html.escape(p)}</b></font>'
            for i, p in enumerate(rest)
        )
        shape, style = ("note", "filled") if kind == "config" else ("box", "rounded,filled")
        if changed:
            fill, border, width = CHANGED[1], CHANGED[2], 5
        attrs = f'label=<{label}>, fillcolor="{fill}", color="{border}", shape="{shape}"'
        attrs += f', style="{style}", penwidth={width}'
        if kind == "output" or kind.endswith("_output"):
            attrs += ", peripheries=2"
        return f"  {_dot_id(name)} [{attrs}];"

    def legend_node(self, changed: bool) -> str:
        rows = [(t, *self.styles[k][:2]) for k, t in self.legend if k in self.styles]
        rows += [CHANGED] if changed else []
        cells = "".join(
            f'<tr><td bgcolor="{f}" color="{b}" align="left">{html.escape(t)}</td></tr>'
            for t, f, b in rows
        )
        table = '<table border="0" cellborder="1" cellspacing="2" cellpadding="4">'
        table += f"<tr><td><b>legend</b></td></tr>{cells}</table>"
        return f'  "__legend__" [shape="plaintext", fontsize=10, label=<{table}>];'


def snapshot_dot(graph: Mapping[str, Any], highlight: Collection[str]) -> str:
    """Deterministic DOT of a snapshot graph (`nodes`, `edges`, `mermaid`), changed nodes marked."""
    d = _Drawing(graph["mermaid"])
    names = sorted(n["name"] for n in graph["nodes"])
    sources = {a for a, _ in graph["edges"]}
    unread = [n for n in names if d.kind.get(n) == "config" and n not in sources]
    rows = [unread[i : i + 5] for i in range(0, len(unread), 5)]
    title = d.title + (" (changed nodes: orange, thick red border)" if highlight else "")
    lines = [
        "digraph review {",
        f"  graph [rankdir=LR, label={_dot_id(title)}, labelloc=t, fontsize=14,",
        '         fontname="Helvetica", nodesep=0.2, ranksep=0.45, newrank=true];',
        '  node [fontname="Helvetica", fontsize=12, margin="0.12,0.05"];',
        '  edge [color="#4b5563", arrowsize=0.7];',
        d.legend_node(bool(set(highlight) & set(names))),
        *(d.node(n, n in highlight) for n in names),
    ]
    if rows:
        lines += [
            f"  subgraph cluster_unread {{ label={_dot_id(d.unread_label)}; fontsize=11;",
            '    style="dashed"; color="#9ca3af";',
            f"    {{ rank=min; {'; '.join(_dot_id(r[0]) for r in rows)}; }}",
            *(f"    {' -> '.join(map(_dot_id, r))} [style=invis];" for r in rows if len(r) > 1),
            "  }",
            f'  {_dot_id(rows[0][-1])} -> "__legend__" [style=invis];',
        ]
    for a, b in sorted(map(tuple, graph["edges"])):
        lines.append(
            f"  {_dot_id(a)} -> {_dot_id(b)}{' [style=dashed]' if (a, b) in d.dashed else ''};"
        )
    return "\n".join([*lines, "}"]) + "\n"


def changed_part(graph: Mapping[str, Any], changed: Collection[str]) -> dict[str, Any]:
    """The part of a snapshot graph a reviewer looks at first: the changed nodes, what feeds
    them directly (their prompts, config, inputs) and everything downstream of them."""
    children: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    for a, b in graph["edges"]:
        children.setdefault(a, set()).add(b)
        parents.setdefault(b, set()).add(a)
    keep = set(changed)
    todo = list(changed)
    while todo:
        for child in children.get(todo.pop(), set()) - keep:
            keep.add(child)
            todo.append(child)
    keep |= {p for n in changed for p in parents.get(n, set())}
    return {
        "nodes": [n for n in graph["nodes"] if n["name"] in keep],
        "edges": [e for e in graph["edges"] if e[0] in keep and e[1] in keep],
        "mermaid": graph["mermaid"],
    }


def _svg(dag: Dag, graph: Mapping[str, Any] | None = None) -> tuple[str | None, str]:
    """(inline svg, note); svg is None when `dot` cannot draw it, and the note says why."""
    try:
        dot = snapshot_dot(graph or dag.graph, dag.highlight)
        out = graphviz.Source(dot).pipe(format="svg", quiet=True)
    except graphviz.ExecutableNotFound:
        install = "apt-get install graphviz, or brew install graphviz"
        return None, f"Graphviz 'dot' is not installed ({install}): the DAG is shown as Mermaid."
    except graphviz.CalledProcessError as exc:
        return None, f"'dot' failed to draw the DAG ({exc}): the DAG is shown as Mermaid."
    text = out.decode("utf-8")
    return text[text.index("<svg") :], ""


_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111827;
       margin: 0; background: #f3f4f6; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 24px 24px; background: #fff; }
h1 { font-size: 22px; }
h2 { font-size: 18px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; margin-top: 28px; }
main > p:first-of-type { font-size: 16px; padding: 8px 12px; background: #fef9c3;
                         border-left: 4px solid #a16207; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
code, table.diff { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
details { margin: 10px 0; border: 1px solid #e5e7eb; border-radius: 6px; padding: 2px 12px; }
summary { cursor: pointer; padding: 6px 0; }
table.diff { width: 100%; }
table.diff td { border: none; padding: 0 6px; white-space: pre-wrap; word-break: break-word; }
table.diff td.sign { width: 1em; color: #6b7280; }
tr.add, ins { background: #dcfce7; } tr.del, del { background: #fee2e2; }
tr.change { background: #fefce8; } ins { text-decoration: none; }
tr.hunk { background: #dbeafe; color: #1e3a8a; } tr.file { background: #f3f4f6; font-weight: 600; }
.warn { color: #b91c1c; font-weight: 600; }
.dag { overflow-x: auto; }
.dag svg { width: max(100%, 1800px); height: auto; }
.dag-part svg { max-width: 100%; height: auto; }
"""


_TAGS = {"code": "<code>{}</code>", "b": "<b>{}</b>", "warn": '<span class="warn">{}</span>'}


def _line(line: Line) -> str:
    spans = (("", s) if isinstance(s, str) else s for s in line)
    return "".join(_TAGS.get(style, "{}").format(html.escape(text)) for style, text in spans)


def _diff(f: FixtureDiff) -> str:
    """The rendered-text diff as rows: context lines, and each changed run of lines as one row
    with the removed words struck through and the added ones highlighted."""
    from promptdag.gate.worddiff import unified_words, word_diff_html

    rows = []
    for kind, body in unified_words(f.diff):
        if isinstance(body, list):
            sign, cell = "~", word_diff_html(body)
        else:
            sign, cell = ("" if kind in ("file", "hunk") else " "), html.escape(body)
        cells = f'<td class="sign">{html.escape(sign)}</td><td>{cell}</td>'
        rows.append(f'<tr class="{kind}">{cells}</tr>')
    return f'<table class="diff">{"".join(rows)}</table>'


def _dag(dag: Dag) -> str:
    """The changed part of the DAG first (fitted to the page), the full DAG behind a toggle."""
    svg, note = _svg(dag)
    if not svg:
        return f'<div id="dag"><p class="warn">{html.escape(note)}</p><pre>{html.escape(dag.mermaid)}</pre></div>'
    full = f'<details class="full-dag"><summary>The full DAG</summary><div class="dag">{svg}</div></details>'
    if not dag.highlight:
        return f'<div id="dag">{full}</div>'
    part, _ = _svg(dag, changed_part(dag.graph, dag.highlight))
    return f'<div id="dag"><div class="dag-part">{part}</div>{full}</div>'


def _blocks(blocks: Iterable[Block]) -> list[str]:
    out: list[str] = []
    for kind, *args in blocks:
        if kind in ("title", "h", "p"):
            tag = {"title": "h1", "h": "h2", "p": "p"}[kind]
            out.append(f"<{tag}>{_line(args[0])}</{tag}>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_line(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in args[0])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_line(c) or '—'}</td>" for c in row) + "</tr>"
                for row in args[1]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "details":
            out += [
                f"<details open><summary>{_line(args[0])}</summary>",
                *_blocks(args[1]),
                "</details>",
            ]
        elif kind == "diff":
            out.append(_diff(args[0]))
        elif kind == "dag":
            out.append(_dag(args[0]))
    return out


def render_html(blocks: list[Block]) -> str:
    """The laid-out review as one standalone HTML page (the first block is the title)."""
    title = "".join(s if isinstance(s, str) else s[1] for s in blocks[0][1])
    head = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>'
    body = "\n".join(_blocks(blocks))
    return f"{head}\n<style>{_CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
