"""`promptdag gate` on throwaway repositories, for what a reviewer sees and a bar a change cannot
lower: a two-commit branch gated against its merge base with main, with each selected case's
output before and after; a change that rewrites its suite's python check to let failures
through, and one that deletes the assertion it breaks (both judged by the base's bar, the edits
listed for a human). Each test runs the gate once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promptdag.gate.repo import ThrowawayRepo, final_summary_version, switch_variant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROSE = "Write a summary of {content_type} in plain prose, in at most 5 sentences."
HEADINGS_FAIL = "python: expected headings ['Core Argument', 'Evidence', 'Conclusions'] in order"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayRepo:
    return ThrowawayRepo.create(tmp_path_factory.mktemp("bar-template"))


@pytest.fixture
def repo(template: ThrowawayRepo, tmp_path: Path) -> ThrowawayRepo:
    return template.clone(tmp_path)


def _prose_for_baseline(repo: ThrowawayRepo) -> None:
    """The baseline variant's final prompt → a new plain-prose version: its headed sections go."""
    repo.append("prompts/default.py", final_summary_version("v3", PROSE))
    switch_variant(repo, "baseline", "final_summary_prompt", "v3")
    repo.lock()


def test_a_two_commit_branch_is_gated_against_its_merge_base_with_outputs_before_and_after(
    repo: ThrowawayRepo,
) -> None:
    main = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "--quiet", "-b", "pr")
    repo.append(
        "prompts/default.py",
        final_summary_version("v3", "Write a very short summary of {content_type}."),
    )
    repo.lock()
    repo.commit("1/2: final_summary_prompt@v3")
    switch_variant(repo, "concise", "final_summary_prompt", "v3")
    repo.lock()
    repo.commit("2/2: concise uses v3")

    run = repo.gate()  # no base: the merge base with main, not HEAD~1

    assert run.returncode == 3, run.stderr  # concise has traffic: a judge or a reviewer decides
    assert run.report["base"] == f"{main[:10]} (merge base with main)"
    review = run.report["review"]
    assert [v["key"] for v in review["added"]] == ["default/final_summary_prompt@v3"]
    assert [v["name"] for v in review["variants"]] == ["concise"]  # the first commit's too
    suite = run.suite()
    assert set(suite["selected"]) == {"pdf-concise-query", "news-query"}
    base_cases = {c["case"]: c for c in suite["base"]["cases"]}
    head_cases = {c["case"]: c for c in suite["result"]["cases"]}
    assert set(base_cases) == set(head_cases) == set(suite["selected"])
    news_before, news_after = base_cases["news-query"]["output"], head_cases["news-query"]["output"]
    assert news_before and news_after and news_before != news_after
    md = run.markdown
    assert "| news-query | pass → pass |" in md
    assert "<details><summary>Output of <code>news-query</code> before and after (" in md
    assert "Word diff (`[-removed-]`, `{+added+}`):" in md
    page = run.html
    assert (
        '<h1 class="verdict approval">Prompt gate: needs a judge or a reviewer&#x27;s approval '
        "against " in page
    )
    assert '<h3 id="output-news-query">Output of <code>news-query</code>:' in page
    assert '<div class="outputs"><div><b>base</b> (pass, ' in page


def test_a_change_that_rewrites_its_python_check_to_pass_is_judged_by_the_base_check(
    repo: ThrowawayRepo,
) -> None:
    _prose_for_baseline(repo)
    repo.replace(
        "ci/evals/python_checks.py",
        '    wanted: list[str] = list(context["options"].get("headings", []))\n',
        '    return True, "skipped: headings are optional now"\n'
        '    wanted: list[str] = list(context["options"].get("headings", []))\n',
    )
    repo.commit("prose for baseline; headings optional")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    pdf = {c["case"]: c for c in run.suite()["result"]["cases"]}["pdf-baseline"]
    assert pdf["status"] == "fail"
    failed = [f"{a['type']}: {a['detail']}" for a in pdf["assertions"] if a["status"] == "fail"]
    assert any(f.startswith(HEADINGS_FAIL) for f in failed), failed
    assert any("pass rate" in r and "read from HEAD~1" in r for r in run.report["reasons"])
    listed = (
        "evaluation code changed: ci/evals/python_checks.py (the gate ran the base's copy; "
        "a reviewer approves it, and it takes effect on the next pull request)"
    )
    assert listed in run.report["review"]["suite_changes"]
    assert "evaluation code changed: ci/evals/python_checks.py (the gate ran" in run.markdown


def test_a_change_that_deletes_the_assertion_it_breaks_still_meets_the_base_suite(
    repo: ThrowawayRepo,
) -> None:
    _prose_for_baseline(repo)
    suite = "ci/evals/suites/summarize.toml"
    check = (
        '[[cases.assert]]\ntype = "python"\ncallable = "ci.evals.python_checks:headed_sections"\n'
        'options = { headings = ["Core Argument", "Evidence", "Conclusions"] }\n\n'
    )
    case = 'id = "pdf-baseline"\nfiles = { pdf_bytes = "examples/the-man-without-a-body.pdf" }\n\n'
    repo.replace(suite, case + check, case)
    repo.commit("prose for baseline; drop the headings check")

    run = repo.gate("HEAD~1")

    assert run.returncode == 1, run.stderr
    pdf = {c["case"]: c for c in run.suite()["result"]["cases"]}["pdf-baseline"]
    assert any(
        a["type"] == "python" and a["detail"].startswith(HEADINGS_FAIL[len("python: ") :])
        for a in pdf["assertions"]
    )
    changes = run.report["review"]["suite_changes"]
    assert any(
        c.startswith("summarize: case pdf-baseline: assertion removed: ") and "headed_sections" in c
        for c in changes
    ), changes
