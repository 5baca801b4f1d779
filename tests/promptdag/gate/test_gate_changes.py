"""`promptdag gate` selects by everything that changes what users get, not only prompt versions:
a dataflow-only change (Hamilton's node version), a config default, a variant's model setting,
and a new prompt version in a variant without traffic (run on the suite's cases although no
case names that variant). Each on a throwaway repository, one gate run each, asserting the
verdict and the reason text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promptdag.gate.repo import (
    ThrowawayRepo,
    final_summary_version,
    remove_version,
    switch_variant,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEFAULT_CASES = {"pdf-baseline", "news-article", "prompt-injection"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayRepo:
    return ThrowawayRepo.create(tmp_path_factory.mktemp("changes-template"))


@pytest.fixture
def repo(template: ThrowawayRepo, tmp_path: Path) -> ThrowawayRepo:
    return template.clone(tmp_path)


def test_a_dataflow_only_change_selects_every_case_of_the_node(repo: ThrowawayRepo) -> None:
    repo.replace(
        "dataflows/summarize.py",
        "    text = final_summary_response.text.strip()\n",
        '    text = final_summary_response.text.strip().replace("\\r\\n", "\\n")\n',
    )
    repo.commit("summary: normalise line ends")

    run = repo.gate("HEAD~1")

    assert run.returncode == 0, run.stderr
    selected = run.suite()["selected"]
    assert set(selected) >= DEFAULT_CASES
    assert selected["pdf-baseline"] == "summary itself changed (its code changed)"
    assert "- selected `pdf-baseline`: summary itself changed (its code changed)" in run.markdown


def test_a_config_default_change_selects_the_cases_and_fails_the_usage_budget(
    repo: ThrowawayRepo,
) -> None:
    repo.replace(
        "pyproject.toml",
        "chunk_tokens = { default = 800,",
        "chunk_tokens = { default = 200,",
    )
    repo.commit("smaller chunks")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    selected = run.suite()["selected"]
    why = "summary is downstream of chunk_tokens (config chunk_tokens 800 → 200)"
    assert selected["pdf-baseline"] == why
    rises = [r for r in run.report["reasons"] if "over the +25% allowed" in r]
    assert any(r.startswith("eval suite summarize: case pdf-baseline: LLM calls ") for r in rises)
    assert "Usage against the base (allowed growth +25%):" in run.markdown


def test_a_variant_model_setting_change_selects_that_variants_cases(repo: ThrowawayRepo) -> None:
    repo.replace(
        "prompts/variants.toml",
        'chunk_summary_prompt_version = "v3", final_summary_prompt_version = "v2" }',
        'chunk_summary_prompt_version = "v3", final_summary_prompt_version = "v2", '
        "llm_temperature = 0.3 }",
    )
    repo.lock()
    repo.commit("concise: temperature 0.3")

    run = repo.gate("HEAD~1", "--require-judge")

    assert run.returncode == 1, run.stderr
    assert run.report["reasons"] == [
        "needs a judge or a reviewer's approval: variant concise has traffic and its rendered "
        "prompts or model settings changed (llm (config llm_temperature 0.0 → 0.3)), and no "
        "judge model ran (--require-judge)"
    ]
    why = "summary is downstream of llm (config llm_temperature 0.0 → 0.3)"
    suite = run.suite()
    assert suite["selected"] == {"news-query": why, "pdf-concise-query": why}
    assert "pdf-baseline" in suite["skipped"]


def test_a_new_version_in_a_variant_without_traffic_runs_on_the_suites_cases(
    repo: ThrowawayRepo,
) -> None:
    repo.append(
        "prompts/default.py",
        final_summary_version(
            "v3",
            "Write a summary collated from the key points extracted from {content_type}. "
            "The summary should be structured in bulleted lists following the headings "
            "Core Argument, Evidence, and Conclusions.",
        ),
    )
    switch_variant(repo, "article-v1", "final_summary_prompt", "v3")
    repo.lock()
    repo.commit("article-v1 (weight 0) tries final_summary_prompt@v3")

    run = repo.gate("HEAD~1")

    assert run.suite()["selected"] == {}  # no case names article-v1
    extra = run.suite("summarize on variant article-v1")
    assert set(extra["selected"]) == DEFAULT_CASES
    assert extra["selected"]["pdf-baseline"] == (
        "variant article-v1 changed and no case runs on it: run on it; summary is downstream "
        "of final_summary_prompt (version v1 → v3)"
    )
    cases = {c["case"]: c for c in extra["result"]["cases"]}
    assert set(cases) == DEFAULT_CASES and all(c["variant"] == "article-v1" for c in cases.values())
    assert {c["case"] for c in extra["base"]["cases"]} == DEFAULT_CASES
    assert run.llm_calls_made() > 0
    assert "#### Eval suite `summarize on variant article-v1`" in run.markdown
    # the bar on a variant no case was written for: the base's results on that same variant
    before = {c["case"]: c["status"] for c in extra["base"]["cases"]}
    regressed = sorted(c for c, case in cases.items() if before[c] == "pass" != case["status"])
    assert run.returncode == (1 if regressed else 0), run.stderr
    assert "with this variant passes at head" in run.markdown


def test_a_variant_that_no_longer_builds_fails_the_gate_naming_it(repo: ThrowawayRepo) -> None:
    repo.replace(
        "prompts/variants.toml",
        'chunk_summary_prompt_version = "v3", final_summary_prompt_version = "v2" }',
        'chunk_summary_prompt_version = "v9", final_summary_prompt_version = "v2" }',
    )
    repo.commit("concise: a version that does not exist")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    broken = [
        r for r in run.report["reasons"] if r.startswith("variant concise no longer builds: ")
    ]
    assert len(broken) == 1 and "v9" in broken[0], run.report["reasons"]
    assert broken[0].endswith(
        "— fix its config in the variants file, or remove the variant (its eval cases cannot run)."
    )
    assert f"- {broken[0][:40]}" in run.markdown
    assert run.report["lock"]["ok"] is False


def test_removing_a_released_version_a_base_variant_selects_fails_the_gate(
    repo: ThrowawayRepo,
) -> None:
    remove_version(repo, "prompts/default.py", "final_summary_prompt", "v2")
    switch_variant(repo, "concise", "final_summary_prompt", "v1")
    repo.lock()
    repo.commit("concise: final v1, and final v2 removed")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    removed = (
        "default/final_summary_prompt@v2 (released) was removed, but variant(s) concise select "
        "it on the base — restore it: requests and traces of those variants still name it; move "
        "the variants off it first, and remove it in a later change."
    )
    assert removed in run.report["reasons"]
    assert f"- {removed}" in run.markdown


NOTE_CASE = """
[[cases]]
id = "file-note"
files = { text = "ci/evals/fixtures/note.txt" }

[[cases.assert]]
type = "length"
unit = "words"
max = 400

[[cases.assert]]
type = "contains"
values = ["bridge"]

[[cases.assert]]
type = "not-contains"
values = ["<document>"]
"""
NOTE = (
    "The river rose two metres overnight. The mayor closed the old bridge at six. "
    "Schools stay open; buses take the northern road until the water falls."
)


def test_a_changed_input_file_and_an_edited_case_select_those_cases_saying_why(
    repo: ThrowawayRepo,
) -> None:
    (repo.path / "ci/evals/fixtures").mkdir()
    (repo.path / "ci/evals/fixtures/note.txt").write_text(NOTE, encoding="utf-8")
    repo.append("ci/evals/suites/summarize.toml", NOTE_CASE)
    repo.commit("a case reading a text file")
    repo.replace("ci/evals/fixtures/note.txt", "six", "seven")
    repo.replace("ci/evals/suites/summarize.toml", "max = 450", "max = 500")
    repo.commit("the note's time; pdf-baseline allows more words")

    run = repo.gate("HEAD~1")

    assert run.returncode == 0, run.stderr
    suite = run.suite()
    assert suite["selected"] == {
        "file-note": "its input file ci/evals/fixtures/note.txt changed",
        "pdf-baseline": "its definition in the suite changed (asserts); the gate runs the "
        "base's definition until this is merged",
    }
    assert "news-article" in suite["skipped"]
    assert "- selected `file-note`: its input file ci/evals/fixtures/note.txt changed" in (
        run.markdown
    )
    assert {c["case"] for c in suite["result"]["cases"]} == {"file-note", "pdf-baseline"}
    assert {c["case"] for c in suite["base"]["cases"]} == {"file-note", "pdf-baseline"}


def test_a_model_switch_shows_as_cost_priced_at_the_configured_model(repo: ThrowawayRepo) -> None:
    """Both sides run on the offline model; the cost is the configured model's price."""
    repo.replace(
        "prompts/variants.toml",
        'chunk_summary_prompt_version = "v3", final_summary_prompt_version = "v2" }',
        'chunk_summary_prompt_version = "v3", final_summary_prompt_version = "v2", '
        'llm_model = "gpt-4o" }',
    )
    repo.lock()
    repo.commit("concise: gpt-4o")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    suite = run.suite()
    assert set(suite["selected"]) == {"news-query", "pdf-concise-query"}
    head = {c["case"]: c["usage"] for c in suite["result"]["cases"]}
    base = {c["case"]: c["usage"] for c in suite["base"]["cases"]}
    for case, usage in head.items():
        assert usage["cost_model"] == "gpt-4o" and usage["run_cost_usd"] == 0.0
        expected = (usage["input_tokens"] * 2.5 + usage["output_tokens"] * 10.0) / 1e6
        assert usage["cost_usd"] == pytest.approx(expected, abs=1e-6) and expected > 0
        assert (base[case]["cost_model"], base[case]["cost_usd"]) == ("offline-extractive", 0.0)
        cost = [
            r
            for r in run.report["reasons"]
            if r.startswith(f"eval suite summarize: case {case}: cost $0 → $")
        ]
        assert len(cost) == 1 and cost[0].endswith("(from none), over the +25% allowed"), cost
    assert "(offline-extractive) → $" in run.markdown and " (gpt-4o) |" in run.markdown


def test_a_recorded_refactor_of_a_released_version_is_shown_not_blocked(
    repo: ThrowawayRepo,
) -> None:
    key = "default/chunk_summary_prompt@v2"
    repo.replace(
        "prompts/default.py",
        '        "Extract the key points with',
        '        + "Extract the key points with',
    )
    proc = repo.promptdag(
        "prompts", "lock", "--accept-refactor", key, "--reason", "an explicit + between strings"
    )
    assert proc.returncode == 0, proc.stderr
    repo.commit("chunk_summary_prompt@v2: an explicit +, the same text")

    run = repo.gate("HEAD~1")

    accepted = (
        f"{key} (released): its source changed and every fixture renders identically: accepted "
        "as a refactor recorded in prompts.lock (an explicit + between strings)"
    )
    assert run.report["reasons"] == [], run.report["reasons"]
    assert run.report["lock"] == {"ok": True, "messages": [], "acknowledged": [accepted]}
    assert accepted in run.report["notes"]
    assert f"- ⚠️ {key} (released): its source changed" in run.markdown
    why = (
        "summary is downstream of chunk_summary_prompt (v2's source changed; it renders "
        "identically on every fixture)"
    )
    assert run.suite()["selected"]["pdf-baseline"] == why
    assert run.returncode == 3, run.stderr  # baseline has traffic: a judge or a reviewer approves
