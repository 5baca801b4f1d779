"""`promptdag prompts lock [--check] [--base REF]` in throwaway git repositories holding a copy of
this project: the lock is sorted, stable JSON; --check fails (exit 1) on a stale lock, naming each
entry and the command to run, and on a released version (one in the base ref's lock) whose source
or rendered text changed, saying to add a new version; a helper a prompt renders is caught through
the rendered-text hash although the prompt's source hash stays the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.promptdag.gate.repo import (
    CHUNK_V4_WITH_AUDIENCE,
    ThrowawayRepo,
    declare_input,
    final_summary_version,
    first_fixture,
    remove_version,
    set_fixture_input,
    switch_variant,
)

# A test here runs promptdag in subprocesses, and its fixtures build and gate whole repositories
# (several gate runs each): the default per-test timeout is too short on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RELOCK = "run `promptdag prompts lock` and commit prompts.lock."
IMMUTABLE = "released versions are immutable: restore it and add a new version (__vN+1) instead."
V2_TEXT = "Extract the key points with reasoning."
FINAL_V3 = final_summary_version(
    "v3", "Write a very short summary of {content_type} in at most 3 sentences of plain prose."
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayRepo:
    return ThrowawayRepo.create(tmp_path_factory.mktemp("lock-template"))


@pytest.fixture
def repo(template: ThrowawayRepo, tmp_path: Path) -> ThrowawayRepo:
    return template.clone(tmp_path)


def check(repo: ThrowawayRepo, *args: str) -> tuple[int, list[str]]:
    """`prompts lock --check ARGS`: the exit code and the stderr lines."""
    proc = repo.promptdag("prompts", "lock", "--check", *args)
    return proc.returncode, proc.stderr.strip().splitlines()


def lock_of(repo: ThrowawayRepo) -> dict[str, dict]:
    data: dict[str, dict] = json.loads(repo.read("prompts.lock"))
    return data


def test_lock_is_sorted_stable_json_byte_identical_on_rerun(repo: ThrowawayRepo) -> None:
    committed = (repo.path / "prompts.lock").read_bytes()
    (repo.path / "prompts.lock").unlink()
    proc = repo.promptdag("prompts", "lock")
    data = lock_of(repo)
    assert proc.returncode == 0
    assert proc.stderr.strip() == (
        f"wrote prompts.lock: {len(data['prompts'])} prompt versions, "
        f"{len(data['variants'])} variants"
    )
    first = (repo.path / "prompts.lock").read_bytes()
    repo.lock()
    assert (repo.path / "prompts.lock").read_bytes() == first == committed
    text = first.decode("utf-8")
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert list(data) == ["default_variant", "fixtures", "lock_version", "prompts", "variants"]
    assert all(re.fullmatch(r"\w+/\w+@v\d+", key) for key in data["prompts"])
    assert data["fixtures"] == sorted(data["fixtures"])
    assert repo.git("status", "--porcelain") == ""


def test_check_passes_on_a_fresh_lock(repo: ThrowawayRepo) -> None:
    code, lines = check(repo)
    n = len(lock_of(repo)["prompts"])
    assert (code, lines) == (0, [f"prompts.lock is up to date ({n} prompt versions)"])


def test_check_names_a_version_added_without_relocking_and_the_command(
    repo: ThrowawayRepo,
) -> None:
    repo.append("prompts/default.py", FINAL_V3)
    repo.commit("final_summary_prompt@v3")
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        f"error: default/final_summary_prompt@v3: defined but not in prompts.lock — {RELOCK}"
    ]


def test_check_passes_once_the_added_version_is_locked(repo: ThrowawayRepo) -> None:
    repo.append("prompts/default.py", FINAL_V3)
    repo.lock()
    repo.commit("final_summary_prompt@v3, locked")
    assert "default/final_summary_prompt@v3" in lock_of(repo)["prompts"]
    code, lines = check(repo, "--base", "HEAD~1")  # not released there: nothing to protect
    assert code == 0, lines


def test_check_rejects_an_edited_released_version_even_after_relocking(
    repo: ThrowawayRepo,
) -> None:
    repo.replace("prompts/default.py", V2_TEXT, "Extract the key points, with their evidence.")
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        f"error: default/chunk_summary_prompt@v2: its source changed — {RELOCK}",
        f"error: default/chunk_summary_prompt@v2 (released): its source changed — {IMMUTABLE}",
    ]
    repo.lock()  # re-locking does not launder it: HEAD's lock still holds the released entry
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        f"error: default/chunk_summary_prompt@v2 (released): its source changed — {IMMUTABLE}"
    ]
    repo.commit("edit v2 in place and re-lock")
    assert check(repo, "--base", "HEAD~1")[0] == 1  # what CI runs: --base the target branch
    assert check(repo)[0] == 0  # once committed, the default --base HEAD has nothing to compare


def test_check_passes_a_docstring_and_comment_only_change(repo: ThrowawayRepo) -> None:
    repo.replace(
        "prompts/default.py",
        '"""Short bullet points per chunk, so the final call gets less to read."""',
        '"""At most four one-sentence bullets per chunk: less for the final call to read."""\n'
        "    # A comment Hamilton's code hash ignores too.",
    )
    repo.commit("docstring only")
    before = (repo.path / "prompts.lock").read_bytes()
    code, lines = check(repo, "--base", "HEAD~1")
    assert code == 0, lines
    repo.lock()
    assert (repo.path / "prompts.lock").read_bytes() == before  # no re-lock needed


def test_check_catches_a_helper_change_through_the_rendered_text(repo: ThrowawayRepo) -> None:
    """`query_line` lives in prompts/_render.py: the final prompts' source hash cannot see it."""
    first = first_fixture(repo)
    old = lock_of(repo)["prompts"]
    repo.replace("prompts/_render.py", 'label: str = "User query"', 'label: str = "Question"')
    code, lines = check(repo)
    assert code == 1
    named = {line.split()[1].rstrip(":") for line in lines}
    assert {
        "default/final_summary_prompt@v1",
        "default/final_summary_prompt@v2",
        "bullets/final_summary_prompt@v1",
    } <= named
    assert not any("chunk_summary_prompt" in k or k.startswith("german/") for k in named)
    for key in named:
        assert f"error: {key}: its rendered text on fixture '{first}' changed — {RELOCK}" in lines
        assert (
            f"error: {key} (released): its rendered text on fixture '{first}' changed — "
            f"{IMMUTABLE}" in lines
        )
    assert not any("source changed" in line for line in lines)
    repo.lock()
    new = lock_of(repo)["prompts"]
    assert {k for k in new if new[k]["rendered"] != old[k]["rendered"]} == named
    assert all(new[k]["source_sha256"] == old[k]["source_sha256"] for k in new)


def test_check_fails_when_the_default_variant_moves(repo: ThrowawayRepo) -> None:
    repo.replace("prompts/variants.toml", 'default = "baseline"', 'default = "concise"')
    code, lines = check(repo)
    assert (code, lines) == (
        1,
        [f"error: the default variant or the fixture sets changed — {RELOCK}"],
    )
    repo.lock()
    assert lock_of(repo)["default_variant"] == "concise"


def test_check_fails_when_the_default_variant_selects_another_version(
    repo: ThrowawayRepo,
) -> None:
    switch_variant(repo, "baseline", "final_summary_prompt", "v2")
    code, lines = check(repo)
    assert code == 1
    assert lines == [f"error: variant baseline: its resolved prompt versions changed — {RELOCK}"]
    repo.lock()
    assert lock_of(repo)["variants"]["baseline"]["prompts"]["final_summary_prompt"] == "v2"


AUDIENCE = '{ kind = "string", max_chars = 200, default = "" }'


def test_check_names_a_new_version_with_a_required_input(repo: ThrowawayRepo) -> None:
    repo.append("prompts/default.py", CHUNK_V4_WITH_AUDIENCE)
    set_fixture_input(repo, "audience", "policy makers")
    declare_input(repo, "summarize", "audience", AUDIENCE)
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        f"error: default/chunk_summary_prompt@v4: defined but not in prompts.lock — {RELOCK}"
    ]
    repo.lock()
    assert lock_of(repo)["prompts"]["default/chunk_summary_prompt@v4"]["inputs"] == [
        "audience",
        "content_type",
    ]


def test_check_names_a_required_input_the_fixtures_do_not_provide(repo: ThrowawayRepo) -> None:
    repo.append("prompts/default.py", CHUNK_V4_WITH_AUDIENCE)
    declare_input(repo, "summarize", "audience", AUDIENCE)
    proc = repo.promptdag("prompts", "lock", "--check")
    assert proc.returncode in (1, 2)
    assert "audience" in proc.stderr and "fixtures" in proc.stderr
    assert "internal error" not in proc.stderr


def test_check_names_a_new_request_input_the_contract_does_not_declare(
    repo: ThrowawayRepo,
) -> None:
    repo.append("prompts/default.py", CHUNK_V4_WITH_AUDIENCE)
    set_fixture_input(repo, "audience", "policy makers")
    proc = repo.promptdag("prompts", "lock", "--check")
    assert proc.returncode == 2
    assert (
        "[tool.promptdag.pipelines.summarize] does not declare input 'audience', which its "
        "outputs need: add [tool.promptdag.pipelines.summarize.inputs.audience]."
    ) in proc.stderr


def test_check_against_a_base_without_a_lock_has_no_released_versions(
    repo: ThrowawayRepo,
) -> None:
    (repo.path / "prompts.lock").unlink()
    repo.commit("before the lockfile existed")
    repo.lock()
    repo.commit("add the lockfile")
    repo.replace("prompts/default.py", V2_TEXT, "Extract the key points, with their evidence.")
    repo.lock()
    code, lines = check(repo, "--base", "HEAD~1")
    assert code == 0, lines
    code, lines = check(repo, "--base", "HEAD")
    assert code == 1
    assert lines == [
        f"error: default/chunk_summary_prompt@v2 (released): its source changed — {IMMUTABLE}"
    ]


def test_check_with_an_unreadable_base_ref_cannot_run(repo: ThrowawayRepo) -> None:
    code, lines = check(repo, "--base", "no-such-ref")
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: git show no-such-ref:prompts.lock failed:")


def test_check_and_lock_fail_on_a_variant_that_no_longer_builds(repo: ThrowawayRepo) -> None:
    switch_variant(repo, "concise", "chunk_summary_prompt", "v9")
    broken = (
        "error: variant concise no longer builds: chunk_summary_prompt_version='v9' is not "
        "defined in prompts/default.py. Defined: "
    )
    todo = (
        "— fix its config in the variants file, or remove the variant (its eval cases cannot run)."
    )
    code, lines = check(repo)
    assert code == 1
    assert lines[0].startswith(broken) and lines[0].endswith(todo), lines
    assert lines[1:] == [f"error: variant concise: its resolved prompt versions changed — {RELOCK}"]
    before = repo.read("prompts.lock")
    proc = repo.promptdag("prompts", "lock")  # re-locking cannot launder it either
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        lines[0],
        "error: prompts.lock not written: a lock cannot record a variant that does not build.",
    ]
    assert repo.read("prompts.lock") == before


def test_check_fails_when_a_released_version_a_base_variant_selects_is_removed(
    repo: ThrowawayRepo,
) -> None:
    remove_version(repo, "prompts/default.py", "final_summary_prompt", "v2")
    switch_variant(repo, "concise", "final_summary_prompt", "v1")  # concise still builds
    repo.lock()
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        "error: default/final_summary_prompt@v2 (released) was removed, but variant(s) concise "
        "select it on the base — restore it: requests and traces of those variants still name "
        "it; move the variants off it first, and remove it in a later change."
    ]
    repo.commit("concise: final v1, and final v2 removed")
    assert check(repo, "--base", "HEAD~1")[0] == 1
    assert check(repo)[0] == 0  # once on the base, no variant there selects it


def test_check_passes_a_removed_released_version_no_base_variant_selects(
    repo: ThrowawayRepo,
) -> None:
    repo.append("prompts/default.py", FINAL_V3)
    repo.lock()
    repo.commit("final_summary_prompt@v3, used by no variant")
    remove_version(repo, "prompts/default.py", "final_summary_prompt", "v3")
    repo.lock()
    code, lines = check(repo)
    assert code == 0, lines


V2_KEY = "default/chunk_summary_prompt@v2"
ACCEPTED = (
    f"note: {V2_KEY} (released): its source changed and every fixture renders identically: "
    "accepted as a refactor recorded in prompts.lock (an explicit + between the two strings)"
)


def test_a_pure_refactor_of_a_released_version_is_accepted_once_recorded(
    repo: ThrowawayRepo,
) -> None:
    # Hamilton's hash sees the AST: an explicit `+` is another source, with the same text
    repo.replace(
        "prompts/default.py",
        '        "Extract the key points with',
        '        + "Extract the key points with',
    )
    code, lines = check(repo)
    assert code == 1
    assert lines[1] == (
        f"error: {V2_KEY} (released): its source changed (every fixture renders identically: if "
        f"this is a pure refactor, accept it with `promptdag prompts lock --accept-refactor "
        f"{V2_KEY} --reason WHY`) — {IMMUTABLE}"
    )
    proc = repo.promptdag(
        "prompts",
        "lock",
        "--accept-refactor",
        V2_KEY,
        "--reason",
        "an explicit + between the two strings",
    )
    assert proc.returncode == 0, proc.stderr
    entry = lock_of(repo)["refactors"][V2_KEY]
    assert entry["reason"] == "an explicit + between the two strings"
    assert entry["to_source_sha256"] == lock_of(repo)["prompts"][V2_KEY]["source_sha256"]
    code, lines = check(repo)
    n = len(lock_of(repo)["prompts"])
    assert (code, lines) == (0, [ACCEPTED, f"prompts.lock is up to date ({n} prompt versions)"])

    # A real edit on top cannot ride on the recorded refactor, nor be recorded as one.
    repo.replace("prompts/default.py", V2_TEXT, "Extract the key points, with their evidence.")
    proc = repo.promptdag("prompts", "lock", "--accept-refactor", V2_KEY, "--reason", "again")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {V2_KEY} is not a pure refactor: its rendered text on fixture "
        f"'{first_fixture(repo)}' changed. "
        "Restore it and add a new version (__vN+1).",
        "error: prompts.lock not written.",
    ]
    repo.lock()  # keeps the recorded refactor, which no longer holds
    assert V2_KEY in lock_of(repo)["refactors"]
    code, lines = check(repo)
    assert code == 1
    assert lines == [
        f"error: {V2_KEY} (released): its source changed (the refactor recorded in the lock does "
        "not hold: it accepts only this source rendering identically on every fixture) — "
        f"{IMMUTABLE}"
    ]
