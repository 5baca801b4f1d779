"""Suite files: loading, validation that reports every problem at once, selection by case id,
and the changes between two versions of a suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from promptdag.contract import load_contract
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
    inputs = { text = "x", colour = "red" }
    [[cases.assert]]
    type = "sentiment"
    [[cases.assert]]
    type = "regex"

    [[cases]]
    id = "dup"
    files = { pdf_bytes = "examples/missing.pdf" }
    variant = "klingon"
"""
    + THREE
    + """
    [[cases]]
    id = "both"
    inputs = { text = "x" }
    files = { pdf_bytes = "examples/the-man-without-a-body.pdf" }
"""
    + THREE
    + """
    [[cases.assert]]
    type = "pairwise-judge"
    reference_case = "nobody"
"""
)
INPUTS = "content_type, pdf_bytes, pdf_password, source_name, text, user_query"


def problems_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    assert all(p.startswith(f"{path}: ") for p in caught.value.problems)
    return "\n".join(caught.value.problems)


def test_the_real_suite_loads_with_enough_cases_and_assertions() -> None:
    suite = load_suite("summarize")
    assert suite.name == "summarize" and suite.pipeline == "summarize"
    assert 5 <= len(suite.cases) <= 8
    assert all(len(c.asserts) >= 3 for c in suite.cases)
    types = {a.type for c in suite.cases for a in c.asserts}
    assert {"llm-rubric", "pairwise-judge", "token-budget", "cost-budget", "json-schema"} <= types
    assert {c.variant for c in suite.cases} >= {None, "german"}
    assert any(c.files.get("pdf_bytes") for c in suite.cases)
    assert any(c.inputs.get("user_query") for c in suite.cases)
    assert suite.root == REPO and len(suite.sha256) == 64
    assert list_suites() == ["summarize"]


def test_a_case_reads_its_files_into_the_declared_inputs() -> None:
    suite = load_suite("summarize")
    spec = load_contract(REPO).pipeline("summarize")
    (case,) = suite.select(["pdf-concise-query"])
    inputs = case.request_inputs(REPO, spec)
    assert inputs["pdf_bytes"] == (REPO / "examples/the-man-without-a-body.pdf").read_bytes()
    assert inputs["source_name"] == "the-man-without-a-body.pdf"  # the input's filename_input
    assert inputs["user_query"] == "What is the Telepomp?"
    assert case.source == "examples/the-man-without-a-body.pdf"


def test_validation_reports_every_problem_at_once(suite_file: Callable[..., Path]) -> None:
    text = problems_of(suite_file(BROKEN))
    expected = [
        "threshold = 1.5 must be a pass rate from 0 to 1",
        "[suite] has unknown key(s) ['treshold']",
        "case 'dup': has 2 assertion(s); each case needs at least 3",
        "case 'dup': assertion 1 (sentiment): unknown type 'sentiment'",
        "case 'dup': assertion 2 (regex): missing option 'pattern'",
        f"case 'dup': input 'colour' is not an input of pipeline 'summarize'. Inputs: {INPUTS}.",
        "case 'dup': files.pdf_bytes = 'examples/missing.pdf' is not a file under ",
        "case 'both': give exactly one of pdf_bytes, text (in inputs or files); got pdf_bytes, text",
        "case id 'dup' is used 2 times",
        "reference_case 'nobody' must name another case",
        "variant 'klingon' is not defined in prompts/variants.toml. Defined: article-v1, baseline",
    ]
    for snippet in expected:
        assert snippet in text, f"{snippet!r} not in:\n{text}"


def test_cases_are_checked_against_the_pipelines_declared_inputs_and_outputs(
    suite_file: Callable[..., Path],
) -> None:
    body = (
        """
        [suite]
        threshold = 1

        [[cases]]
        id = "old-format"
        pdf = "examples/the-man-without-a-body.pdf"
        query = "Why?"
    """
        + THREE
        + """
        [[cases]]
        id = "bad-values"
        inputs = { pdf_bytes = "not bytes", content_type = "a {braced} thing" }
        files = { user_query = "examples/the-man-without-a-body.pdf" }
    """
        + THREE
        + """
        [[cases]]
        id = "no-document"
        inputs = { user_query = "Why?" }
    """
        + THREE
        + """
        [[cases.assert]]
        type = "contains"
        values = ["x"]
        output = "summry"
        [[cases.assert]]
        type = "token-budget"
        max_calls = 3
        output = "summary"
    """
    )
    text = problems_of(suite_file(body))
    outputs = "summary, chunk_summaries, document_tokens, document_pages, usage, fingerprint"
    expected = [
        "case 'old-format': unknown key(s) ['pdf', 'query']; a case takes id, variant, inputs, "
        "files, assert",
        "case 'old-format': give exactly one of pdf_bytes, text (in inputs or files); got none",
        """case 'bad-values': input 'pdf_bytes' takes a file: give its path in files = """
        """{ pdf_bytes = "path" }""",
        "case 'bad-values': inputs.content_type: input content_type may not contain '{' '}'",
        "case 'bad-values': files.user_query: 'user_query' is not a file or text input of "
        "pipeline 'summarize'. File and text inputs: pdf_bytes, text.",
        "case 'no-document': give exactly one of pdf_bytes, text (in inputs or files); got none",
        "case 'no-document': assertion 4 (contains): output = 'summry' is not an output of "
        f"pipeline 'summarize'. Outputs: {outputs}",
        "case 'no-document': assertion 5 (token-budget): unknown option 'output'",
    ]
    for snippet in expected:
        assert snippet in text, f"{snippet!r} not in:\n{text}"


def test_a_suite_names_a_declared_pipeline(suite_file: Callable[..., Path]) -> None:
    body = '[suite]\npipeline = "translate"\nthreshold = 1\n[[cases]]\nid = "a"\n' + THREE
    text = problems_of(suite_file(body))
    assert (
        "[suite] pipeline = 'translate' is not declared in [tool.promptdag.pipelines]. "
        "Declared: summarize"
    ) in text


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
    loosened_case = replace(
        second, asserts=second.asserts[:-1], inputs={**second.inputs, "user_query": "Other?"}
    )
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
    assert 'case pdf-concise-query: inputs.user_query: "What is the Telepomp?" → "Other?"' in lines
    assert suite_changes(base, base) == []
