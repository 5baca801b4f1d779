"""A suite result rendered for people (Markdown, from the pandas tables), for machines (a JSON
dict) and for CI dashboards (JUnit XML: a testsuite per suite, a testcase per case)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from promptdag.evals.result import SuiteResult

__all__ = ["markdown_table", "to_json", "to_junit", "to_markdown"]

_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_JUNIT_KIND = {"fail": "failure", "error": "error", "skip": "skipped"}


def _cell(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of `df` (pipes escaped, line breaks as <br>)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _headline(result: SuiteResult) -> list[str]:
    c = result.counts
    verdict = "PASSED" if result.passed else "FAILED"
    judge = (
        f"judge model {result.judge_model}"
        if result.judge_model
        else "no judge model configured: judge assertions skipped, not counted as passed"
    )
    lines = [
        f"## Eval suite `{result.suite.name}`: {verdict}",
        "",
        f"Pass rate {_rate(result.pass_rate)} ({c['pass']} of {result.evaluated} evaluated cases) · "
        f"threshold {_rate(result.threshold)} · {c['fail']} failed · {c['error']} errors · "
        f"{c['skip']} skipped (not evaluated) · {judge}.",
    ]
    a = result.assertion_counts
    lines.append(
        f"Assertions: {a['pass']} passed · {a['fail']} failed · {a['error']} errors · "
        f"{a['skip']} skipped."
    )
    if result.evaluated == 0:
        lines.append("No case was evaluated, so the suite cannot pass.")
    return lines


def _case_table(result: SuiteResult) -> pd.DataFrame:
    df = result.cases.copy()
    df["tokens"] = [
        "" if u is None else f"{u['input_tokens']}→{u['output_tokens']}" for u in df["usage"]
    ]
    df["cost"] = [
        "" if u is None else ("unknown" if u["cost_usd"] is None else f"${u['cost_usd']:.4f}")
        for u in df["usage"]
    ]
    df["run error"] = df["run_error"].fillna("")
    return df[
        [
            "case",
            "variant",
            "status",
            "pass",
            "fail",
            "skip",
            "error",
            "tokens",
            "cost",
            "run error",
        ]
    ]


def to_markdown(result: SuiteResult) -> str:
    """Headline, one row per case, then one row per assertion."""
    assertions = result.results[["case", "index", "type", "status", "detail"]].rename(
        columns={"index": "#"}
    )
    return "\n".join(
        [
            *_headline(result),
            "",
            markdown_table(_case_table(result)),
            "",
            "### Assertions",
            "",
            markdown_table(assertions),
            "",
        ]
    )


def to_json(result: SuiteResult) -> dict[str, Any]:
    """Everything in the report as plain JSON-ready data."""
    suite = result.suite
    return {
        "suite": suite.name,
        "description": suite.description,
        "file": str(suite.path),
        "suite_sha256": suite.sha256,
        "threshold": result.threshold,
        "pass_rate": result.pass_rate,
        "passed": result.passed,
        "evaluated": result.evaluated,
        "cases_by_status": result.counts,
        "assertions_by_status": result.assertion_counts,
        "judge": {"model": result.judge_model, "calls": result.judge_calls},
        "cases": [
            {
                "case": c.case,
                "variant": c.variant,
                "source": c.source,
                "status": c.status,
                "output": c.output,
                "output_sha256": c.output_sha256,
                "usage": c.usage,
                "seconds": c.seconds,
                "run_error": c.run_error,
                "assertions": [
                    {"index": a.index, "type": a.type, "status": a.status, "detail": a.detail}
                    for a in c.assertions
                ],
            }
            for c in result.case_results
        ],
    }


def _xml(text: str) -> str:
    return _XML_BAD.sub("\ufffd", text)


def to_junit(result: SuiteResult) -> str:
    """JUnit XML: <testsuites><testsuite name=suite><testcase name=case> with a <failure>,
    <error> or <skipped> element by case status, and each assertion in <system-out>."""
    c = result.counts
    root = ET.Element("testsuites", name="promptdag-evals")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=result.suite.name,
        tests=str(len(result.case_results)),
        failures=str(c["fail"]),
        errors=str(c["error"]),
        skipped=str(c["skip"]),
        time=f"{sum(r.seconds for r in result.case_results):.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("threshold", result.threshold),
        ("pass_rate", result.pass_rate),
        ("passed", result.passed),
        ("judge_model", result.judge_model or ""),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    for case in result.case_results:
        element = ET.SubElement(
            suite,
            "testcase",
            classname=f"evals.{result.suite.name}",
            name=case.case,
            time=f"{case.seconds:.3f}",
        )
        lines = [f"[{a.status}] {a.index} {a.type}: {a.detail}" for a in case.assertions]
        kind = _JUNIT_KIND.get(case.status)
        if kind is not None:
            wanted = "error" if case.status == "error" else case.status
            first = case.run_error or next(
                (a.detail for a in case.assertions if a.status == wanted), ""
            )
            problem = ET.SubElement(element, kind, message=_xml(first[:500]))
            if kind != "skipped":
                problem.text = _xml("\n".join(lines))
        out = f"variant: {case.variant}\n" + "\n".join(lines) + f"\n\noutput:\n{case.output or ''}"
        ET.SubElement(element, "system-out").text = _xml(out)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
