"""The reports of a suite run: JUnit XML (parsed back), Markdown and the JSON dict."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from promptdag.evals import SuiteResult, load_suite, run_suite
from promptdag.evals.report import markdown_table
from tests.promptdag.evals.test_runner import MIXED


@pytest.fixture
def mixed(suite_file: Callable[..., Path]) -> SuiteResult:
    suite = load_suite(suite_file(MIXED))
    return asyncio.run(run_suite(suite, overrides={"llm_cache": "off"}))


def test_junit_has_a_testsuite_per_suite_and_a_testcase_per_case(
    mixed: SuiteResult, tmp_path: Path
) -> None:
    path = tmp_path / "evals.xml"
    mixed.write_junit(path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "mixed"
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == ("4", "1", "1", "1")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["threshold"] == "0.3" and props["passed"] == "True"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["passes", "fails", "empty", "judge-only"]
    assert all(c.get("classname") == "evals.mixed" for c in cases.values())
    assert [child.tag for child in cases["passes"]] == ["system-out"]
    failure = cases["fails"].find("failure")
    assert failure is not None
    assert failure.get("message") == "expected all of 'tunnel'; missing 'tunnel'"
    assert "[fail] 1 contains" in (failure.text or "")
    error = cases["empty"].find("error")
    assert error is not None and "InputError" in (error.get("message") or "")
    skipped = cases["judge-only"].find("skipped")
    assert skipped is not None
    assert (skipped.get("message") or "").startswith("skipped: no judge model configured")
    out = cases["passes"].findtext("system-out") or ""
    assert "[skip] 3 llm-rubric: skipped: no judge model configured" in out
    assert "output:\nKey points" in out


def test_junit_survives_control_characters_in_outputs(real_suite_result: SuiteResult) -> None:
    first = real_suite_result.case_results[0]
    broken = SuiteResult(
        real_suite_result.suite,
        [replace(first, output="form\x0cfeed \x00 nul")],
    )
    root = ET.fromstring(broken.to_junit())
    assert "form\ufffdfeed" in (root.findtext("testsuite/testcase/system-out") or "")


def test_markdown_has_a_headline_a_case_table_and_an_assertion_table(mixed: SuiteResult) -> None:
    text = mixed.to_markdown()
    lines = text.splitlines()
    assert lines[0] == "## Eval suite `mixed`: PASSED"
    assert "Pass rate 33% (1 of 3 evaluated cases) · threshold 30% · 1 failed · 1 errors" in text
    assert "1 skipped (not evaluated)" in text
    assert "no judge model configured: judge assertions skipped, not counted as passed" in text
    assert (
        "| case | variant | status | pass | fail | skip | error | tokens | cost | run error |"
        in lines
    )
    assert "### Assertions" in lines
    assert "| fails | 1 | contains | fail | expected all of 'tunnel'; missing 'tunnel' |" in lines
    skip_rows = [ln for ln in lines if "| llm-rubric | skip |" in ln]
    assert skip_rows and all("skipped: no judge model configured" in ln for ln in skip_rows)


def test_markdown_of_a_suite_with_nothing_evaluated_says_it_cannot_pass(
    suite_file: Callable[..., Path],
) -> None:
    suite = load_suite(suite_file(MIXED))
    result = asyncio.run(run_suite(suite, case_ids=["judge-only"], overrides={"llm_cache": "off"}))
    text = result.to_markdown()
    assert "FAILED" in text and "Pass rate n/a" in text
    assert "No case was evaluated, so the suite cannot pass." in text


def test_markdown_table_escapes_pipes_and_line_breaks() -> None:
    df = pd.DataFrame([["a|b", "one\ntwo", None]], columns=["x", "y", "z"])
    assert markdown_table(df).splitlines() == [
        "| x | y | z |",
        "|---|---|---|",
        "| a\\|b | one<br>two |  |",
    ]


def test_json_is_serializable_and_carries_every_case_and_assertion(mixed: SuiteResult) -> None:
    data = json.loads(json.dumps(mixed.to_json()))
    assert data["suite"] == "mixed" and data["threshold"] == 0.3
    assert data["pass_rate"] == pytest.approx(1 / 3) and data["passed"] is True
    assert data["evaluated"] == 3
    assert data["cases_by_status"] == {"pass": 1, "fail": 1, "skip": 1, "error": 1}
    assert data["judge"] == {"model": None, "calls": 0}
    assert len(data["suite_sha256"]) == 64
    by_id = {c["case"]: c for c in data["cases"]}
    assert by_id["empty"]["output"] is None and by_id["empty"]["run_error"].startswith("InputError")
    passes = by_id["passes"]
    assert passes["status"] == "pass" and passes["usage"]["calls"] == 2
    assert [a["status"] for a in passes["assertions"]] == ["pass", "pass", "skip"]
    assert set(passes["assertions"][0]) == {"index", "type", "status", "detail"}
