"""The gate's report files: report.md (the PR comment), report.html (the artifact) and
report.json (for machines): the verdict and its reasons, the lock check, what was selected and
why, the eval table (base and head side by side: status, tokens, calls, cost, latency), each
selected case's output before and after with a word-level diff, the regression judge, then the
full review report of the change.

Markdown stays under GitHub's comment limit (65,536 characters): the cases whose output changed
go in collapsed <details> blocks, as many as fit, and the rest are named with a pointer to the
HTML report, which always shows every case."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from promptdag.gate.gate import GateResult, SuiteGate
from promptdag.gate.report_html import usd
from promptdag.gate.worddiff import word_diff, word_diff_html, word_diff_plain, words_changed

__all__ = [
    "MAX_COMMENT_CHARS",
    "gate_json",
    "gate_markdown",
    "write_error_reports",
    "write_reports",
]

MAX_COMMENT_CHARS = 60_000  # GitHub refuses comments over 65,536 characters
_OUTPUT_CHARS = 4_000  # of one output in one <details> block


def _headline(result: GateResult) -> str:
    return {
        "passed": "✅ **Prompt gate passed**",
        "failed": "❌ **Prompt gate failed**",
        "needs approval": "🟡 **Prompt gate: needs a judge or a reviewer's approval**",
    }[result.verdict] + f" against `{result.base}`."


def _md_text(text: str) -> str:
    text = html.escape(text, quote=False).replace("\n", " ")
    return re.sub(r"([\\`*\[\]|]|(?<!\w)_|_(?!\w))", r"\\\1", text)


def _not_judged(case: dict[str, Any]) -> bool:
    return any(a["status"] == "skip" and "judge" in a["detail"] for a in case.get("assertions", []))


def _status(case: dict[str, Any] | None) -> str:
    """The case's status; a case whose judge assertions were skipped is `not judged` (all its
    assertions skipped) or `pass, not judged`, never a plain pass."""
    if case is None:
        return "not run"
    if case.get("run_error"):
        return "error"
    status = str(case["status"])
    if _not_judged(case):
        return "not judged" if status == "skip" else f"{status}, not judged"
    return status


def _usage(case: dict[str, Any] | None) -> dict[str, Any]:
    return (case or {}).get("usage") or {}


def _tokens(case: dict[str, Any] | None) -> str:
    u = _usage(case)
    return f"{u['input_tokens']}+{u['output_tokens']}" if u else "—"


def _calls(case: dict[str, Any] | None) -> str:
    u = _usage(case)
    return str(u["calls"]) if u else "—"


def _cost(case: dict[str, Any] | None) -> str:
    u = _usage(case)
    return usd(u.get("cost_usd")) if u else "—"


def _costs(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """`$a → $b`, naming the priced models when the two sides price different ones (a model
    switch)."""
    models = [(_usage(c) or {}).get("cost_model") for c in (before, after)]
    if None in models or models[0] == models[1]:
        return f"{_cost(before)} → {_cost(after)}"
    return f"{_cost(before)} ({models[0]}) → {_cost(after)} ({models[1]})"


def _latency(case: dict[str, Any] | None) -> str:
    return "—" if case is None else f"{case.get('seconds', 0.0):.2f} s"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _counts(counts: dict[str, int]) -> str:
    """`3 passed, 1 failed` (statuses with a zero count left out)."""
    names = {"pass": "passed", "fail": "failed", "skip": "skipped", "error": "errors"}
    parts = [f"{counts[k]} {names[k]}" for k in names if counts.get(k)]
    return ", ".join(parts) or "none"


def _problems(case: dict[str, Any] | None) -> str:
    if case is None:
        return ""
    if case.get("run_error"):
        return str(case["run_error"])
    return "; ".join(
        f"{a['type']}: {a['detail']}" for a in case["assertions"] if a["status"] != "pass"
    )


def _output(case: dict[str, Any] | None) -> str:
    if case is None:
        return ""
    return str(case.get("output") or case.get("run_error") or "")


_ROW_HEAD = [
    "case",
    "status base → head",
    "tokens in+out base → head",
    "calls",
    "cost",
    "latency",
    "output",
]


def _rows(suite: SuiteGate) -> list[list[str]]:
    rows = []
    for case, before, after in suite.pairs():
        same = _output(before) == _output(after)
        rows.append(
            [
                case,
                f"{_status(before)} → {_status(after)}",
                f"{_tokens(before)} → {_tokens(after)}",
                f"{_calls(before)} → {_calls(after)}",
                _costs(before, after),
                f"{_latency(before)} → {_latency(after)}",
                "same" if same else "changed",
            ]
        )
    return rows


def _steps(result: GateResult) -> list[str]:
    calls = result.llm_calls
    lock = "up to date" if result.lock.ok else "needs attention (see above)"
    return [
        f"prompts.lock: {lock}.",
        f"LLM calls made by the evals: {calls['calls'] - calls['cached_calls']} "
        f"({calls['cached_calls']} more served from the response cache).",
        f"Regression judge: {result.judge_note or 'on'}.",
    ]


def _suite_md(result: GateResult, suite: SuiteGate, room: int) -> tuple[list[str], list[str]]:
    """(the suite's section, its output <details> blocks fitted into `room` characters)."""
    out = ["", f"#### Eval suite `{suite.name}` (cases and threshold from `{result.base}`)", ""]
    out += [f"- selected `{c}`: {_md_text(w)}" for c, w in sorted(suite.selection.selected.items())]
    out += [
        f"- not selected `{c}`: {_md_text(w)}" for c, w in sorted(suite.selection.skipped.items())
    ]
    if suite.result is None:
        return out, []
    r = suite.result
    out += [
        "",
        f"{_bar(result, suite, '**')}. Cases: {_counts(r['cases_by_status'])}. "
        f"Assertions: {_counts(r['assertions_by_status'])}.",
        "",
        "| " + " | ".join(_ROW_HEAD) + " |",
        "|" + "---|" * len(_ROW_HEAD),
    ]
    out += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in _rows(suite)]
    notes = [(c, _problems(h)) for c, _, h in suite.pairs() if _problems(h)]
    if notes:
        out += ["", "Failing, skipped or not judged assertions at head:", ""]
        out += [f"- `{c}`: {_md_text(n)}" for c, n in notes]
    if suite.rises or suite.drops:
        out += ["", f"Usage against the base (allowed growth +{suite.usage_growth:.0%}):", ""]
        out += [f"- ❌ {_md_text(r)}" for r in suite.rises]
        out += [f"- ⚠️ {_md_text(d)}" for d in suite.drops]
    if suite.judge:
        j = suite.judge
        out += [
            "",
            f"Regression judge: {j['wins']} win(s), {j['ties']} tie(s), {j['losses']} loss(es), "
            f"{j['errors']} error(s).",
        ]
    return out, _details(suite, room)


def _bar(result: GateResult, suite: SuiteGate, bold: str) -> str:
    """The suite's bar and whether it was met: its threshold, or for a changed variant run on
    another variant's cases, the base's results on that variant."""
    r = suite.result or {}
    verdict = "FAILED" if suite.failed else "passed"
    if suite.against_base and suite.base is not None:
        return (
            f"Bar: every case that passed on `{result.base}` with this variant passes at head: "
            f"{verdict} (pass rate {bold}{_rate(r.get('pass_rate'))}{bold})"
        ).replace("`", "`" if bold else "")
    rate = f"{bold}{_rate(r.get('pass_rate'))}{bold}"
    base = f"`{result.base}`" if bold else result.base
    return f"Pass rate {rate} (threshold {_rate(r.get('threshold'))}, from {base}): {verdict}"


def _fence(text: str) -> list[str]:
    ticks = "`" * max(3, max(map(len, re.findall("`+", text)), default=0) + 1)
    return [f"{ticks}text", text, ticks]


def _details(suite: SuiteGate, room: int) -> list[str]:
    """One collapsed block per case whose output changed, as many as fit in `room`."""
    out: list[str] = []
    left_out: list[str] = []
    for case, before, after in suite.pairs():
        a, b = _output(before), _output(after)
        if a == b:
            continue
        pieces = word_diff(a, b)
        diff = word_diff_plain(pieces)
        if len(diff) > _OUTPUT_CHARS:
            diff = diff[:_OUTPUT_CHARS] + f" … ({len(diff) - _OUTPUT_CHARS} more characters)"
        block = [
            "",
            f"<details><summary>Output of <code>{html.escape(case)}</code> before and after "
            f"({words_changed(pieces)} words changed; {html.escape(_status(before))} → "
            f"{html.escape(_status(after))})</summary>",
            "",
            "Word diff (`[-removed-]`, `{+added+}`):",
            "",
            *_fence(diff),
            "",
            "</details>",
        ]
        size = len("\n".join(block)) + 1
        if size > room:
            left_out.append(case)
            continue
        room -= size
        out += block
    if left_out:
        named = ", ".join(f"`{c}`" for c in left_out)
        out += ["", f"Outputs of {named} changed too: see report.html (too long for a comment)."]
    return out


def gate_markdown(result: GateResult, max_chars: int = MAX_COMMENT_CHARS) -> str:
    """The PR comment: verdict, reasons, steps, per suite the eval table and the changed
    outputs, then the review report in what room is left."""
    head = [_headline(result), ""]
    head += [f"- {_md_text(r)}" for r in result.reasons()]
    head += [f"- 🟡 {_md_text(a)}" for a in result.approvals]
    head += [f"- ⚠️ {_md_text(n)}" for n in result.notes]
    head += ["", "### Gate steps", ""] + [f"- {_md_text(s)}" for s in _steps(result)]
    review_room = max_chars // 3
    room = max_chars - review_room - len("\n".join(head)) - 2_000
    suites: list[str] = []
    for suite in result.suites:
        section, details = _suite_md(result, suite, room - len("\n".join(suites)))
        suites += section
        if details:
            suites += ["", "Outputs before and after (the HTML report shows them side by side):"]
            suites += details
    body = "\n".join([*head, *suites]) + "\n"
    review = result.review.to_markdown(max_chars=max(2_000, max_chars - len(body) - 10))
    return body + "\n---\n\n" + review


def gate_json(result: GateResult) -> dict[str, Any]:
    return {
        "base": result.base,
        "verdict": result.verdict,
        "passed": result.passed,
        "reasons": result.reasons(),
        "notes": result.notes,
        "approvals": result.approvals,
        "exit_code": result.exit_code,
        "lock": {
            "ok": result.lock.ok,
            "messages": result.lock.messages(),
            "acknowledged": result.lock.acknowledged,
        },
        "llm_calls": result.llm_calls,
        "judge": result.judge_note or "on",
        "suites": [
            {
                "name": s.name,
                "selected": s.selection.selected,
                "skipped": s.selection.skipped,
                "result": s.result,
                "base": s.base,
                "usage_growth": s.usage_growth,
                "usage_rises": s.rises,
                "usage_drops": s.drops,
                "judge": s.judge,
            }
            for s in result.suites
        ],
        "review": result.review.to_json(),
    }


# --- HTML -----------------------------------------------------------------------------------

GATE_CSS = """
.verdict { font-size: 20px; padding: 10px 14px; border-radius: 6px; margin: 12px 0; }
.verdict.passed { background: #dcfce7; border-left: 6px solid #15803d; color: #14532d; }
.verdict.failed { background: #fee2e2; border-left: 6px solid #b91c1c; color: #7f1d1d; }
.verdict.approval { background: #fef3c7; border-left: 6px solid #b45309; color: #78350f; }
.outputs { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.outputs > div { min-width: 0; border: 1px solid #e5e7eb; border-radius: 4px; padding: 6px; }
.outputs pre { white-space: pre-wrap; word-break: break-word; margin: 0;
               font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
del { background: #fecaca; text-decoration: line-through; }
ins { background: #bbf7d0; text-decoration: none; }
table.evals td, table.evals th { font-size: 13px; }
"""

_VERDICT_TEXT = {
    "passed": "Prompt gate passed",
    "failed": "Prompt gate failed",
    "needs approval": "Prompt gate: needs a judge or a reviewer's approval",
}
_VERDICT_CLASS = {"passed": "passed", "failed": "failed", "needs approval": "approval"}


def _side(pieces: list[tuple[str, str]], keep: str) -> str:
    """One column of a side-by-side diff: the shared words and this side's changed ones."""
    return word_diff_html([p for p in pieces if p[0] in ("=", keep)])


def _suite_html(result: GateResult, suite: SuiteGate) -> str:
    e = html.escape
    parts = [f"<h2>Eval suite <code>{e(suite.name)}</code> (cases and threshold from "
             f"<code>{e(result.base)}</code>)</h2><ul>"]  # fmt: skip
    parts += [
        f"<li>selected <code>{e(c)}</code>: {e(w)}</li>"
        for c, w in sorted(suite.selection.selected.items())
    ]
    parts += [
        f"<li>not selected <code>{e(c)}</code>: {e(w)}</li>"
        for c, w in sorted(suite.selection.skipped.items())
    ]
    parts.append("</ul>")
    if suite.result is None:
        return "".join(parts)
    r = suite.result
    parts.append(
        f"<p>{e(_bar(result, suite, ''))}. Cases: {e(_counts(r['cases_by_status']))}. "
        f"Assertions: {e(_counts(r['assertions_by_status']))}.</p>"
    )
    head = "".join(f"<th>{e(h)}</th>" for h in [*_ROW_HEAD, "problems at head"])
    body = "".join(
        "<tr>"
        + "".join(f"<td>{e(c)}</td>" for c in row)
        + f"<td>{e(_problems(h) or '—')}</td></tr>"
        for row, (_, _, h) in zip(_rows(suite), suite.pairs(), strict=True)
    )
    parts.append(
        f'<table class="evals"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )
    if suite.rises or suite.drops:
        items = [f'<li class="warn">{e(x)}</li>' for x in suite.rises]
        items += [f"<li>{e(x)}</li>" for x in suite.drops]
        parts.append(f"<p>Usage against the base (allowed growth +{suite.usage_growth:.0%}):</p>")
        parts.append("<ul>" + "".join(items) + "</ul>")
    for case, before, after in suite.pairs():
        pieces = word_diff(_output(before), _output(after))
        same = _output(before) == _output(after)
        label = "same output" if same else f"{words_changed(pieces)} words changed"
        parts.append(
            f'<h3 id="output-{e(case)}">Output of <code>{e(case)}</code>: {label}</h3>'
            '<div class="outputs">'
            f"<div><b>base</b> ({e(_status(before))}, {e(_tokens(before))} tokens, "
            f"{e(_cost(before))})<pre>{_side(pieces, '-')}</pre></div>"
            f"<div><b>head</b> ({e(_status(after))}, {e(_tokens(after))} tokens, "
            f"{e(_cost(after))})<pre>{_side(pieces, '+')}</pre></div></div>"
        )
    return "".join(parts)


def _html_section(result: GateResult) -> str:
    e = html.escape
    verdict = result.verdict
    text = f"{_VERDICT_TEXT[verdict]} against {result.base}"
    reasons = "".join(f"<li>{e(r)}</li>" for r in result.reasons())
    reasons += "".join(f"<li>{e(a)}</li>" for a in result.approvals)
    reasons += "".join(f'<li class="warn">{e(n)}</li>' for n in result.notes)
    steps = "".join(f"<li>{e(s)}</li>" for s in _steps(result))
    return (
        f'<section class="gate"><h1 class="verdict {_VERDICT_CLASS[verdict]}">{e(text)}</h1>'
        + (f"<h2>Why</h2><ul>{reasons}</ul>" if reasons else "")
        + f"<h2>Gate steps</h2><ul>{steps}</ul>"
        + "".join(_suite_html(result, s) for s in result.suites)
        + "</section>"
    )


def write_reports(result: GateResult, report_dir: Path) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    page = result.review.to_html()
    page = page.replace("</style>", GATE_CSS + "</style>", 1)
    page = page.replace("<main>", "<main>\n" + _html_section(result), 1)
    files = {
        "report.md": gate_markdown(result),
        "report.html": page,
        "report.json": json.dumps(gate_json(result), indent=2, sort_keys=True, default=str) + "\n",
    }
    paths = []
    for name, text in files.items():
        path = report_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def write_error_reports(base: str, cause: str, report_dir: Path) -> list[Path]:
    """The reports of a gate that could not run (exit 2): the verdict and the cause (which names
    the pack, node@version or variant when one is to blame), so a PR comment never stays a
    stale "passed"."""
    report_dir.mkdir(parents=True, exist_ok=True)
    title = f"Prompt gate could not run against {base}"
    md = (
        f"⛔ **Prompt gate could not run** against `{base}`.\n\n- {_md_text(cause)}\n\n"
        "Nothing was evaluated: fix the cause above and push again.\n"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>body {{ font: 14px/1.45 sans-serif; "
        f"margin: 24px; }}{GATE_CSS}</style></head>\n<body><main>\n"
        f'<h1 class="verdict failed">{html.escape(title)}</h1>\n'
        f"<h2>Why</h2><ul><li>{html.escape(cause)}</li></ul>\n"
        "<p>Nothing was evaluated: fix the cause above and push again.</p>\n</main></body></html>\n"
    )
    data = {"base": base, "verdict": "could not run", "passed": False, "reasons": [cause]}
    files = {
        "report.md": md,
        "report.html": page,
        "report.json": json.dumps(data, indent=2, sort_keys=True) + "\n",
    }
    paths = []
    for name, text in files.items():
        path = report_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
