"""The traces page's HTML, rendered on the server from plain data: no JavaScript, no external
file, one inline style sheet, so it works offline and under a strict Content-Security-Policy.
Every control is a link, a button or a form field (keyboard-usable as they are), focus is
always visible, the layout fits 1280 px, and every text from the traces is escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from promptdag.gate.report_html import usd
from promptdag.gate.worddiff import word_diff_html
from promptdag.ui.graph import RunDag

__all__ = [
    "compare_page",
    "costs_page",
    "dag_section",
    "dag_svg",
    "message_page",
    "replay_page",
    "replay_running_page",
    "run_page",
    "runs_page",
    "variants_page",
]

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:0;background:#f9fafb}
header{background:#1f2937;color:#fff;padding:8px 20px}
header nav{max-width:1240px;margin:auto;display:flex;gap:18px;align-items:center}
header a{color:#fff;text-decoration:none;padding:4px 6px;border-radius:4px}
header a[aria-current=page]{background:#374151;font-weight:600}
header .brand{font-weight:700;margin-right:12px}
main{max-width:1240px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 12px}h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td.num,th.num{text-align:right}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e5e7eb;padding:10px;margin:6px 0;max-height:420px;overflow:auto}
a{color:#1d4ed8}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible,summary:focus-visible,main:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:6px}.skip:focus{left:8px;z-index:9}
form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:12px;color:#374151;gap:2px}
input,select,textarea,button{font:inherit;padding:4px 6px;border:1px solid #9ca3af;border-radius:4px;background:#fff}
button{cursor:pointer;background:#e5e7eb}button.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.ok{color:#166534;font-weight:600}.error{color:#b91c1c;font-weight:600}
.muted{color:#6b7280}.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:2px 14px}
.facts dt{color:#6b7280}.facts dd{margin:0}
.call{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;margin:10px 0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.dag{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;padding:6px}
ins{background:#dcfce7;text-decoration:none}del{background:#fee2e2}
.up{background:#dcfce7;border-color:#16a34a}.down{background:#fee2e2;border-color:#dc2626}
.chosen{outline:2px solid #111827}
.bar{fill:#60a5fa}.verdict{font-size:16px;font-weight:600}
"""
_NAV = (("runs", "", "Runs"), ("variants", "variants", "Variants"),
        ("compare", "compare", "Side by side"), ("costs", "costs", "Cost per day"))  # fmt: skip


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(base: str, current: str, title: str, body: str, refresh_s: int | None = None) -> str:
    links = " ".join(
        f'<a href="{_e(base)}/{path}"{" aria-current=page" if key == current else ""}>{label}</a>'
        for key, path, label in _NAV
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + ("" if refresh_s is None else f'<meta http-equiv="refresh" content="{refresh_s}">')
        + f"<title>{_e(title)} · promptdag traces</title><style>{_CSS}</style></head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><nav aria-label="Sections"><span class="brand">promptdag</span>{links}</nav></header>'
        f'<main id="main" tabindex="-1"><h1>{_e(title)}</h1>{body}</main></body></html>'
    )


def message_page(base: str, title: str, text: str) -> str:
    return _page(base, "", title, f"<p>{_e(text)}</p>")


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _pct(rate: float, ci: tuple[float, float]) -> str:
    return f"{rate:.1%} <span class=muted>({ci[0]:.1%}–{ci[1]:.1%})</span>"


def _status(row: Mapping[str, Any]) -> str:
    cls = "ok" if row.get("status") == "ok" else "error"
    code = row.get("http_status")
    label = f"{row.get('status')}{f' {code}' if code else ''}"
    return f'<span class="{cls}">{_e(label)}</span>'


def _sha(row: Mapping[str, Any]) -> str:
    sha = row.get("git_sha")
    return (
        "–" if not sha else f"<code>{_e(sha[:10])}</code>{'+dirty' if row.get('git_dirty') else ''}"
    )


def _select(name: str, label: str, options: Sequence[str], chosen: str) -> str:
    opts = ['<option value="">any</option>'] + [
        f'<option value="{_e(o)}"{" selected" if o == chosen else ""}>{_e(o)}</option>'
        for o in options
    ]
    return f'<label>{label}<select name="{name}">{"".join(opts)}</select></label>'


def _feedback_mark(fb: Mapping[str, Any] | None) -> str:
    if not fb:
        return ""
    mark = {1: "▲ good", -1: "▼ bad"}.get(fb.get("rating") or 0, "comment")
    cls = {1: "ok", -1: "error"}.get(fb.get("rating") or 0, "muted")
    return f'<span class="{cls}" title="{_e(fb.get("comment"))}">{mark}</span>'


def runs_page(
    base: str,
    runs: Sequence[Mapping[str, Any]],
    filters: Any,
    choices: Mapping[str, Sequence[str]],
    feedback: Mapping[str, Mapping[str, Any]],
    limit: int,
) -> str:
    form = (
        f'<form class="filters" method="get" action="{_e(base)}/" role="search" aria-label="Filter runs">'
        + _select("pipeline", "Pipeline", choices.get("pipeline", []), filters.pipeline)
        + _select("variant", "Variant", choices.get("variant", []), filters.variant)
        + _select("prompt", "Prompt version", choices.get("prompt", []), filters.prompt)
        + f'<label>Git SHA (prefix)<input name="sha" value="{_e(filters.sha)}" size="10"></label>'
        + _select("status", "Status", ["ok", "error"], filters.status)
        + f'<label>Since (30m, 24h, 7d)<input name="since" value="{_e(filters.since)}" size="6"></label>'
        + '<button class="primary" type="submit">Filter</button>'
        + f'<a href="{_e(base)}/">Clear</a></form>'
    )
    head = (
        "<tr><th>Started (UTC)</th><th>Request</th><th>Pipeline</th><th>Variant</th>"
        "<th>Prompts</th><th>Git</th><th>Status</th><th class=num>Latency s</th>"
        "<th class=num>Calls</th><th class=num>Tokens</th><th class=num>Cost</th><th>Feedback</th></tr>"
    )
    rows = []
    for r in runs:
        rid = r["request_id"]
        tokens = (r.get("input_tokens") or 0) + (r.get("output_tokens") or 0)
        error = f" <span class=muted>{_e(r['error_type'])}</span>" if r.get("error_type") else ""
        rows.append(
            f"<tr><td>{_e((r.get('started_at') or '')[:19].replace('T', ' '))}</td>"
            f'<td><a href="{_e(base)}/runs/{quote(rid)}"><code>{_e(rid[:12])}</code></a></td>'
            f"<td>{_e(r.get('pipeline'))}</td><td>{_e(r.get('variant'))}</td>"
            f"<td><code>{_e(r.get('prompt_set'))}</code></td><td>{_sha(r)}</td>"
            f"<td>{_status(r)}{error}</td>"
            f"<td class=num>{_num(r.get('latency_s'))}</td><td class=num>{_num(r.get('calls'))}</td>"
            f"<td class=num>{_num(tokens)}</td><td class=num>{usd(r.get('cost_usd'))}</td>"
            f"<td>{_feedback_mark(feedback.get(rid))}</td></tr>"
        )
    shown = f"<p class=muted>{len(runs)} runs{' (the most recent ' + str(limit) + ')' if len(runs) >= limit else ''}.</p>"
    table = f"<table><caption class=muted>Recorded runs, newest first</caption>{head}{''.join(rows)}</table>"
    return _page(base, "runs", "Runs", form + shown + (table if runs else "<p>No runs match.</p>"))


def dag_svg(graph: Mapping[str, Any] | None, highlight: set[str]) -> str:
    """A top-down layered drawing of the DAG (inline SVG); the nodes in `highlight` (the run's
    LLM calls) filled. Each node sits on the row of its longest path from an input."""
    if not graph or not graph.get("nodes"):
        return "<p class=muted>The DAG is not available for this pipeline and variant.</p>"
    names = [n["name"] for n in graph["nodes"]]
    external = {n["name"] for n in graph["nodes"] if n.get("external")}
    parents: dict[str, list[str]] = {n: [] for n in names}
    for src, dst in graph.get("edges", []):
        if src in parents and dst in parents:
            parents[dst].append(src)
    depth: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in depth:
            ps = [p for p in parents[name] if p not in seen]
            depth[name] = 1 + max((level(p, (*seen, name)) for p in ps), default=-1)
        return depth[name]

    columns: dict[int, list[str]] = {}
    for name in sorted(names, key=lambda n: (level(n), n)):
        columns.setdefault(level(name), []).append(name)
    w, h, gap_x, gap_y = 132, 24, 8, 28
    widest = max(len(c) for c in columns.values())
    pos = {
        name: (10 + (widest - len(col)) * (w + gap_x) / 2 + i * (w + gap_x), 10 + d * (h + gap_y))
        for d, col in columns.items()
        for i, name in enumerate(col)
    }
    width = 20 + widest * (w + gap_x)
    height = 20 + len(columns) * (h + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" role="img" '
        f'aria-label="DAG of {len(names)} nodes, inputs at the top; the LLM calls of this run are filled">'
    ]
    for dst, ps in parents.items():
        for src in ps:
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            parts.append(
                f'<line x1="{x1 + w / 2:.0f}" y1="{y1 + h}" x2="{x2 + w / 2:.0f}" y2="{y2}" stroke="#9ca3af"/>'
            )
    for name, (x, y) in pos.items():
        fill = "#e9d5ff" if name in highlight else "#f3f4f6" if name in external else "#ffffff"
        label = name if len(name) <= 19 else name[:18] + "…"
        parts.append(
            f'<g><title>{_e(name)}</title><rect x="{x:.0f}" y="{y}" width="{w}" height="{h}" rx="5" '
            f'fill="{fill}" stroke="{"#7c3aed" if name in highlight else "#6b7280"}"/>'
            f'<text x="{x + 5:.0f}" y="{y + 16}" font-size="11" font-family="ui-monospace,monospace">{_e(label)}</text></g>'
        )
    parts.append("</svg>")
    return (
        f'<div class="dag" tabindex="0" aria-label="DAG (scrolls sideways)">{"".join(parts)}</div>'
    )


def dag_section(dag: RunDag, highlight: set[str]) -> str:
    """The run's DAG with where it comes from, and a warning when it may not be the run's."""
    warning = "" if dag.warning is None else f'<p class="error" role="note">{_e(dag.warning)}</p>'
    if dag.graph is None:
        return warning or "<p class=muted>The DAG is not available for this run.</p>"
    return f"<p class=muted>{_e(dag.source)}</p>{warning}{dag_svg(dag.graph, highlight)}"


def _text(kind: str, body: str | None, sha: str | None) -> str:
    if body is None:
        return f"<p class=muted>{kind}: not stored (redacted; sha256 <code>{_e(sha)}</code>)</p>"
    return f'<pre aria-label="{kind}">{_e(body)}</pre>'


def _call(c: Mapping[str, Any], open_answer: bool) -> str:
    chunk = c.get("chunk_index")
    where = f"{c.get('step')}{'' if chunk is None else f'[{chunk}]'}"
    facts = [
        ("model", c.get("model")),
        ("prompt", f"{c.get('prompt_node') or '–'}@{c.get('prompt_version') or '–'}"),
        ("tokens in / out", f"{_num(c.get('input_tokens'))} / {_num(c.get('output_tokens'))}"),
        ("cost", usd(c.get("cost_usd"))),
        ("latency s", _num(c.get("latency_s"))),
        ("finish reason", c.get("finish_reason") or "–"),
        ("cached", "yes" if c.get("cached") else "no"),
        ("retries", c.get("retries")),
    ]
    if c.get("error_type"):
        facts.append(("error", f"{c.get('error_type')}: {c.get('error_message') or ''}"))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (
        f'<section class="call" aria-label="LLM call {c.get("call_index")}">'
        f"<h3>Call {c.get('call_index')}: <code>{_e(where)}</code></h3><dl class=facts>{dl}</dl>"
        f"<details><summary>Rendered prompt</summary>{_text('prompt', c.get('prompt_text'), c.get('prompt_sha256'))}</details>"
        f"<details{' open' if open_answer else ''}><summary>Answer</summary>{_text('answer', c.get('response_text'), c.get('response_sha256'))}</details>"
        "</section>"
    )


def run_page(
    base: str,
    request: Mapping[str, Any],
    calls: Sequence[Mapping[str, Any]],
    dag: str,
    feedback: Mapping[str, Any] | None,
    inputs_stored: bool,
) -> str:
    rid = request["request_id"]
    url = f"{_e(base)}/runs/{quote(rid)}"
    facts = [
        ("request", rid), ("started (UTC)", request.get("started_at")),
        ("pipeline", request.get("pipeline")), ("variant", request.get("variant")),
        ("assignment", request.get("assignment")), ("subject", request.get("subject_id")),
        ("git", (request.get("git_sha") or "none") + (" (dirty)" if request.get("git_dirty") else "")),
        ("fingerprint", request.get("fingerprint_id")), ("model", request.get("model")),
        ("latency s", _num(request.get("latency_s"))), ("API key id", request.get("key_id")),
        ("tokens in / out", f"{_num(request.get('input_tokens'))} / {_num(request.get('output_tokens'))}"),
        ("cost", usd(request.get("cost_usd"))),
    ]  # fmt: skip
    prompts = request.get("prompt_versions") or {}
    for node, meta in sorted(prompts.items()):
        facts.append(("prompt", f"{node}@{meta.get('version')}"))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    status = _status(request)
    if request.get("error_type"):
        status += (
            f" <code>{_e(request.get('error_type'))}</code>: {_e(request.get('error_message'))}"
        )
    rating = (feedback or {}).get("rating")
    fb = (
        f'<form method="post" action="{url}/feedback" aria-label="Feedback on this run">'
        f'<label>Comment<textarea name="comment" rows="3" cols="70">{_e((feedback or {}).get("comment"))}</textarea></label>'
        f'<p><button type="submit" name="rating" value="1" class="up{" chosen" if rating == 1 else ""}" aria-pressed="{str(rating == 1).lower()}">▲ Good answer</button> '
        f'<button type="submit" name="rating" value="-1" class="down{" chosen" if rating == -1 else ""}" aria-pressed="{str(rating == -1).lower()}">▼ Bad answer</button> '
        f'<button type="submit" name="rating" value="0">Comment only</button></p></form>'
        f'<p><a href="{url}/case.toml">Export as an eval case (TOML)</a></p>'
    )
    if inputs_stored:
        replay = (
            f'<form method="post" action="{url}/replay" aria-label="Replay this run">'
            '<label>At git ref (empty: the recorded SHA)<input name="at" value="HEAD" size="14"></label> '
            '<button class="primary" type="submit">Replay and diff</button></form>'
        )
    else:
        replay = (
            "<p class=muted>Its inputs were not stored, so it cannot be replayed: the service "
            "keeps them when started with <code>promptdag serve --store-inputs</code>.</p>"
        )
    body = (
        f"<p>{status}</p><dl class=facts>{dl}</dl>"
        f"<h2>DAG</h2>{dag}"
        f"<h2>LLM calls ({len(calls)})</h2>{''.join(_call(c, len(calls) <= 3 or i == len(calls) - 1) for i, c in enumerate(calls)) or '<p>No LLM calls.</p>'}"
        f"<h2>Feedback</h2>{fb}<h2>Replay</h2>{replay}"
    )
    return _page(base, "runs", f"Run {rid[:12]}", body)


def variants_page(
    base: str,
    tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    since: str,
    pipeline: str,
    pipelines: Sequence[str],
) -> str:
    """One table per pipeline (`tables`: pipeline, its variants' rows): variants are compared
    within a pipeline, never across two."""
    form = (
        f'<form class="filters" method="get" action="{_e(base)}/variants" aria-label="Filter variants">'
        + _select("pipeline", "Pipeline", pipelines, pipeline)
        + f'<label>Since (30m, 24h, 7d)<input name="since" value="{_e(since)}" size="6"></label>'
        '<button class="primary" type="submit">Show</button></form>'
    )
    note = (
        "<p class=muted>Intervals are 95% Wilson score intervals: two variants whose intervals "
        "overlap widely are not shown to differ yet.</p>"
    )
    parts = [
        (f"<h2>Pipeline {_e(name)}</h2>" if len(tables) > 1 or not pipeline else "")
        + _variants_table(rows)
        for name, rows in tables
    ]
    return _page(
        base, "variants", "Variants compared", form + ("".join(parts) or "<p>No runs.</p>") + note
    )


def _variants_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>Variant</th><th class=num>Runs</th><th class=num>Error rate (95% CI)</th>"
        "<th class=num>Input errors (4xx)</th><th class=num>Model/server errors (5xx)</th>"
        "<th class=num>p50 latency s</th><th class=num>p95 latency s</th>"
        "<th class=num>Tokens per run</th><th class=num>Cost per run</th><th class=num>Cost</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r['variant'])}</td><td class=num>{r['runs']}</td>"
        f"<td class=num>{_pct(r['error_rate'], r['error_rate_ci'])}</td>"
        f"<td class=num>{_pct(r['input_error_rate'], r['input_error_rate_ci'])}</td>"
        f"<td class=num>{_pct(r['server_error_rate'], r['server_error_rate_ci'])}</td>"
        f"<td class=num>{_num(r['p50_latency_s'])}</td><td class=num>{_num(r['p95_latency_s'])}</td>"
        f"<td class=num>{_num(r['tokens_per_run'])}</td><td class=num>{usd(r['cost_per_run'])}</td>"
        f"<td class=num>{usd(r['cost_usd'])}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>" if rows else "<p>No runs.</p>"


def compare_page(
    base: str,
    variants: Sequence[str],
    a: str,
    b: str,
    pairs: Sequence[Mapping[str, Any]],
    pipeline: str = "",
    pipelines: Sequence[str] = (),
) -> str:
    form = (
        f'<form class="filters" method="get" action="{_e(base)}/compare">'
        + _select("pipeline", "Pipeline", pipelines, pipeline)
        + _select("a", "Variant A", variants, a)
        + _select("b", "Variant B", variants, b)
        + '<button class="primary" type="submit">Compare</button></form>'
    )
    if not (a and b):
        return _page(base, "compare", "Side by side", form + "<p>Choose two variants.</p>")

    def answer(item: Any, side: str) -> str:
        got = item[f"{side}_answer"]
        run = item[side]
        link = f'<a href="{_e(base)}/runs/{quote(run["request_id"])}"><code>{_e(run["request_id"][:12])}</code></a>'
        if got is None:
            return f"{link}<p class=muted>no answer text recorded</p>"
        text, source = got
        return f"{link} <span class=muted>({_e(source)})</span><pre>{_e(text)}</pre>"

    rows = "".join(
        f"<h2>{_e(p['key'])}</h2><div class=cols><div>{answer(p, 'a')}</div><div>{answer(p, 'b')}</div></div>"
        for p in pairs
    )
    head = f"<div class=cols><h2>A: {_e(a)}</h2><h2>B: {_e(b)}</h2></div>"
    empty = (
        "<p>No inputs were answered by both variants. Pairs come from identical stored inputs "
        "(<code>serve --store-inputs</code>) or the same subject id.</p>"
    )
    return _page(
        base, "compare", f"{a} and {b} side by side", form + (head + rows if pairs else empty)
    )


def costs_page(base: str, days: Sequence[Mapping[str, Any]]) -> str:
    if not days:
        return _page(base, "costs", "Cost per day", "<p>No runs in the last 30 days.</p>")
    top = max((d["cost_usd"] or 0.0) for d in days) or 1.0
    bar_w, chart_h = 28, 160
    bars = []
    for i, d in enumerate(days):
        height = chart_h * (d["cost_usd"] or 0.0) / top
        bars.append(
            f'<rect class="bar" x="{40 + i * (bar_w + 6)}" y="{10 + chart_h - height:.1f}" '
            f'width="{bar_w}" height="{height:.1f}"><title>{_e(d["day"])}: {usd(d["cost_usd"])}</title></rect>'
        )
    width = 60 + len(days) * (bar_w + 6)
    chart = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{chart_h + 30}" role="img" '
        f'aria-label="Cost per day, highest {usd(top)}">'
        f'<text x="0" y="20" font-size="11">{usd(top)}</text>'
        f'<line x1="36" y1="{chart_h + 10}" x2="{width}" y2="{chart_h + 10}" stroke="#6b7280"/>'
        + "".join(bars)
        + "</svg>"
    )
    rows = "".join(
        f"<tr><td>{_e(d['day'])}</td><td class=num>{d['runs']}</td>"
        f"<td class=num>{_num(d['tokens'])}</td><td class=num>{usd(d['cost_usd'])}</td></tr>"
        for d in days
    )
    table = (
        "<table><tr><th>Day (UTC)</th><th class=num>Runs</th><th class=num>Tokens</th>"
        f"<th class=num>Cost</th></tr>{rows}</table>"
    )
    return _page(
        base, "costs", "Cost per day (last 30 days)", f'<div class="dag">{chart}</div>{table}'
    )


def replay_running_page(base: str, job: Any) -> str:
    """A replay still running (or waiting for another to finish): the page reloads itself
    every 2 s (a meta refresh, no script) until it shows the diff."""
    rid = job.request_id
    at = "its recorded SHA" if job.at is None else job.at
    if job.started_at is None:
        state = "Waiting for another replay to finish (one runs at a time)."
    else:
        state = (
            f"Running for {job.seconds():.0f} s: the commit is checked out in a git worktree "
            "and the request re-run there."
        )
    body = (
        f'<p><a href="{_e(base)}/runs/{quote(rid)}">Back to the run</a></p>'
        f'<p class=verdict role="status">Replaying at {_e(at)}…</p><p>{_e(state)}</p>'
        f"<p class=muted>This page reloads itself every 2 seconds until the diff is ready; "
        f'other pages keep working meanwhile. <a href="">Reload now</a></p>'
    )
    return _page(base, "runs", f"Replay of {rid[:12]}", body, refresh_s=2)


def replay_page(base: str, result: Any) -> str:
    rid = result.request_id
    back = f'<p><a href="{_e(base)}/runs/{quote(rid)}">Back to the run</a></p>'
    at = "its recorded SHA" if result.at == "recorded" else result.at
    head = (
        f"<p>Replayed at {_e(at)} (<code>{_e(result.at_sha[:12])}</code>); recorded at "
        f"<code>{_e((result.recorded_sha or 'no SHA')[:12])}</code>.</p>"
    )
    if result.error:
        return _page(
            base,
            "runs",
            f"Replay of {rid[:12]}",
            back + head + f"<p class=error>{_e(result.error)}</p>",
        )
    if result.same_prompts is None:
        prompts = "Rendered prompts: nothing recorded to compare with."
    elif result.same_prompts:
        prompts = "Rendered prompts: the same hashes as recorded."
    else:
        prompts = "Rendered prompts differ: " + "; ".join(result.prompt_changes)
    if result.same_output is None:
        verdict, diff = (
            "No recorded answer to compare with.",
            f"<pre>{_e(result.replayed_answer)}</pre>",
        )
    elif result.same_output:
        verdict, diff = "Same answer, byte for byte.", f"<pre>{_e(result.replayed_answer)}</pre>"
    else:
        verdict = (
            f"The answer differs: {result.words_changed} words changed."
            if result.words_changed
            else "The answer differs in punctuation or spacing only."
        )
        diff = f'<pre aria-label="Word diff: deleted words struck, inserted words underlined">{word_diff_html(result.diff)}</pre>'
    lock = {
        None: "Dependency lock: not recorded with the run.",
        False: "Dependency lock: the same as recorded.",
        True: "Dependency lock: changed since the recorded run (see below).",
    }[result.dependency_lock_changed]
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    calls = f"{result.calls} calls, {result.cached_calls} from the response cache, cost {usd(result.cost_usd)}."
    prompt_diff = ""
    if result.prompt_diff is not None:
        where, pieces = result.prompt_diff
        prompt_diff = (
            f"<h2>The prompt of call <code>{_e(where)}</code>, recorded → replayed</h2>"
            f'<pre aria-label="Prompt word diff">{word_diff_html(pieces)}</pre>'
        )
    body = (
        back
        + head
        + f"<p class=verdict>{_e(verdict)}</p><p>{_e(prompts)}</p><p>{_e(lock)}</p>"
        + f"<p>{_e(calls)}</p>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + "<h2>Recorded answer → replayed answer (word diff)</h2>"
        + diff
        + prompt_diff
    )
    return _page(base, "runs", f"Replay of {rid[:12]}", body)
