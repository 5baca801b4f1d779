"""The judge model behind `llm-rubric` and `pairwise-judge` (and the gate's regression judge).

It calls a real model through `promptdag.llm.client.LLM`, so caching, retries, deadlines and typed
errors are the pipeline's own. The offline model is not an LLM and never judges: with no judge
model configured, `judge_from_config` returns None and judge assertions are skipped, visibly.

Config keys (`--config judge_model=...` or the eval command's flags): judge_backend (openai;
default: openai when judge_model is set, else none), judge_model, judge_base_url,
judge_temperature, judge_max_output_tokens, judge_timeout_s, judge_max_retries, judge_cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptdag.config import coerce, data_dir
from promptdag.contract import load_contract
from promptdag.errors import ConfigError
from promptdag.evals.judge_prompts import (
    pairwise_prompt,
    parse_verdict,
    passed_value,
    rubric_prompt,
    winner,
)
from promptdag.llm.cache import CACHE_MODES, ResponseCache
from promptdag.llm.client import LLM, LLMCall, LLMSettings, make_openai_client
from promptdag.project import Project, find_project
from promptdag.variants import load_variants

__all__ = [
    "JUDGE_DEFAULTS",
    "NO_JUDGE_REASON",
    "Judge",
    "PairwiseVerdict",
    "Verdict",
    "judge_from_config",
]

NO_JUDGE_REASON = "no judge model configured"
JUDGE_DEFAULTS: dict[str, Any] = {
    "judge_backend": "",
    "judge_model": "",
    "judge_base_url": "",
    "judge_temperature": 0.0,
    "judge_max_output_tokens": 400,
    "judge_timeout_s": 60.0,
    "judge_max_retries": 2,
    "judge_cache": "use",
}
Outcome = Literal["win", "loss", "tie", "error"]
_OUTPUT_FIRST: dict[str, Outcome] = {"A": "win", "B": "loss", "tie": "tie"}
_OUTPUT_SECOND: dict[str, Outcome] = {"A": "loss", "B": "win", "tie": "tie"}


@dataclass(frozen=True)
class Verdict:
    """A rubric verdict; `passed` is None when the judge's answer could not be parsed."""

    passed: bool | None
    reason: str
    raw: str


@dataclass(frozen=True)
class PairwiseVerdict:
    """The output against the reference, judged in both orders; a flip is a tie."""

    outcome: Outcome
    reason: str
    raw: tuple[str, str]


class Judge:
    """A real model that grades outputs: rubric pass/fail, and pairwise in both orders."""

    def __init__(self, llm: LLM):
        if llm.settings.backend == "offline":
            raise ConfigError(
                [
                    "the offline model is not an LLM and cannot judge: set judge_backend=openai "
                    "and judge_model=MODEL, or leave the judge unset to skip judge assertions."
                ]
            )
        self.llm = llm
        self.calls: list[LLMCall] = []

    @property
    def model(self) -> str:
        return self.llm.settings.model

    async def _ask(self, prompt: str, step: str) -> str:
        call = await self.llm.complete(prompt, step=step)
        self.calls.append(call)
        return call.text

    async def rubric(self, output: str, rubric: str, *, request: str = "") -> Verdict:
        """Pass/fail against `rubric` (`request`: the inputs the output answers); an
        unparseable answer gives passed=None with the raw text."""
        raw = await self._ask(rubric_prompt(output, rubric, request), "judge_rubric")
        verdict = parse_verdict(raw)
        passed = (
            None if verdict is None else passed_value(verdict.get("pass", verdict.get("verdict")))
        )
        reason = str((verdict or {}).get("reason", "")).strip()
        return Verdict(passed, reason, raw)

    async def compare(
        self, output: str, reference: str, *, criteria: str = "", request: str = ""
    ) -> PairwiseVerdict:
        """`output` against `reference`, asked with the output first and then second: a win
        (or loss) only when both orders agree; a verdict that changes with the order is a tie."""
        first = await self._ask(
            pairwise_prompt(output, reference, criteria, request), "judge_pairwise"
        )
        second = await self._ask(
            pairwise_prompt(reference, output, criteria, request), "judge_pairwise"
        )
        verdict = parse_verdict(first)
        a, b = winner(verdict), winner(parse_verdict(second))
        if a is None or b is None:
            return PairwiseVerdict("error", "the judge's answer is not a verdict", (first, second))
        as_first, as_second = _OUTPUT_FIRST[a], _OUTPUT_SECOND[b]
        if as_first == as_second:
            reason = str((verdict or {}).get("reason", "")).strip()
            return PairwiseVerdict(as_first, reason, (first, second))
        return PairwiseVerdict(
            "tie",
            f"verdict changed with the order ({as_first} first, {as_second} second)",
            (first, second),
        )

    async def aclose(self) -> None:
        await self.llm.aclose()
        if self.llm.cache is not None:
            self.llm.cache.close()


def _settings(config: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """JUDGE_DEFAULTS with the `judge_*` keys of `config` on top, typed like their llm_* twins."""
    out = dict(JUDGE_DEFAULTS)
    for key, value in config.items():
        if not key.startswith("judge_"):
            continue
        if key not in JUDGE_DEFAULTS:
            problems.append(
                f"unknown judge config key {key!r}. Known: {', '.join(JUDGE_DEFAULTS)}."
            )
            continue
        llm_key = key.replace("judge_", "llm_", 1)
        coerced, problem = coerce(llm_key, value)
        if problem:
            problems.append(problem.replace(llm_key, key, 1))
        else:
            out[key] = coerced
    return out


def judge_from_config(
    config: Mapping[str, Any], *, project: Project | str | Path | None = None
) -> Judge | None:
    """The judge the `judge_*` keys of `config` describe; None (NO_JUDGE_REASON) when no judge
    model is set or the backend is offline. Other keys are ignored; bad judge keys raise one
    ConfigError listing every problem."""
    problems: list[str] = []
    conf = _settings(config, problems)
    backend = conf["judge_backend"] or ("openai" if conf["judge_model"] else "")
    if backend not in ("", "offline", "openai"):
        problems.append(f"judge_backend={backend!r} is not a judge backend. Use: openai.")
    if backend == "openai" and not conf["judge_model"]:
        problems.append("judge_backend=openai needs judge_model=MODEL (e.g. gpt-4o-mini).")
    if conf["judge_cache"] not in CACHE_MODES:
        problems.append(
            f"judge_cache={conf['judge_cache']!r}: use one of {', '.join(CACHE_MODES)}."
        )
    if backend == "openai" and not os.environ.get("OPENAI_API_KEY"):
        problems.append("judge_backend=openai needs OPENAI_API_KEY in the environment.")
    if problems:
        raise ConfigError(problems)
    if backend in ("", "offline"):
        return None
    root = project.root if isinstance(project, Project) else find_project(project)
    settings = LLMSettings(
        backend="openai",
        model=conf["judge_model"],
        temperature=conf["judge_temperature"],
        max_output_tokens=conf["judge_max_output_tokens"],
        timeout_s=conf["judge_timeout_s"],
        max_retries=conf["judge_max_retries"],
        max_concurrency=2,
        base_url=conf["judge_base_url"] or os.environ.get("OPENAI_BASE_URL", ""),
    )
    client = make_openai_client(settings, os.environ.get("OPENAI_API_KEY", ""))
    cache = ResponseCache(data_dir(root) / "llm-cache.sqlite", conf["judge_cache"])
    return Judge(
        LLM(
            settings, client, cache=cache, prices=load_variants(load_contract(root).variants).prices
        )
    )
