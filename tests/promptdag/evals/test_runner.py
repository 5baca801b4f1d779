"""Running suites: the real suite offline (judge assertions skipped, never counted as passed),
the pass rate over pass/fail/error cases, failing runs as error cases, case selection with the
cases they reference, variants, overrides, and a real (fake-server) judge."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptdag.errors import ConfigError, VariantError
from promptdag.evals import SuiteResult, judge_from_config, load_suite, run_suite
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.evals.conftest import NEWS, REPO

MIXED = f"""
    [suite]
    name = "mixed"
    threshold = 0.3

    [[cases]]
    id = "passes"
    inputs = {{ text = "{NEWS}" }}
    [[cases.assert]]
    type = "contains"
    values = ["bridge"]
    [[cases.assert]]
    type = "length"
    unit = "words"
    max = 200
    [[cases.assert]]
    type = "llm-rubric"
    rubric = "Faithful."

    [[cases]]
    id = "fails"
    inputs = {{ text = "{NEWS}" }}
    [[cases.assert]]
    type = "contains"
    values = ["tunnel"]
    [[cases.assert]]
    type = "contains"
    values = ["bridge"]
    [[cases.assert]]
    type = "cost-budget"
    max_usd = 1

    [[cases]]
    id = "empty"
    inputs = {{ text = "" }}
    [[cases.assert]]
    type = "contains"
    values = ["x"]
    [[cases.assert]]
    type = "regex"
    pattern = "x"
    [[cases.assert]]
    type = "length"
    unit = "words"
    min = 1

    [[cases]]
    id = "judge-only"
    inputs = {{ text = "{NEWS}", content_type = "a news article" }}
    [[cases.assert]]
    type = "llm-rubric"
    rubric = "Faithful."
    [[cases.assert]]
    type = "llm-rubric"
    rubric = "Short."
    [[cases.assert]]
    type = "pairwise-judge"
    reference_case = "passes"
"""


def run(path_or_name: str | Path, **kwargs: Any) -> SuiteResult:
    kwargs.setdefault("overrides", {"llm_cache": "off"})
    return asyncio.run(run_suite(load_suite(path_or_name), **kwargs))


def test_the_real_suite_passes_offline(real_suite_result: SuiteResult) -> None:
    result = real_suite_result
    assert result.passed and result.pass_rate == 1.0 and result.threshold == 1.0
    assert set(result.cases["status"]) == {"pass"}
    assert result.evaluated == len(result.cases) == len(result.suite.cases)
    assert set(result.cases["variant"]) == {"baseline", "concise", "german"}
    assert len(result.results) == sum(len(c.asserts) for c in result.suite.cases)
    assert result.case_outputs.keys() == set(result.cases["case"])


def test_judge_assertions_are_skipped_visibly_and_never_passed(
    real_suite_result: SuiteResult,
) -> None:
    df = real_suite_result.results
    judged = df[df["type"].isin(["llm-rubric", "pairwise-judge"])]
    assert len(judged) >= 2
    assert set(judged["status"]) == {"skip"}
    assert all(d.startswith("skipped: no judge model configured") for d in judged["detail"])
    deterministic = df[~df["type"].isin(["llm-rubric", "pairwise-judge"])]
    assert set(deterministic["status"]) == {"pass"}
    assert real_suite_result.assertion_counts["skip"] == len(judged)
    assert real_suite_result.assertion_counts["pass"] == len(deterministic)


def test_results_table_has_one_row_per_assertion_with_the_output_hash(
    real_suite_result: SuiteResult,
) -> None:
    df = real_suite_result.results
    assert list(df.columns) == [
        "suite",
        "case",
        "variant",
        "index",
        "type",
        "status",
        "detail",
        "output_sha256",
    ]
    assert set(df["suite"]) == {"summarize"}
    assert df.groupby("case")["output_sha256"].nunique().eq(1).all()
    first = real_suite_result.cases.iloc[0]
    assert first["usage"]["calls"] >= 2 and first["output"].strip()


def test_pass_rate_counts_pass_fail_and_error_cases_but_not_skipped_ones(
    suite_file: Callable[..., Path],
) -> None:
    result = run(suite_file(MIXED))
    statuses = dict(zip(result.cases["case"], result.cases["status"], strict=True))
    assert statuses == {"passes": "pass", "fails": "fail", "empty": "error", "judge-only": "skip"}
    assert result.counts == {"pass": 1, "fail": 1, "skip": 1, "error": 1}
    assert result.evaluated == 3 and result.pass_rate == pytest.approx(1 / 3)
    assert result.passed  # 1/3 >= 0.3
    fails = result.results[result.results["case"] == "fails"]
    assert fails.iloc[0]["detail"] == "expected all of 'tunnel'; missing 'tunnel'"


def test_a_case_whose_run_raises_is_an_error_not_a_crash(suite_file: Callable[..., Path]) -> None:
    result = run(suite_file(MIXED), case_ids=["empty"])
    case = result.case_results[0]
    assert case.status == "error" and case.output is None
    assert case.run_error is not None
    assert case.run_error.startswith("InputError: input text is empty")
    assert {a.status for a in case.assertions} == {"error"}
    assert result.pass_rate == 0.0 and not result.passed


def test_a_suite_with_only_skipped_cases_cannot_pass(suite_file: Callable[..., Path]) -> None:
    result = run(suite_file(MIXED), case_ids=["judge-only"])
    assert result.counts["skip"] == 1 and result.evaluated == 0
    assert result.pass_rate is None and not result.passed
    assert [c.case for c in result.case_results] == ["judge-only"]  # "passes" ran, unreported


def test_the_variant_argument_applies_to_cases_without_their_own() -> None:
    result = run("summarize", variant="bullets", case_ids=["prompt-injection", "german-pack"])
    assert list(result.cases["variant"]) == ["bullets", "german"]


def test_unknown_variant_or_case_or_override_stops_the_run() -> None:
    with pytest.raises(VariantError, match="variant 'nope' is not defined"):
        run("summarize", variant="nope")
    with pytest.raises(ConfigError, match="has no case 'ghost'"):
        run("summarize", case_ids=["ghost"])
    with pytest.raises(ConfigError, match="llm_cache='sometimes' is not a cache mode"):
        run("summarize", overrides={"llm_cache": "sometimes"})


def test_replay_only_without_recorded_responses_is_an_error_per_case() -> None:
    result = run("summarize", case_ids=["news-query"], overrides={"llm_cache": "replay-only"})
    assert result.case_results[0].status == "error"
    assert "CacheMissError" in (result.case_results[0].run_error or "")
    recorded = run("summarize", case_ids=["news-query"], overrides={"llm_cache": "use"})
    replayed = run("summarize", case_ids=["news-query"], overrides={"llm_cache": "replay-only"})
    assert recorded.passed and replayed.passed
    assert replayed.case_outputs == recorded.case_outputs
    assert replayed.case_results[0].usage["cached_calls"] == 2  # type: ignore[index]


def test_judge_assertions_run_on_a_real_judge(
    suite_file: Callable[..., Path], openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    openai_server.enqueue(text=json.dumps({"pass": True, "reason": "faithful"}))
    openai_server.enqueue(text=json.dumps({"pass": False, "reason": "too long"}))
    openai_server.enqueue(text=json.dumps({"winner": "A", "reason": "x"}))
    openai_server.enqueue(text=json.dumps({"winner": "A", "reason": "x"}))  # flips: a tie

    async def go() -> SuiteResult:
        judge = judge_from_config(
            {
                "judge_model": "judge-1",
                "judge_base_url": openai_server.base_url,
                "judge_cache": "off",
            },
            project=REPO,
        )
        try:
            suite = load_suite(suite_file(MIXED))
            return await run_suite(
                suite, case_ids=["judge-only"], judge=judge, overrides={"llm_cache": "off"}
            )
        finally:
            assert judge is not None
            await judge.aclose()

    result = asyncio.run(go())
    prompt = openai_server.history[0]["json"]["messages"][-1]["content"]
    assert "<request>\ncontent_type: a news article\ntext: The city council of" in prompt
    rows = result.results
    assert list(rows["status"]) == ["pass", "fail", "pass"]
    assert rows.iloc[0]["detail"] == "judge judge-1: pass — faithful"
    assert rows.iloc[2]["detail"].startswith(
        "judge judge-1: tie against case passes (expected win-or-tie) — verdict changed"
    )
    assert result.counts["fail"] == 1 and result.judge_model == "judge-1"
    assert result.judge_calls == 4 and len(openai_server.history) == 4


def test_a_judge_that_fails_is_an_error_for_that_assertion(
    suite_file: Callable[..., Path], openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    openai_server.enqueue(status=401)

    async def go() -> SuiteResult:
        config = {"judge_model": "judge-1", "judge_base_url": openai_server.base_url}
        judge = judge_from_config({**config, "judge_cache": "off"}, project=REPO)
        assert judge is not None
        try:
            return await run_suite(
                load_suite(suite_file(MIXED)),
                case_ids=["passes"],
                judge=judge,
                overrides={"llm_cache": "off"},
            )
        finally:
            await judge.aclose()

    result = asyncio.run(go())
    rubric = result.results.iloc[2]
    assert rubric["status"] == "error"
    assert rubric["detail"].startswith("judge judge-1 failed: ") and "401" in rubric["detail"]
    assert result.case_results[0].status == "error"


def test_a_suite_from_another_tree_runs_on_this_projects_code(tmp_path: Path) -> None:
    """The gate's flow: cases, thresholds and PDFs from the base ref's worktree, code from head."""
    base = tmp_path / "base"
    for rel in ("pyproject.toml", "prompts/variants.toml", "examples/the-man-without-a-body.pdf"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, base / rel)
    (base / "dataflows").mkdir()
    (base / "ci/evals/suites").mkdir(parents=True)
    text = (REPO / "ci/evals/suites/summarize.toml").read_text(encoding="utf-8")
    (base / "ci/evals/suites/summarize.toml").write_text(
        text.replace("threshold = 1.0", "threshold = 0.75"), encoding="utf-8"
    )
    suite = load_suite("summarize", root=base)
    assert suite.root == base and suite.threshold == 0.75
    result = asyncio.run(
        run_suite(suite, project=REPO, case_ids=["pdf-baseline"], overrides={"llm_cache": "off"})
    )
    assert result.passed and result.threshold == 0.75
    assert result.case_results[0].source == "examples/the-man-without-a-body.pdf"


OUTPUTS = f"""
    [suite]
    name = "outputs"
    threshold = 1.0

    [[cases]]
    id = "news"
    inputs = {{ text = "{NEWS}", content_type = "a news article" }}
    [[cases.assert]]
    type = "contains"
    values = ["14 million"]
    [[cases.assert]]
    type = "regex"
    pattern = '^\\[\\n  "'
    output = "chunk_summaries"
    [[cases.assert]]
    type = "json-schema"
    output = "chunk_summaries"
    schema = {{ type = "array", minItems = 1, items = {{ type = "string" }} }}
    [[cases.assert]]
    type = "json-schema"
    output = "document_tokens"
    schema = {{ type = "integer", minimum = 1 }}
    [[cases.assert]]
    type = "python"
    callable = "tests.promptdag.evals.callables:shows_context"
    output = "chunk_summaries"
"""


def test_assertions_check_the_output_they_name(suite_file: Callable[..., Path]) -> None:
    """The answer by default; a list output as its JSON text for text assertions and as the
    value itself for json-schema; python checks get the output's text and name."""
    result = run(suite_file(OUTPUTS))
    assert result.passed, result.to_markdown()
    details = list(result.results["detail"])
    assert details[2] == "chunk_summaries matches the schema"
    assert details[3] == "document_tokens matches the schema"
    assert details[4] == (
        "output=chunk_summaries starts='[' inputs=['content_type', 'text'] outputs=["
        "'chunk_summaries', 'document_pages', 'document_tokens', 'summary']"
    )
    assert "14 million" in (result.case_results[0].output or "")  # the answer's text
