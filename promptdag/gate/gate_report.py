"""The gate's report files: report.md (the PR comment), report.html (the artifact) and
report.json (for machines): the verdict and its reasons, the lock check, what was selected and
why, the eval results, the regression judge, then the full review report of the change."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from promptdag.gate.gate import GateResult

__all__ = ["gate_json", "gate_markdown", "write_reports"]


def _verdict(result: GateResult) -> str:
    if result.passed:
        return f"✅ **Prompt gate passed** against `{result.base}`."
    return f"❌ **Prompt gate failed** against `{result.base}`."


def _lines(result: GateResult) -> list[str]:
    out = [_verdict(result), ""]
    reasons = result.reasons()
    if reasons:
        out += [f"- {r}" for r in reasons] + [""]
    lock = "up to date" if result.lock.ok else "needs attention (see above)"
    out += ["### Gate steps", "", f"- **prompts.lock**: {lock}."]
    calls = result.llm_calls
    out.append(
        f"- **LLM calls made by the evals**: {calls['calls'] - calls['cached_calls']} "
        f"({calls['cached_calls']} more served from the response cache)."
    )
    out.append(f"- **Regression judge**: {result.judge_note or 'on'}.")
    for suite in result.suites:
        out += [
            "",
            f"#### Eval suite `{suite.name}` (cases and threshold from `{result.base}`)",
            "",
        ]
        out += [f"- selected `{c}`: {why}" for c, why in sorted(suite.selection.selected.items())]
        out += [
            f"- not selected `{c}`: {why}" for c, why in sorted(suite.selection.skipped.items())
        ]
        if suite.result is not None:
            r = suite.result
            out += [
                "",
                f"Pass rate **{r['pass_rate']}** (threshold {r['threshold']}): "
                f"{'passed' if r['passed'] else 'FAILED'}; cases by status {r['cases_by_status']}, "
                f"assertions by status {r['assertions_by_status']}.",
                "",
            ]
            out += ["| case | status | failing or skipped assertions |", "|---|---|---|"]
            for case in r["cases"]:
                notes = "; ".join(
                    f"{a['type']}: {a['detail']}"
                    for a in case["assertions"]
                    if a["status"] != "pass"
                )
                out.append(
                    f"| `{case['case']}` | {case['status']} | {(case.get('run_error') or notes or '—').replace('|', '/')} |"
                )
        if suite.judge:
            j = suite.judge
            out += [
                "",
                f"Regression judge: {j['wins']} win(s), {j['ties']} tie(s), {j['losses']} loss(es), {j['errors']} error(s).",
            ]
    return out


def gate_markdown(result: GateResult) -> str:
    return (
        "\n".join([*_lines(result), "", "---", "", result.review.to_markdown(max_chars=50_000)])
        + "\n"
    )


def gate_json(result: GateResult) -> dict[str, Any]:
    return {
        "base": result.base,
        "passed": result.passed,
        "reasons": result.reasons(),
        "lock": {"ok": result.lock.ok, "messages": result.lock.messages()},
        "llm_calls": result.llm_calls,
        "judge": result.judge_note or "on",
        "suites": [
            {
                "name": s.name,
                "selected": s.selection.selected,
                "skipped": s.selection.skipped,
                "result": s.result,
                "judge": s.judge,
            }
            for s in result.suites
        ],
        "review": result.review.to_json(),
    }


def _html_section(result: GateResult) -> str:
    items = "".join(
        f"<li>{html.escape(line.lstrip('- '))}</li>"
        for line in _lines(result)[2:]
        if line.startswith("- ")
    )
    verdict = html.escape(_verdict(result).replace("**", "").replace("`", ""))
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons())
    return (
        f'<section class="gate"><h1>{verdict}</h1>'
        + (f"<h2>Why</h2><ul>{reasons}</ul>" if reasons else "")
        + f"<h2>Gate steps</h2><ul>{items}</ul></section>"
    )


def write_reports(result: GateResult, report_dir: Path) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    page = result.review.to_html()
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
