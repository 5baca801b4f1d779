"""Suite files: loading, validation that reports every problem at once, selection by case id,
and the changes between two versions of a suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from promptdag.errors import ConfigError
from promptdag.evals import list_suites, load_suite, suite_changes
from tests.promptdag.evals.conftest import REPO

THREE = """
    [[cases.assert]]
    type = "contains"
    values = ["a"]
    [[cases.assert]]
    type = "regex"
    pattern = "b"
    [[cases.assert]]
    type = "length"
    unit = "words"
    max = 10
"""

BROKEN = (
    """
    [suite]
    threshold = 1.5
    treshold = 0.9

    [[cases]]
    id = "dup"
    text = "x"
    [[cases.assert]]
    type = "sentiment"
    [[cases.assert]]
    type = "regex"

    [[cases]]
    id = "dup"
    pdf = "examples/missing.pdf"
    variant = "klingon"
"""
    + THREE
    + """
    [[cases]]
    id = "both"
    text = "x"
    pdf = "examples/the-man-without-a-body.pdf"
"""
    + THREE
    + """
    [[cases.assert]]
    type = "pairwise-judge"
    reference_case = "nobody"
"""
)


def test_the_real_suite_loads_with_enough_cases_and_assertions() -> None:
    suite = load_suite("summarize")
    assert suite.name == "summarize" and 5 <= len(suite.cases) <= 8
    assert all(len(c.asserts) >= 3 for c in suite.cases)
    types = {a.type for c in suite.cases for a in c.asserts}
    assert {"llm-rubric", "pairwise-judge", "token-budget", "cost-budget", "json-schema"} <= types
    assert {c.variant for c in suite.cases} >= {None, "german"}
    assert any(c.pdf for c in suite.cases) and any(c.query for c in suite.cases)
    assert suite.root == REPO and len(suite.sha256) == 64
    assert list_suites() == ["summarize"]


def test_validation_reports_every_problem_at_once(suite_file: Callable[..., Path]) -> None:
    path = suite_file(BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    problems = caught.value.problems
    text = "\n".join(problems)
    expected = [
        "threshold = 1.5 must be a pass rate from 0 to 1",
        "[suite] has unknown key(s) ['treshold']",
        "case 'dup': has 2 assertion(s); each case needs at least 3",
        "case 'dup': assertion 1 (sentiment): unknown type 'sentiment'",
        "case 'dup': assertion 2 (regex): missing option 'pattern'",
        "case 'dup': pdf 'examples/missing.pdf' is not a file",
        "case 'both': give exactly one document",
        "case id 'dup' is used 2 times",
        "reference_case 'nobody' must name another case",
        "variant 'klingon' is not defined in prompts/variants.toml. Defined: article-v1, baseline",
    ]
    for snippet in expected:
        assert snippet in text, f"{snippet!r} not in:\n{text}"
    assert all(p.startswith(f"{path}: ") for p in problems)


def test_an_unknown_suite_lists_the_defined_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"suite 'nope' is not defined in ci/evals/suites/\. Defined: summarize\."
    ):
        load_suite("nope")


def test_invalid_toml_is_one_clear_problem(suite_file: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_suite(suite_file("[suite\nthreshold = 1"))


def test_a_suite_without_cases_is_rejected(suite_file: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"defines no \[\[cases\]\]"):
        load_suite(suite_file("[suite]\nthreshold = 0.5\n"))


def test_select_keeps_suite_order_and_rejects_unknown_ids() -> None:
    suite = load_suite("summarize")
    picked = suite.select(["news-query", "news-article"])
    assert [c.id for c in picked] == ["news-article", "news-query"]
    with pytest.raises(ConfigError, match=r"has no case 'ghost'\. Cases: "):
        suite.select(["ghost"])


def test_suite_changes_show_a_loosened_bar() -> None:
    base = load_suite("summarize")
    first, second, *rest = base.cases
    loosened_case = replace(second, asserts=second.asserts[:-1], query="Other?")
    head = replace(
        base,
        threshold=0.5,
        cases=(loosened_case, *rest, replace(first, id="new-case")),
    )
    lines = suite_changes(base, head)
    assert lines[0] == "threshold lowered: 1 → 0.5 (the gate uses the base value)"
    assert "case removed: pdf-baseline" in lines
    assert "case added: new-case (not gated until merged)" in lines
    assert any(line.startswith("case pdf-concise-query: assertion removed: ") for line in lines)
    assert 'case pdf-concise-query: query: "What is the Telepomp?" → "Other?"' in lines
    assert suite_changes(base, base) == []
