"""Each assertion type, passing and failing, with the detail a reader sees."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from promptdag.evals import AssertionResult, AssertionSpec, CaseOutput, evaluate
from promptdag.evals.assertions import measure
from promptdag.evals.options import option_problems
from tests.promptdag.evals.conftest import output

USAGE = {
    "calls": 3,
    "cached_calls": 0,
    "input_tokens": 900,
    "output_tokens": 150,
    "cost_usd": 0.0012,
    "llm_seconds": 0.1,
}
SUMMARY = (
    "Key points:\n- The bridge costs 14 million dollars.\n- It opens in 2027. Work starts soon."
)


def check(type_: str, out: CaseOutput | str = SUMMARY, **options: Any) -> AssertionResult:
    assert option_problems(type_, options) == [], "the test's options must be valid"
    if isinstance(out, str):
        out = output(out, usage=USAGE)
    return asyncio.run(evaluate(AssertionSpec(1, type_, options), out))


def test_contains_all_passes_and_names_what_it_found() -> None:
    result = check("contains", values=["bridge", "2027"])
    assert (result.status, result.detail) == ("pass", "found 'bridge', '2027'")


def test_contains_all_fails_naming_the_missing_values() -> None:
    result = check("contains", values=["bridge", "tunnel"])
    assert result.status == "fail"
    assert result.detail == "expected all of 'bridge', 'tunnel'; missing 'tunnel'"


def test_contains_any_needs_only_one() -> None:
    assert check("contains", values=["tunnel", "bridge"], mode="any").status == "pass"
    assert check("contains", values=["tunnel", "ferry"], mode="any").status == "fail"


def test_contains_is_case_insensitive_unless_asked() -> None:
    assert check("contains", values=["KEY POINTS"]).status == "pass"
    result = check("contains", values=["KEY POINTS"], case_sensitive=True)
    assert result.status == "fail" and "missing 'KEY POINTS'" in result.detail


def test_not_contains_fails_naming_what_it_found() -> None:
    assert check("not-contains", values=["PWNED", "ignore"]).status == "pass"
    result = check("not-contains", values=["PWNED", "bridge"])
    assert result.status == "fail"
    assert result.detail == "expected none of 'PWNED', 'bridge'; found 'bridge'"


def test_not_contains_any_mode_needs_one_absent() -> None:
    assert check("not-contains", values=["PWNED", "bridge"], mode="any").status == "pass"
    result = check("not-contains", values=["2027", "bridge"], mode="any")
    assert result.status == "fail" and result.detail.startswith("expected not all of")


def test_regex_match_and_expected_absence() -> None:
    result = check("regex", pattern=r"\d+ million", flags="i")
    assert result.status == "pass" and "'14 million'" in result.detail
    result = check("regex", pattern="pwn", flags="i", expect=False)
    assert (result.status, result.detail) == ("pass", "no match for /pwn/i")


def test_regex_failures_say_what_was_expected_and_found() -> None:
    result = check("regex", pattern="tunnel")
    assert (result.status, result.detail) == ("fail", "expected a match for /tunnel/, found none")
    result = check("regex", pattern="bridge", expect=False)
    assert result.status == "fail"
    assert result.detail.startswith("expected no match for /bridge/, found 'bridge' at ")


def test_regex_flags_apply() -> None:
    assert check("regex", pattern="^- It", flags="m").status == "pass"
    assert check("regex", pattern="^- It").status == "fail"


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("words", 15), ("chars", len(SUMMARY)), ("bullets", 2), ("sentences", 4)],
)
def test_measure_counts_each_unit(unit: str, expected: int) -> None:
    assert measure(unit, SUMMARY) == expected


def test_sentences_ignore_headings_and_split_lines() -> None:
    assert measure("sentences", "## Evidence\nOne. Two!\n\n## End\nThree?") == 3


def test_length_pass_and_fail_details() -> None:
    assert check("length", unit="words", max=20).detail == "15 words (expected at most 20 words)"
    result = check("length", unit="words", max=10)
    assert (result.status, result.detail) == ("fail", "expected at most 10 words, found 15")
    result = check("length", unit="bullets", min=3, max=5)
    assert (result.status, result.detail) == ("fail", "expected 3 to 5 bullets, found 2")
    result = check("length", unit="sentences", min=5)
    assert result.detail == "expected at least 5 sentences, found 4"


def test_json_schema_validates_the_usage_object() -> None:
    schema = {
        "type": "object",
        "required": ["cost_usd"],
        "properties": {"cost_usd": {"type": "number"}},
    }
    assert check("json-schema", output="usage", schema=schema).status == "pass"
    unknown_price = output(SUMMARY, usage={**USAGE, "cost_usd": None})
    result = check("json-schema", unknown_price, output="usage", schema=schema)
    assert result.status == "fail"
    assert (
        result.detail
        == "expected usage to match the schema; $.cost_usd: None is not of type 'number'"
    )


def test_json_schema_parses_a_text_answer_as_json() -> None:
    schema = {"type": "object", "required": ["title"]}
    assert check("json-schema", '```json\n{"title": "x"}\n```', schema=schema).status == "pass"
    result = check("json-schema", '{"name": 1}', schema=schema)
    assert result.detail == "expected answer to match the schema; $: 'title' is a required property"
    result = check("json-schema", SUMMARY, schema=schema)
    assert result.status == "fail"
    assert result.detail.startswith("expected JSON, found text that does not parse (")


def test_json_schema_checks_the_fingerprint() -> None:
    out = output(SUMMARY, fingerprint={"id": "abc", "variant": "baseline"})
    schema = {"type": "object", "required": ["id", "variant"]}
    assert check("json-schema", out, output="fingerprint", schema=schema).status == "pass"


def test_python_callable_gets_output_and_context() -> None:
    ref = "tests.promptdag.evals.callables:mentions_case"
    out = output("about case c", usage=USAGE)
    result = check("python", out, callable=ref, options={"k": 1})
    assert (result.status, result.detail) == ("pass", "case=c options={'k': 1}")
    assert check("python", "nothing", callable=ref).status == "fail"


def test_python_callable_may_return_a_plain_bool() -> None:
    ref = "tests.promptdag.evals.callables:plain_bool"
    assert check("python", "yes indeed", callable=ref).status == "pass"
    result = check("python", "no", callable=ref)
    assert (result.status, result.detail) == ("fail", f"{ref} returned False")


@pytest.mark.parametrize(
    ("ref", "detail"),
    [
        (
            "tests.promptdag.evals.callables:not_a_verdict",
            "returned 'maybe': return a bool or (bool, detail)",
        ),
        ("tests.promptdag.evals.callables:explodes", "raised RuntimeError: boom"),
        (
            "tests.promptdag.evals.callables:missing",
            "cannot import tests.promptdag.evals.callables:missing",
        ),
        ("tests.promptdag.evals.nowhere:f", "cannot import tests.promptdag.evals.nowhere:f"),
    ],
)
def test_python_callable_problems_are_errors(ref: str, detail: str) -> None:
    result = check("python", callable=ref)
    assert result.status == "error" and detail in result.detail


def test_token_budget_names_every_cap_it_breaks() -> None:
    assert check("token-budget", max_total_tokens=2000).detail == "1050 total tokens (cap 2000)"
    result = check("token-budget", max_input_tokens=500, max_output_tokens=100, max_calls=5)
    assert result.status == "fail"
    assert result.detail == (
        "expected at most 500 input tokens, found 900; expected at most 100 output tokens, found 150"
    )


def test_cost_budget_pass_and_fail() -> None:
    assert check("cost-budget", max_usd=0.01).detail == "$0.001200 within $0.01"
    result = check("cost-budget", max_usd=0.001)
    assert (result.status, result.detail) == ("fail", "expected at most $0.001, found $0.001200")


def test_cost_budget_fails_when_the_price_is_unknown() -> None:
    out = output(SUMMARY, usage={**USAGE, "cost_usd": None}, model="mystery-1")
    result = check("cost-budget", out, max_usd=1.0)
    assert result.status == "fail"
    assert "price of model 'mystery-1' is unknown" in result.detail
    assert "[prices]" in result.detail


STRUCTURED = output(
    "triage: bug",
    answer="label",
    outputs={"label": "triage: bug", "tags": ["crash", "login"], "scores": {"bug": 0.9}},
)


def test_text_assertions_check_the_named_output_as_json_text() -> None:
    assert check("contains", STRUCTURED, values=["bug"]).status == "pass"  # the answer
    result = check("contains", STRUCTURED, values=['"login"'], output="tags")
    assert (result.status, result.detail) == ("pass", "found '\"login\"'")
    assert check("length", STRUCTURED, unit="bullets", max=0, output="tags").status == "pass"
    result = check("not-contains", STRUCTURED, values=["crash"], output="tags")
    assert result.status == "fail"


def test_json_schema_checks_a_non_text_output_as_the_value_itself() -> None:
    schema = {"type": "array", "items": {"enum": ["crash", "login", "ui"]}}
    result = check("json-schema", STRUCTURED, output="tags", schema=schema)
    assert (result.status, result.detail) == ("pass", "tags matches the schema")
    result = check("json-schema", STRUCTURED, output="scores", schema={"type": "array"})
    assert (
        result.detail
        == "expected scores to match the schema; $: {'bug': 0.9} is not of type 'array'"
    )


def test_an_output_the_run_lacks_is_an_error_naming_the_outputs() -> None:
    result = check("contains", STRUCTURED, values=["x"], output="missing")
    assert result.status == "error"
    assert "the run has no output 'missing'. Outputs: label, tags, scores, usage, fingerprint" in (
        result.detail
    )


def test_cost_budget_notes_cached_calls() -> None:
    out = output(SUMMARY, usage={**USAGE, "cost_usd": 0.0, "cached_calls": 3})
    assert "(3 of 3 calls cached at $0)" in check("cost-budget", out, max_usd=0.01).detail


@pytest.mark.parametrize(
    ("type_", "options"),
    [
        ("llm-rubric", {"rubric": "Is faithful."}),
        ("pairwise-judge", {"reference": "A reference summary."}),
    ],
)
def test_judge_assertions_are_skipped_without_a_judge(type_: str, options: dict[str, Any]) -> None:
    result = check(type_, **options)
    assert result.status == "skip"
    assert result.detail.startswith("skipped: no judge model configured")


@pytest.mark.parametrize(
    ("type_", "options", "problem"),
    [
        ("contains", {}, "missing option 'values'"),
        ("contains", {"values": []}, "values must be a non-empty list"),
        ("contains", {"values": ["a"], "mode": "most"}, "mode is 'most': use one of all, any"),
        ("regex", {"pattern": "("}, "does not compile"),
        ("regex", {"pattern": "a", "flags": "q"}, "unknown regex flag(s) 'q'"),
        ("length", {"unit": "words"}, "give at least one of min, max"),
        ("length", {"unit": "pages", "max": 1}, "unit is 'pages'"),
        ("length", {"unit": "words", "min": 5, "max": 2}, "min=5 is above max=2"),
        ("json-schema", {"schema": {"type": 12}}, "not a valid JSON schema"),
        ("python", {"callable": "no_colon"}, 'use "module.path:function"'),
        ("token-budget", {}, "give at least one of max_input_tokens"),
        ("cost-budget", {"max_usd": -1}, "max_usd must be a number of USD >= 0"),
        ("pairwise-judge", {"reference": "x", "reference_case": "y"}, "not both"),
        ("pairwise-judge", {"reference": "x", "expect": "draw"}, "expect is 'draw'"),
        ("contains", {"values": ["a"], "colour": 1}, "unknown option 'colour'"),
        ("sentiment", {}, "unknown type 'sentiment'; known: contains, cost-budget"),
    ],
)
def test_option_problems_name_the_option(type_: str, options: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in option_problems(type_, options)), option_problems(
        type_, options
    )
