"""Deterministic diagrams of a built Pipeline's DAG: DOT and Mermaid text, SVG and PNG images.

The text is generated here from sorted node and edge lists (Hamilton's own DOT iterates sets and
differs between processes), so the same tree and config give byte-identical output anywhere.
Node kinds: request input, config value, prompt (with its selected version and pack), LLM call,
plain step; outputs (no dependants, or a summarizer output) get a double or thick border. Config
values no node reads sit in their own box. Nodes named in `highlight` (the review report of a
prompt change) get an orange fill and a thick red border: class `changed` in Mermaid. `graphviz`
is used only to pipe the DOT through the system `dot` binary for svg and png.
"""

from __future__ import annotations

import html
import json
import re
import types
import typing
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import graphviz
from hamilton import htypes
from hamilton.graph_types import HamiltonNode

from promptdag.errors import RenderError
from promptdag.pipeline import Pipeline

__all__ = ["FORMATS", "render", "to_dot", "to_mermaid"]

FORMATS = ("svg", "png", "dot", "mermaid")
_GRID_COLUMNS = 5
_UNREAD_LABEL = "config values no node reads (used by the driver factory and LLM client)"

# kind -> (legend text, fill, border); also the legend's order.
_STYLES: dict[str, tuple[str, str, str]] = {
    "input": ("request input", "#dbeafe", "#1d4ed8"),
    "config": ("config value (build time)", "#e5e7eb", "#6b7280"),
    "prompt": ("prompt: @version (pack)", "#fde047", "#a16207"),
    "llm": ("LLM call (a declared LLM step)", "#e9d5ff", "#7e22ce"),
    "step": ("step", "#ffffff", "#374151"),
    "output": ("output (double border)", "#dcfce7", "#15803d"),
}
# Nodes a change touches (`highlight=`): legend text, fill, border; drawn with a 5px border.
_CHANGED = ("changed in this change", "#fdba74", "#dc2626")


@dataclass(frozen=True)
class _Node:
    name: str
    kind: str
    output: bool
    read: bool  # some node depends on it
    type: str
    version: str  # "@v2 (default)" for prompt nodes, else ""


def _type_str(tp: Any) -> str:
    """`list[str]`, `dict[str, Any]`, `str | None`: Hamilton's short names, with type arguments."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_str(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_str(a) for a in args)
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if isinstance(tp, list):
        return f"[{', '.join(_type_str(a) for a in tp)}]"
    base = htypes.get_type_as_string(origin or tp) or "?"
    return f"{base}[{', '.join(_type_str(a) for a in args)}]" if origin and args else base


def _kind(node: HamiltonNode, pipeline: Pipeline) -> str:
    if node.name in pipeline.prompts:
        return "prompt"
    if node.is_external_input:
        return "config" if node.name in pipeline.config else "input"
    if node.name in pipeline.steps:
        return "llm"
    return "step"


def _nodes(pipeline: Pipeline) -> list[_Node]:
    graph_nodes = sorted(pipeline.graph.nodes, key=lambda n: n.name)
    used = {d for n in graph_nodes for d in n.required_dependencies | n.optional_dependencies}
    outputs = set(pipeline.spec.final_vars)
    out: list[_Node] = []
    for node in graph_nodes:
        kind = _kind(node, pipeline)
        chosen = pipeline.prompts.get(node.name)
        version = f"@{chosen.version} ({chosen.pack})" if chosen else ""
        is_output = kind not in ("input", "config") and node.name in outputs
        kind = "output" if is_output and kind == "step" else kind
        out.append(
            _Node(node.name, kind, is_output, node.name in used, _type_str(node.type), version)
        )
    return out


def _edges(pipeline: Pipeline) -> list[tuple[str, str, bool]]:
    """(dependency, node, required), sorted."""
    edges: set[tuple[str, str, bool]] = set()
    for node in pipeline.graph.nodes:
        edges |= {(d, node.name, True) for d in node.required_dependencies}
        edges |= {(d, node.name, False) for d in node.optional_dependencies}
    return sorted(edges)


def _unread_rows(nodes: list[_Node]) -> list[list[str]]:
    """Names of config values no node reads, in rows of _GRID_COLUMNS (a compact grid)."""
    names = [n.name for n in nodes if n.kind == "config" and not n.read]
    return [names[i : i + _GRID_COLUMNS] for i in range(0, len(names), _GRID_COLUMNS)]


def _title(pipeline: Pipeline) -> str:
    prompts = ", ".join(f"{n}@{p.version} ({p.pack})" for n, p in sorted(pipeline.prompts.items()))
    return f"promptdag variant {pipeline.variant}: {prompts or 'no prompts'}"


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_node(node: _Node, changed: bool = False) -> str:
    _, fill, border = _CHANGED if changed else _STYLES[node.kind]
    label = f"<b>{html.escape(node.name)}</b>"
    label += f'<br/><font point-size="10" color="#374151">{html.escape(node.type)}</font>'
    if node.version:
        label += f'<br/><font color="#713f12"><b>{html.escape(node.version)}</b></font>'
    shape, style = ("note", "filled") if node.kind == "config" else ("box", "rounded,filled")
    attrs = f'label=<{label}>, fillcolor="{fill}", color="{border}", shape="{shape}"'
    attrs += f', style="{style}"'
    if node.kind == "prompt":
        attrs += ", penwidth=3"
    if node.output:
        attrs += ", peripheries=2, penwidth=2"
    if changed:
        attrs += ", penwidth=5"
    return f"  {_dot_id(node.name)} [{attrs}];"


def _dot_legend(changed: bool = False) -> str:
    styles = [*_STYLES.values(), _CHANGED] if changed else _STYLES.values()
    rows = "<tr><td><b>legend</b></td></tr>" + "".join(
        f'<tr><td bgcolor="{fill}" color="{border}" align="left">{html.escape(text)}</td></tr>'
        for text, fill, border in styles
    )
    rows += '<tr><td align="left">edge: required ⟶ solid, optional ⇢ dashed</td></tr>'
    table = f'<table border="0" cellborder="1" cellspacing="2" cellpadding="4">{rows}</table>'
    return f'  "__legend__" [shape="plaintext", fontsize=10, label=<{table}>];'


def _dot_unread(rows: list[list[str]]) -> list[str]:
    """A dashed box whose rows are held together by invisible edges (otherwise dot scatters
    unconnected nodes over the ranks); the legend sits to its right."""
    if not rows:
        return []
    ids = [[_dot_id(name) for name in row] for row in rows]
    return [
        "  subgraph cluster_unread {",
        f'    label="{_UNREAD_LABEL}"; fontsize=11; style="dashed"; color="#9ca3af";',
        f"    {{ rank=min; {'; '.join(row[0] for row in ids)}; }}",
        *(f"    {' -> '.join(row)} [style=invis];" for row in ids if len(row) > 1),
        "  }",
        f'  {ids[0][-1]} -> "__legend__" [style=invis];',
    ]


def to_dot(pipeline: Pipeline, highlight: Collection[str] = ()) -> str:
    """Canonical Graphviz DOT for the pipeline's DAG (sorted; byte-identical across processes).
    Nodes named in `highlight` are drawn as changed; names not in the graph are ignored."""
    nodes = _nodes(pipeline)
    changed = {n.name for n in nodes} & set(highlight)
    lines = [
        "digraph promptdag {",
        f"  graph [rankdir=LR, label={_dot_id(_title(pipeline))}, labelloc=t, fontsize=14,",
        '         fontname="Helvetica", nodesep=0.2, ranksep=0.45, newrank=true];',
        '  node [fontname="Helvetica", fontsize=12, margin="0.12,0.05"];',
        '  edge [color="#4b5563", arrowsize=0.7];',
        _dot_legend(bool(changed)),
        *(_dot_node(n, n.name in changed) for n in nodes),
        *_dot_unread(_unread_rows(nodes)),
        *(
            f"  {_dot_id(a)} -> {_dot_id(b)}{'' if req else ' [style=dashed]'};"
            for a, b, req in _edges(pipeline)
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    """A safe Mermaid id (the `n_` prefix keeps names such as `end` from being keywords)."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", name)


def _mermaid_text(text: str) -> str:
    return "".join({'"': "#quot;", "<": "#lt;", ">": "#gt;"}.get(c, c) for c in text)


def _mermaid_class(node: _Node, changed: Collection[str] = ()) -> str:
    if node.name in changed:
        return "changed"
    return f"{node.kind}_output" if node.output and node.kind in ("prompt", "llm") else node.kind


def _mermaid_styles(nodes: list[_Node], changed: Collection[str] = ()) -> Iterable[str]:
    for kind, (_, fill, border) in _STYLES.items():
        width = "3px" if kind in ("prompt", "output") else "1px"
        yield f"  classDef {kind} fill:{fill},stroke:{border},stroke-width:{width},color:#111827"
    for kind in ("prompt", "llm"):
        _, fill, border = _STYLES[kind]
        yield f"  classDef {kind}_output fill:{fill},stroke:{border},stroke-width:4px,color:#111827"
    if changed:
        _, fill, border = _CHANGED
        yield f"  classDef changed fill:{fill},stroke:{border},stroke-width:5px,color:#111827"
    for cls in sorted({_mermaid_class(n, changed) for n in nodes}):
        ids = ",".join(_mermaid_id(n.name) for n in nodes if _mermaid_class(n, changed) == cls)
        yield f"  class {ids} {cls}"


def to_mermaid(pipeline: Pipeline, highlight: Collection[str] = ()) -> str:
    """Mermaid flowchart of the DAG for GitHub Markdown (sorted; identical across processes).
    Nodes named in `highlight` get class `changed` instead of their kind's class."""
    nodes = _nodes(pipeline)
    changed = {n.name for n in nodes} & set(highlight)
    legend = "; ".join(f"{kind} = {text}" for kind, (text, _, _) in _STYLES.items())
    lines = ["---", f"title: {json.dumps(_title(pipeline))}", "---", "flowchart LR"]
    lines.append(f"  %% legend: {legend}; Mermaid: outputs thick border; optional edge dashed")
    for node in nodes:
        parts = [node.name, node.type, node.version] if node.version else [node.name, node.type]
        lines.append(f'  {_mermaid_id(node.name)}["{"<br/>".join(map(_mermaid_text, parts))}"]')
    if rows := _unread_rows(nodes):
        lines.append(f'  subgraph unread_config["{_UNREAD_LABEL}"]')
        lines += [f"    {' ~~~ '.join(_mermaid_id(n) for n in row)}" for row in rows]
        lines.append("  end")
    for a, b, req in _edges(pipeline):
        lines.append(f"  {_mermaid_id(a)} {'-->' if req else '-.->'} {_mermaid_id(b)}")
    lines += _mermaid_styles(nodes, changed)
    return "\n".join(lines) + "\n"


def render(pipeline: Pipeline, fmt: str, highlight: Collection[str] = ()) -> bytes:
    """The diagram as bytes: DOT or Mermaid text (UTF-8), or an svg/png image made by `dot`;
    `highlight` names the nodes to draw as changed."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown diagram format {fmt!r}. Use one of: {', '.join(FORMATS)}.")
    if fmt == "mermaid":
        return to_mermaid(pipeline, highlight).encode("utf-8")
    dot = to_dot(pipeline, highlight)
    if fmt == "dot":
        return dot.encode("utf-8")
    try:
        image: bytes = graphviz.Source(dot).pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound as exc:
        raise RenderError(
            f"rendering {fmt} needs the Graphviz 'dot' program, which is not on PATH. Install it "
            "('apt-get install graphviz' or 'brew install graphviz'), or use '--format dot' or "
            "'--format mermaid', which work without it."
        ) from exc
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip()
        raise RenderError(f"'dot' failed to render {fmt}: {detail or exc}") from exc
    return image
