"""`promptdag gate BASE --report-dir DIR` end to end, in throwaway git repositories holding a copy
of this project (offline model, no judge): one commit per kind of prompt change, each with its
exit code (0 pass, 1 gate failed, 2 could not run), its reasons and its report files; plus
`--all`, a ref or repository git cannot read, and `--cache replay-only` (cold: fails; warm:
identical reports). A gate run takes seconds: tests that read the same runs share a fixture."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.promptdag.gate.repo import (
    CHUNK_V4_WITH_QUERY,
    GateRun,
    ThrowawayRepo,
    final_summary_version,
    first_fixture,
    promptdag_exe,
    switch_variant,
)

# A test here runs promptdag in subprocesses, and its fixtures build and gate whole repositories
# (several gate runs each): the default per-test timeout is too short on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

IMMUTABLE = "released versions are immutable: restore it and add a new version (__vN+1) instead."
NOT_SELECTED = (
    "nothing changed upstream of summary, chunk_summaries, document_tokens, document_pages "
    "in variant"
)
CONCISE_CASES = {"pdf-concise-query", "news-query"}
DEFAULT_CASES = {"pdf-baseline", "news-article", "prompt-injection"}  # no variant: the default
ALL_CASES = CONCISE_CASES | DEFAULT_CASES | {"german-pack"}
TIMINGS = ("seconds", "llm_seconds")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayRepo:
    return ThrowawayRepo.create(tmp_path_factory.mktemp("gate-template"))


@pytest.fixture
def repo(template: ThrowawayRepo, tmp_path: Path) -> ThrowawayRepo:
    return template.clone(tmp_path)


def _clone(template: ThrowawayRepo, factory: pytest.TempPathFactory, name: str) -> ThrowawayRepo:
    return template.clone(factory.mktemp(name))


def _case_results(run: GateRun) -> dict[str, dict[str, Any]]:
    result = run.suite()["result"]
    return {} if result is None else {c["case"]: c for c in result["cases"]}


# --- 1. Add a version, switch a variant to it, re-lock: passes -----------------------------


def test_gate_passes_an_added_version_and_says_what_it_selected_and_why(
    repo: ThrowawayRepo,
) -> None:
    repo.append(
        "prompts/default.py",
        final_summary_version(
            "v3",
            "Write a very short summary of {content_type} in at most 3 sentences of plain prose.",
            doc="At most 3 sentences of plain prose.",
        ),
    )
    switch_variant(repo, "concise", "final_summary_prompt", "v3")
    repo.lock()
    repo.commit("final_summary_prompt@v3 for concise")

    run = repo.gate("HEAD~1")

    # concise has traffic and its prompt changed, offline: green only with a judge or a reviewer
    assert run.returncode == 3, run.stderr
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("gate needs a judge or a reviewer's approval against HEAD~1; reports: ")
    )
    report, md = run.report, run.markdown
    assert (report["passed"], report["reasons"], report["lock"]["ok"]) == (True, [], True)
    assert report["verdict"] == "needs approval" and report["approvals"] == [
        "needs a judge or a reviewer's approval: variant concise has traffic and its rendered "
        "prompts or model settings changed (final_summary_prompt (version v2 → v3)), and no "
        "judge model ran"
    ]
    assert [(v["key"], v["status"], v["variants"]) for v in report["review"]["added"]] == [
        ("default/final_summary_prompt@v3", "added", ["concise"])
    ]
    assert report["review"]["edited"] == report["review"]["removed"] == []
    assert md.startswith(
        "🟡 **Prompt gate: needs a judge or a reviewer's approval** against `HEAD~1`."
    )
    assert (
        "| `default/final_summary_prompt@v3` | added | `default/final_summary_prompt@v2` "
        "| `concise` |" in md
    )
    assert (
        "~Write a [-concise-]{+very short+} summary of an academic paper in at most [-5-]{+3+} "
        "sentences of plain prose[-, using only the key points below-].[- If there is a user "
        "query, answer it first.-]"
    ) in md  # a word-level diff
    why = "summary is downstream of final_summary_prompt (version v2 → v3)"
    suite = run.suite()
    assert suite["selected"] == dict.fromkeys(sorted(CONCISE_CASES), why)
    assert suite["skipped"] == {
        "german-pack": f"{NOT_SELECTED} german",
        **{case: f"{NOT_SELECTED} baseline" for case in sorted(DEFAULT_CASES)},
    }
    for case in CONCISE_CASES:
        assert f"- selected `{case}`: {why}" in md
    assert f"- not selected `pdf-baseline`: {NOT_SELECTED} baseline" in md
    assert set(_case_results(run)) == CONCISE_CASES  # only the selected cases ran
    assert suite["result"]["threshold"] == 1.0 and suite["result"]["passed"]
    assert run.llm_calls_made() > 0


# --- 2. Edit a released version: fails, says add a new version -----------------------------


def test_gate_fails_an_edited_released_version(repo: ThrowawayRepo) -> None:
    repo.replace(
        "prompts/default.py",
        "Extract the key points with reasoning.",
        "Extract the key points, with their evidence.",
    )
    repo.lock()  # a re-lock does not help: the base's lock defines the released versions
    repo.commit("edit chunk_summary_prompt@v2 in place")

    run = repo.gate("HEAD~1")

    released = f"default/chunk_summary_prompt@v2 (released): its source changed — {IMMUTABLE}"
    assert run.returncode == 1
    assert released in run.report["reasons"]
    assert run.report["lock"] == {"ok": False, "messages": [released], "acknowledged": []}
    assert f"gate: {released}" in run.stderr.splitlines()
    assert run.stderr.strip().splitlines()[-1].startswith("gate FAILED against HEAD~1; ")
    head, first = released.split(" — ")[0], run.markdown.splitlines()[2]  # Markdown-escaped
    assert run.markdown.startswith("❌ **Prompt gate failed** against `HEAD~1`.\n\n- ")
    assert first.startswith(f"- {head} — released versions are immutable: restore it and add")
    assert [v["key"] for v in run.report["review"]["edited"]] == ["default/chunk_summary_prompt@v2"]
    assert (
        "~Summarize this text from an academic paper. Extract the key points{+,+} with "
        "[-reasoning-]{+their evidence+}."
    ) in run.markdown
    why = "summary is downstream of chunk_summary_prompt (v2 renders differently)"
    assert run.suite()["selected"] == dict.fromkeys(sorted(DEFAULT_CASES), why)


# --- 3. A docstring-only change: passes, nothing to review or run ---------------------------


def test_gate_passes_a_docstring_only_change(repo: ThrowawayRepo) -> None:
    repo.replace(
        "prompts/default.py",
        '"""Short bullet points per chunk, so the final call gets less to read."""',
        '"""At most four one-sentence bullets per chunk: less for the final call to read."""',
    )
    repo.commit("docstring only")

    run = repo.gate("HEAD~1")

    assert run.returncode == 0, run.stderr
    assert run.report["reasons"] == []
    # a committed head is named by its commit; "working tree" only when it has uncommitted edits
    head = repo.git("rev-parse", "--short", "HEAD")
    assert f"No prompt differences between `HEAD~1` and `HEAD ({head})`" in run.markdown
    assert run.suite()["selected"] == {} and run.suite()["result"] is None
    assert set(run.suite()["skipped"]) == ALL_CASES
    assert run.report["llm_calls"] == {"calls": 0, "cached_calls": 0}


# --- 4. A helper a prompt renders: caught through the rendered text -------------------------


def test_gate_catches_a_helper_change_and_shows_the_rendered_diff(repo: ThrowawayRepo) -> None:
    repo.replace("prompts/_render.py", 'label: str = "User query"', 'label: str = "Question"')
    repo.lock()
    repo.commit("relabel the query line")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1
    finals = {
        "default/final_summary_prompt@v1",
        "default/final_summary_prompt@v2",
        "bullets/final_summary_prompt@v1",
    }
    assert {v["key"] for v in run.report["review"]["edited"]} == finals
    first = first_fixture(repo)
    for key in finals:
        reason = f"{key} (released): its rendered text on fixture '{first}' changed — {IMMUTABLE}"
        assert reason in run.report["reasons"]
        assert f"gate: {reason}" in run.stderr
    md = run.markdown
    assert "~[-User query-]{+Question+}: (none)" in md
    assert "~[-User query-]{+Question+}: Why did only the head arrive?" in md
    selected = run.suite()["selected"]
    assert set(selected) == CONCISE_CASES | DEFAULT_CASES
    assert all(
        "final_summary_prompt (v" in why and "renders differently" in why
        for why in selected.values()
    )
    assert run.suite()["skipped"] == {"german-pack": f"{NOT_SELECTED} german"}


# --- 5. Move the default variant ------------------------------------------------------------


@pytest.fixture(scope="module")
def moved_default(template: ThrowawayRepo, tmp_path_factory: pytest.TempPathFactory) -> GateRun:
    repo = _clone(template, tmp_path_factory, "moved-default")
    repo.replace("prompts/variants.toml", 'default = "baseline"', 'default = "concise"')
    repo.lock()
    repo.commit("default variant baseline → concise")
    return repo.gate("HEAD~1")


def test_gate_report_shows_a_moved_default_variant(moved_default: GateRun) -> None:
    review = moved_default.report["review"]
    assert review["default_variant"] == ["baseline", "concise"]
    assert [(s["before"], s["after"]) for s in review["default_switches"]] == [
        ("default/chunk_summary_prompt@v2", "default/chunk_summary_prompt@v3"),
        ("default/final_summary_prompt@v1", "default/final_summary_prompt@v2"),
    ]
    md = moved_default.markdown
    verdict = "0 prompt versions changed: 0 added, 0 edited, 0 removed; default variant"
    assert f"**{verdict} baseline → concise.**" in md
    assert "### Default variant\n\n`baseline` → `concise`." in md
    assert "~Write a {+concise +}summary [-collated from this collection -]of" in md
    assert moved_default.report["lock"]["ok"]


def test_gate_selects_the_cases_that_follow_a_moved_default_variant(
    moved_default: GateRun,
) -> None:
    assert set(moved_default.suite()["selected"]) >= DEFAULT_CASES
    assert moved_default.returncode == 1  # under concise their headed-sections checks fail


# --- 6. A new version that reads another input ----------------------------------------------


def test_gate_report_shows_the_inputs_a_new_version_requires(repo: ThrowawayRepo) -> None:
    """v4 reads user_query, which v3 does not (a declared input of the pipeline already)."""
    repo.append("prompts/default.py", CHUNK_V4_WITH_QUERY)
    repo.lock()
    repo.commit("chunk_summary_prompt@v4 reads the user query")

    run = repo.gate("HEAD~1")

    assert run.returncode == 0, run.stderr
    (added,) = run.report["review"]["added"]
    assert added["key"] == "default/chunk_summary_prompt@v4" and added["variants"] == []
    assert (added["text"]["inputs_added"], added["text"]["inputs_removed"]) == (["user_query"], [])
    md = run.markdown
    assert (
        "| `default/chunk_summary_prompt@v4` | added | `default/chunk_summary_prompt@v3` | none "
        "| +user_query |"
    ) in md
    assert "**Inputs**: added `user_query`; removed none." in md
    assert re.search(r"\{\+[^}]*with the user's question in mind", md), md
    assert run.suite()["selected"] == {}  # no variant selects v4 yet
    note = "default/chunk_summary_prompt@v4: not evaluated: no variant uses it"
    assert run.report["notes"] == [note] and f"- ⚠️ {note}" in md


# --- 7. Loosen the threshold in the same change: the base threshold applies -----------------


def test_gate_applies_the_base_threshold_when_the_change_lowers_it(repo: ThrowawayRepo) -> None:
    """concise → a new final prompt asking for 7 sentences: pdf-concise-query breaks its
    "at most 7 sentences" check, news-query still passes (pass rate 0.5), and the same commit
    lowers the suite threshold from 1.0 to 0.5."""
    repo.append(
        "prompts/default.py",
        final_summary_version(
            "v3",
            "Write a summary of {content_type} in 7 sentences of plain prose, using only the key "
            "points below. If there is a user query, answer it first.",
        ),
    )
    switch_variant(repo, "concise", "final_summary_prompt", "v3")
    repo.lock()
    repo.replace("ci/evals/suites/summarize.toml", "threshold = 1.0", "threshold = 0.5")
    repo.commit("longer concise summaries; threshold 0.5")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1
    reason = "eval suite summarize: pass rate 50% is below its threshold 100% (read from HEAD~1)"
    assert run.report["reasons"] == [reason]
    assert f"gate: {reason}" in run.stderr
    result = run.suite()["result"]
    assert (result["threshold"], result["pass_rate"]) == (1.0, 0.5)
    statuses = {case: c["status"] for case, c in _case_results(run).items()}
    assert statuses == {"pdf-concise-query": "fail", "news-query": "pass"}
    lowered = "summarize: threshold lowered: 1 → 0.5 (the gate uses the base value)"
    assert run.report["review"]["suite_changes"] == [lowered]
    assert f"### Eval suites changed\n\n- {lowered}" in run.markdown
    assert "Pass rate **50%** (threshold 100%, from `HEAD~1`): FAILED" in run.markdown
    # The head's own bar would have let it through: the same cases, replayed, at threshold 0.5.
    head = repo.promptdag(
        "eval", "--suite", "summarize", "--cache", "replay-only",
        "--case", "pdf-concise-query", "--case", "news-query",
    )  # fmt: skip
    assert head.returncode == 0, head.stderr


# --- Git cannot read the ref or the repository: exit 2, with a report --------------------------


def test_gate_names_a_ref_git_cannot_read(repo: ThrowawayRepo) -> None:
    run = repo.gate("no-such-ref")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[0] == (
        f"error: cannot read git ref 'no-such-ref': it is not a commit in {repo.path}. "
        "Fetch it first (e.g. git fetch origin main) or name another ref."
    )
    _assert_could_not_run_report(run, "cannot read git ref")


def _assert_could_not_run_report(run: GateRun, cause: str) -> None:
    """Exit 2 still writes the three reports, naming the cause (a PR comment never stays a
    stale "passed")."""
    assert run.markdown.startswith("⛔ **Prompt gate could not run** against `")
    assert cause in run.markdown and cause in run.html
    assert run.report["verdict"] == "could not run" and cause in run.report["reasons"][0]
    assert run.stderr.strip().splitlines()[-1].startswith("gate: could not run; reports: ")


def test_gate_outside_a_git_repository_cannot_run(template: ThrowawayRepo, tmp_path: Path) -> None:
    repo = template.clone(tmp_path, git=False)
    run = repo.gate("HEAD")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: git rev-parse --show-toplevel failed:")
    assert "not a git repository" in lines[0]
    _assert_could_not_run_report(run, "not a git repository")


def test_gate_without_git_on_path_cannot_run(repo: ThrowawayRepo) -> None:
    run = repo.gate("HEAD", env={"PATH": str(Path(promptdag_exe()).parent)})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[0] == (
        "error: git is not installed: the prompt gate needs git on PATH."
    )
    _assert_could_not_run_report(run, "git is not installed")


def test_gate_runs_without_pythonsafepath(repo: ThrowawayRepo) -> None:
    run = repo.gate("HEAD")
    assert run.returncode == 0, run.stderr


# --- --all and --cache replay-only ------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_runs(
    template: ThrowawayRepo, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, GateRun]:
    """On an unchanged tree, in order: `gate --all --cache replay-only` on a cold cache, a
    recording run (`gate --all --cache use`), then two more replay-only runs."""
    repo = _clone(template, tmp_path_factory, "cache")
    return {
        "cold": repo.gate("HEAD", "--all", "--cache", "replay-only"),
        "record": repo.gate("HEAD", "--all", "--cache", "use"),
        "replay": repo.gate("HEAD", "--all", "--cache", "replay-only"),
        "replay-again": repo.gate("HEAD", "--all", "--cache", "replay-only"),
    }


def test_replay_only_on_a_cold_cache_fails_naming_the_missing_request(
    cache_runs: dict[str, GateRun],
) -> None:
    cold = cache_runs["cold"]
    reason = "eval suite summarize: pass rate 0% is below its threshold 100% (read from HEAD)"
    assert cold.returncode == 1
    missing, below = cold.report["reasons"]
    assert below == reason and f"gate: {reason}" in cold.stderr
    assert (
        missing.startswith("eval suite summarize: case(s) ")
        and "could not run: CacheMissError" in missing
    )
    assert "is not in the response cache" in cold.stderr
    cases = _case_results(cold)
    assert set(cases) == ALL_CASES
    for case in cases.values():
        assert case["status"] == "error"
        assert case["run_error"].startswith("CacheMissError: llm_cache=replay-only and the ")
        assert "is not in the response cache" in case["run_error"]
        assert case["run_error"].endswith("Record it first with --config llm_cache=use.")
    assert cold.report["llm_calls"] == {"calls": 0, "cached_calls": 0}


def test_replay_only_cache_miss_is_named_in_the_markdown_report(
    cache_runs: dict[str, GateRun],
) -> None:
    assert "is not in the response cache" in cache_runs["cold"].markdown


def test_all_selects_every_case(cache_runs: dict[str, GateRun]) -> None:
    record = cache_runs["record"]
    assert record.returncode == 0, record.stderr
    assert record.suite()["selected"] == dict.fromkeys(sorted(ALL_CASES), "--all")
    assert record.suite()["skipped"] == {}
    assert set(_case_results(record)) == ALL_CASES
    assert all(f"- selected `{case}`: --all" in record.markdown for case in ALL_CASES)
    calls = record.report["llm_calls"]
    assert calls["calls"] > 0 and calls["cached_calls"] == 0


def _without(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _without_suite_file(report: dict[str, Any]) -> dict[str, Any]:
    """Drop suites[].result.file (kept for the older comparison; it is now stable)."""
    report = copy.deepcopy(report)
    for suite in report["suites"]:
        suite["result"].pop("file")
    return report


def _no_latency(text: str) -> str:
    return re.sub(r"\d+\.\d\d s\b", "#.## s", text)


def test_replay_only_after_recording_passes_and_reports_identically(
    cache_runs: dict[str, GateRun],
) -> None:
    record, replay, again = cache_runs["record"], cache_runs["replay"], cache_runs["replay-again"]
    assert (replay.returncode, again.returncode) == (0, 0), replay.stderr
    recorded = record.report["llm_calls"]["calls"]
    assert replay.report["llm_calls"] == {"calls": recorded, "cached_calls": recorded}
    assert replay.llm_calls_made() == 0
    # identical but for the latencies the eval table shows
    assert _no_latency(replay.markdown) == _no_latency(again.markdown)
    assert _no_latency(replay.html) == _no_latency(again.html)
    assert _without_suite_file(_without(replay.report, TIMINGS)) == _without_suite_file(
        _without(again.report, TIMINGS)
    )
    # The recording run computed the very same outputs.
    outputs = {c: r["output"] for c, r in _case_results(record).items()}
    assert {c: r["output"] for c, r in _case_results(replay).items()} == outputs


def test_replay_only_report_json_is_byte_identical_but_for_timings(
    cache_runs: dict[str, GateRun],
) -> None:
    replay, again = cache_runs["replay"], cache_runs["replay-again"]
    strip = [json.dumps(_without(r.report, TIMINGS), sort_keys=True) for r in (replay, again)]
    assert strip[0] == strip[1]
