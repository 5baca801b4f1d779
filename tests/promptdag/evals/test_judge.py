"""The judge against the fake OpenAI-compatible server: scripted verdicts, both orders of a
pairwise comparison, unparseable answers, and when no judge may be built at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from promptdag.errors import ConfigError
from promptdag.evals import Judge, PairwiseVerdict, Verdict, judge_from_config
from promptdag.evals.judge_prompts import parse_verdict
from promptdag.factory import build_pipeline
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.evals.conftest import REPO

T = TypeVar("T")
CANDIDATE = "The bridge costs 14 million dollars."
REFERENCE = "A 14 million dollar bridge opens in 2027."


def verdict(**fields: Any) -> str:
    return json.dumps(fields)


@pytest.fixture
def with_judge(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Judge], Awaitable[T]]], T]:
    """Run `use(judge)` with a judge on the fake server, then close it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = {
        "judge_model": "judge-1",
        "judge_base_url": openai_server.base_url,
        "judge_cache": "off",
        "judge_max_retries": "0",
    }

    def run(use: Callable[[Judge], Awaitable[T]]) -> T:
        async def go() -> T:
            judge = judge_from_config(config, project=REPO)
            assert judge is not None
            try:
                return await use(judge)
            finally:
                await judge.aclose()

        return asyncio.run(go())

    return run


def compare(with_judge: Callable[..., Any]) -> PairwiseVerdict:
    return with_judge(lambda j: j.compare(CANDIDATE, REFERENCE, criteria="Cost first."))  # type: ignore[no-any-return]


def test_consistent_verdicts_in_both_orders_are_a_win(
    openai_server: OpenAIServer, with_judge: Callable[..., Any]
) -> None:
    openai_server.enqueue(text=verdict(winner="A", reason="names the cost"))
    openai_server.enqueue(text=verdict(winner="B", reason="names the cost"))
    result = compare(with_judge)
    assert (result.outcome, result.reason) == ("win", "names the cost")
    first, second = (r["json"] for r in openai_server.history)
    assert first["model"] == "judge-1" and first["temperature"] == 0.0
    prompt_1, prompt_2 = (r["messages"][-1]["content"] for r in (first, second))
    assert f"<response_a>\n{CANDIDATE}\n</response_a>" in prompt_1
    assert f"<response_b>\n{CANDIDATE}\n</response_b>" in prompt_2
    assert "Criteria: Cost first." in prompt_1 and '"winner"' in prompt_1


def test_consistent_verdicts_against_the_output_are_a_loss(
    openai_server: OpenAIServer, with_judge: Callable[..., Any]
) -> None:
    openai_server.enqueue(text=verdict(winner="B", reason="reference is fuller"))
    openai_server.enqueue(text=verdict(winner="A", reason="reference is fuller"))
    assert compare(with_judge).outcome == "loss"


def test_a_verdict_that_flips_with_the_order_is_a_tie(
    openai_server: OpenAIServer, with_judge: Callable[..., Any]
) -> None:
    openai_server.enqueue(text=verdict(winner="A", reason="first is better"))
    openai_server.enqueue(text=verdict(winner="A", reason="first is better"))
    result = compare(with_judge)
    assert result.outcome == "tie"
    assert result.reason == "verdict changed with the order (win first, loss second)"


def test_two_ties_are_a_tie(openai_server: OpenAIServer, with_judge: Callable[..., Any]) -> None:
    openai_server.enqueue(text=verdict(winner="tie", reason="equal"), times=2)
    assert compare(with_judge).outcome == "tie"


def test_garbage_is_an_error_carrying_the_raw_answers(
    openai_server: OpenAIServer, with_judge: Callable[..., Any]
) -> None:
    openai_server.enqueue(text="I think the first one, probably.")
    openai_server.enqueue(text=verdict(winner="B"))
    result = compare(with_judge)
    assert result.outcome == "error"
    assert result.raw[0] == "I think the first one, probably."


def test_rubric_verdicts_pass_fail_and_garbage(
    openai_server: OpenAIServer, with_judge: Callable[..., Any]
) -> None:
    openai_server.enqueue(text='Sure!\n```json\n{"pass": true, "reason": "faithful"}\n```')
    openai_server.enqueue(text=verdict(**{"pass": False, "reason": "invents a date"}))
    openai_server.enqueue(text="PASS")

    async def use(judge: Judge) -> list[Verdict]:
        return [
            await judge.rubric(CANDIDATE, "Is faithful.", request="question: Cost?")
            for _ in range(3)
        ]

    ok, bad, garbage = with_judge(use)
    assert (ok.passed, ok.reason) == (True, "faithful")
    assert (bad.passed, bad.reason) == (False, "invents a date")
    assert (garbage.passed, garbage.raw) == (None, "PASS")
    prompt = openai_server.history[0]["json"]["messages"][-1]["content"]
    assert "Rubric: Is faithful." in prompt and f"<output>\n{CANDIDATE}\n</output>" in prompt
    assert "<request>\nquestion: Cost?\n</request>" in prompt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"winner": "A"}', {"winner": "A"}),
        ('Verdict: {"winner": "tie", "reason": "same"} done', {"winner": "tie", "reason": "same"}),
        ('```\n{"pass": false}\n```', {"pass": False}),
        ('{not json} then {"pass": true}', {"pass": True}),
        ("no verdict here", None),
        ("[1, 2]", None),
    ],
)
def test_parse_verdict_finds_the_first_json_object(text: str, expected: Any) -> None:
    assert parse_verdict(text) == expected


def test_no_judge_without_a_model_or_with_the_offline_backend() -> None:
    assert judge_from_config({}) is None
    assert judge_from_config({"llm_model": "x", "judge_cache": "use"}) is None
    assert judge_from_config({"judge_backend": "offline", "judge_model": "x"}) is None


def test_bad_judge_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        judge_from_config(
            {
                "judge_model": "gpt-4o-mini",
                "judge_colour": "red",
                "judge_cache": "sometimes",
                "judge_max_retries": "many",
            }
        )
    text = str(caught.value)
    assert "unknown judge config key 'judge_colour'" in text
    assert "judge_cache='sometimes'" in text
    assert "judge_max_retries='many' is not a int" in text
    assert "needs OPENAI_API_KEY" in text
    with pytest.raises(ConfigError, match="judge_backend=openai needs judge_model"):
        judge_from_config({"judge_backend": "openai"})
    with pytest.raises(ConfigError, match="judge_backend='claude' is not a judge backend"):
        judge_from_config({"judge_backend": "claude", "judge_model": "m"})


def test_the_offline_model_can_never_be_a_judge() -> None:
    async def go() -> None:
        pipeline = build_pipeline(overrides={"llm_cache": "off"})
        try:
            with pytest.raises(ConfigError, match="offline model is not an LLM"):
                Judge(pipeline.llm)
        finally:
            await pipeline.aclose()

    asyncio.run(go())
