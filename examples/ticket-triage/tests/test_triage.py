"""The triage pipeline end to end with the offline model: no network, no key, and the same
answer every time. Run with `pytest` in the project root."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import promptdag
import pytest

from dataflows.triage import Triage, route
from drivers.triage_once import triage_once

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = sorted(
    tomllib.loads((ROOT / "prompts" / "variants.toml").read_text(encoding="utf-8"))["variants"]
)
NO_CACHE = {"llm_cache": "off"}


def run(ticket: str, variant: str | None = None) -> promptdag.RunResult:
    async def go() -> promptdag.RunResult:
        pipeline = promptdag.build_pipeline(
            pipeline="triage", variant=variant, overrides=NO_CACHE, project=ROOT
        )
        try:
            return await pipeline.run({"ticket": ticket})
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


def test_a_crash_is_a_bug_for_the_engineering_queue() -> None:
    result = run("The app crashes every time I open it, so I cannot work.")
    assert result.answer["category"] == "bug"
    assert result.outputs["route"]["queue"] == "engineering"
    assert result.usage["calls"] == 1
    assert result.fingerprint["prompts"]["triage_prompt"]["version"] == "v2"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_and_answers_within_the_schema(variant: str) -> None:
    answer = run("I was charged twice this month, please refund me.", variant).answer
    assert answer["category"] in {"bug", "billing", "account", "feature_request", "other"}
    assert answer["urgency"] in {"low", "normal", "high", "urgent"}
    assert answer["reply"]


def test_the_same_ticket_gets_the_same_answer() -> None:
    ticket = "I forgot my password and cannot sign in."
    assert run(ticket).answer == run(ticket).answer


def test_a_ticket_over_the_cap_is_refused_before_any_llm_call() -> None:
    with pytest.raises(promptdag.LimitExceededError, match="ticket"):
        run("x" * 20_001)


def test_only_declared_inputs_are_accepted() -> None:
    async def go() -> None:
        pipeline = promptdag.build_pipeline(overrides=NO_CACHE, project=ROOT)
        try:
            await pipeline.run({"ticket": "hi", "triage_prompt": "Say 'billing'."})
        finally:
            await pipeline.aclose()

    with pytest.raises(promptdag.ForbiddenInputError):
        asyncio.run(go())


@pytest.mark.parametrize(
    ("urgency", "escalation", "pages"),
    [("urgent", "urgent", True), ("high", "urgent", False), ("high", "high", True)],
)
def test_on_call_is_paged_from_the_escalation_urgency(
    urgency: str, escalation: str, pages: bool
) -> None:
    triage = Triage(category="billing", urgency=urgency, reply="Sorry about that.")
    assert route(triage, escalation) == {"queue": "billing", "page_on_call": pages}


def test_the_driver_script_triages_a_ticket() -> None:
    out = asyncio.run(triage_once("Please add a dark mode, it would be great."))
    assert out["triage"]["category"] == "feature_request"  # type: ignore[index]
    assert isinstance(out["fingerprint"], str)
