"""`promptdag replay` against requests recorded by the real service (in-process, offline model,
inputs stored) in a git repository: at the recorded SHA it reproduces the rendered-prompt hashes
and the answer byte for byte; at HEAD after a prompt change it shows the word diff; a request
recorded without its inputs says which flag would have kept them. Each replay runs a worktree
and a Python subprocess, so the requests share one module-scoped repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptdag.cli import app as cli_app
from tests.promptdag.service.conftest import AUTH, POEM, WORDS, write_tiny_project


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path) -> Path:
    root = write_tiny_project(tmp_path / "tiny")
    (root / ".gitignore").write_text(".promptdag/\n", encoding="utf-8")
    (root / "requirements.lock").write_text("openai==3.1.0\n", encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "tiny")
    return root


def _replay(*args: str):
    return CliRunner().invoke(cli_app, ["replay", *args], catch_exceptions=False)


def test_replay_reproduces_the_recording_at_its_sha_and_diffs_at_head(
    make_client, repo, monkeypatch
):
    client = make_client(project=repo, store_inputs="on", allow_variant_header=True)
    sent = {"topic": "harbour", "lines": 2, "subject_id": "user-7"}
    response = client.post(POEM, json=sent, headers={**AUTH, "X-Promptdag-Variant": "a"})
    assert response.status_code == 200, response.text
    body = response.json()
    rid, recorded_sha = body["request_id"], _git(repo, "rev-parse", "HEAD")
    untracked = client.post(POEM, json={"topic": "rain"}, headers=AUTH)  # stored too
    assert untracked.status_code == 200
    words = client.post(
        WORDS,
        files={"doc": ("a.txt", b"one two three four", "text/plain")},
        data={"passphrase": "open sesame"},
        headers=AUTH,
    )
    assert words.status_code == 200 and words.json()["outputs"]["unlocked"] is True
    monkeypatch.chdir(repo)

    # At the recorded SHA, asking the offline model again: same prompts, same bytes.
    result = _replay(rid[:10], "--cache", "off", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["at"] == "recorded" and out["at_sha"] == recorded_sha
    assert out["same_prompts"] is True and out["prompt_changes"] == []
    assert out["same_output"] is True and out["replayed_answer"] == body["answer"]
    assert out["calls"] == 1 and out["cached_calls"] == 0
    assert out["dependency_lock_changed"] is False

    # A prompt change committed on top: --at HEAD shows what it changes, word by word.
    prompts = repo / "prompts" / "variants.toml"
    prompts.write_text(
        prompts.read_text().replace('poem_prompt_version = "v1"', 'poem_prompt_version = "v2"'),
        encoding="utf-8",
    )
    (repo / "requirements.lock").write_text("openai==3.2.0\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "variant a uses poem v2; openai 3.2")
    result = _replay(rid, "--at", "HEAD")
    assert result.exit_code == 0, result.output
    assert "dependency lock: changed since the recorded run" in result.output
    assert "note: the dependency lock changed" in result.output
    assert "requirements.lock sha256" in result.output
    assert "replayed at HEAD" in result.output
    assert "rendered prompts: differ from the recorded ones" in result.output
    assert "poem_prompt: rendered sha256" in result.output
    assert "answer: differs" in result.output and "[-" in result.output
    assert "prompt of call poem ([-recorded-]{+replayed+})" in result.output
    assert "Write 2 [-lines-]{+bullet points+} about harbour." in result.output

    # The recorded SHA still reproduces it (the worktree, not the working tree, is run).
    # ...and from the service's response cache (namespaced by the request's key id): free.
    result = _replay(rid, "--json")
    out = json.loads(result.output)
    assert out["same_output"] is True and out["cached_calls"] == out["calls"] == 1
    assert out["dependency_lock_changed"] is False  # the recorded tree's lock

    # Many at once, into Parquet.
    import pandas as pd

    result = _replay("--since", "1h", "--at", "HEAD", "--out", str(repo / "replay.parquet"))
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(repo / "replay.parquet")
    wid = words.json()["request_id"]
    assert sorted(df["request_id"]) == sorted([rid, untracked.json()["request_id"], wid])
    assert set(df["at"]) == {"HEAD"}
    assert not df.loc[df["request_id"] == rid, "same_output"].item()
    # A file input (and a secret one) replayed from the stored bytes: the same answer.
    assert df.loc[df["request_id"] == wid, "same_output"].item()
    assert df.loc[df["request_id"] == wid, "replayed_answer"].item() == "4"


def test_a_request_without_stored_inputs_names_the_flag(make_client, repo, monkeypatch):
    client = make_client(project=repo)
    rid = client.post(POEM, json={"topic": "rain"}, headers=AUTH).json()["request_id"]
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli_app, ["replay", rid])
    assert result.exit_code == 3
    assert "recorded without its inputs" in result.output
    assert "promptdag serve --store-inputs" in result.output


def test_replay_needs_one_request_or_since():
    result = CliRunner().invoke(cli_app, ["replay"])
    assert result.exit_code == 2 and "--since" in result.output


SUITE = """\
[suite]
name = "poem"
pipeline = "poem"
threshold = 1.0
# a comment that must survive
"""


def test_to_case_appends_a_loadable_case_with_the_feedback_as_a_rubric(
    make_client, repo, monkeypatch, tmp_path
):
    from promptdag.evals.suite_file import load_suite
    from promptdag.ui.feedback import feedback_for, set_feedback

    client = make_client(project=repo, store_inputs="on")
    sent = {"topic": "harbour", "lines": 2, "subject_id": "user-9"}
    rid = client.post(POEM, json=sent, headers=AUTH).json()["request_id"]
    suite = repo / "ci" / "evals" / "suites" / "poem.toml"
    suite.parent.mkdir(parents=True)
    suite.write_text(SUITE, encoding="utf-8")
    set_feedback(tmp_path / "data" / "feedback.sqlite", rid, -1, "Too long.", "user-9")
    monkeypatch.chdir(repo)

    result = _replay(rid, "--to-case", str(suite))
    assert result.exit_code == 0, result.output
    text = suite.read_text(encoding="utf-8")
    assert "# a comment that must survive" in text and f"# From request {rid}" in text
    loaded = load_suite(suite, root=repo)
    (case,) = loaded.cases
    assert case.id == f"replay-{rid[:12]}"
    assert {a.type for a in case.asserts} >= {"length", "token-budget", "llm-rubric"}
    assert "Too long." in next(a.options["rubric"] for a in case.asserts if a.type == "llm-rubric")
    again = _replay(rid, "--to-case", str(suite))
    assert again.exit_code != 0 and "already has case" in again.output

    erased = CliRunner().invoke(cli_app, ["traces", "erase", "--subject", "user-9", "--json"])
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["feedback"] == 1
    assert feedback_for(tmp_path / "data" / "feedback.sqlite", rid) is None


def test_a_replay_that_does_not_reproduce_says_what_may_differ():
    import pandas as pd

    from promptdag.inputs_store import StoredRequest
    from promptdag.replay.core import _compare
    from promptdag.replay_cli import _failed

    request = {
        "request_id": "r" * 32, "git_sha": "a" * 40, "git_dirty": 1, "config_sha256": "c1",
        "prompt_versions": {"p": {"version": "v1"}},
    }  # fmt: skip
    calls = pd.DataFrame([{"step": "s", "chunk_index": None, "prompt_sha256": "h1"}])
    stored = StoredRequest(
        "r" * 32, 0.0, None, "pipe", "v", {}, {},
        {"answer_text": "the cat sat", "prompts": {"p": "h1"}, "libraries": {"openai": "3.1"}},
    )  # fmt: skip
    replayed = {
        "answer_text": "the dog sat", "prompts": {"p": "h2"}, "prompt_versions": {"p": "v1"},
        "config_sha256": "c2", "libraries": {"openai": "3.2"},
        "calls": [{"step": "s", "chunk_index": None, "prompt_sha256": "h2"}],
        "usage": {"calls": 1, "cached_calls": 0, "cost_usd": None},
    }  # fmt: skip
    result = _compare(request, calls, stored, replayed, "recorded", "a" * 40)
    assert result.same_prompts is False and result.same_output is False
    assert result.prompt_changes == ["p: rendered sha256 h1 → h2", "call s: prompt sha256 differs"]
    notes = " ".join(result.notes)
    assert "openai 3.1 → 3.2" in notes and "uncommitted changes" in notes and "config" in notes
    assert result.words_changed == 2 and _failed(result)
    at_head = _compare(request, calls, stored, replayed, "HEAD", "b" * 40)
    assert at_head.notes == [] and not _failed(at_head)


def test_a_changed_dependency_lock_is_reported_and_explains_a_difference_at_the_sha():
    import pandas as pd

    from promptdag.inputs_store import StoredRequest
    from promptdag.replay.core import _compare

    request = {"request_id": "r" * 32, "git_sha": "a" * 40, "prompt_versions": {}}
    calls = pd.DataFrame([{"step": "s", "chunk_index": None, "prompt_sha256": "h1"}])
    then = {"file": "uv.lock", "sha256": "1" * 64}
    now = {"file": "uv.lock", "sha256": "2" * 64}

    def stored(result: dict) -> StoredRequest:
        return StoredRequest("r" * 32, 0.0, None, "pipe", "v", {}, {}, result)

    def replayed(prompt: str, lock: dict | None) -> dict:
        return {
            "answer_text": "x", "prompts": {"p": prompt}, "prompt_versions": {},
            "calls": [{"step": "s", "chunk_index": None, "prompt_sha256": prompt}],
            "usage": {}, "dependency_lock": lock,
        }  # fmt: skip

    recorded = {"answer_text": "x", "prompts": {"p": "h1"}, "dependency_lock": then}
    moved = _compare(request, calls, stored(recorded), replayed("h2", now), "recorded", "a" * 40)
    assert moved.dependency_lock_changed is True
    assert any(
        "uv.lock sha256 111111111111 → uv.lock sha256 222222222222" in n for n in moved.notes
    )
    same = _compare(request, calls, stored(recorded), replayed("h2", then), "recorded", "a" * 40)
    assert same.dependency_lock_changed is False
    assert any("the dependency lock is the same" in n for n in same.notes)
    at_head = _compare(request, calls, stored(recorded), replayed("h1", None), "HEAD", "b" * 40)
    assert at_head.dependency_lock_changed is True and "→ none" in at_head.notes[0]
    old = {"answer_text": "x", "prompts": {"p": "h1"}}  # stored before lock hashes were
    unknown = _compare(request, calls, stored(old), replayed("h1", now), "HEAD", "b" * 40)
    assert unknown.dependency_lock_changed is None and unknown.notes == []


def test_dependency_lock_is_found_up_to_the_repository_top(tmp_path):
    from promptdag.provenance import dependency_lock

    repo = tmp_path / "repo"
    project = repo / "apps" / "one"
    project.mkdir(parents=True)
    (repo / ".git").mkdir()
    assert dependency_lock(project) is None
    (tmp_path / "uv.lock").write_text("outside the repository", encoding="utf-8")
    assert dependency_lock(project) is None
    (repo / "uv.lock").write_text("pinned", encoding="utf-8")
    found = dependency_lock(project)
    assert found is not None and found["file"] == "../../uv.lock"
    (project / "requirements.lock").write_text("x==1", encoding="utf-8")
    assert dependency_lock(project)["file"] == "requirements.lock"  # type: ignore[index]


def test_the_replay_child_builds_each_pipeline_once_and_keeps_the_jobs_order(
    make_client, tiny_project, tmp_path, monkeypatch
):
    import asyncio

    import promptdag.replay.child as child

    client = make_client(project=tiny_project, store_inputs="on")
    topics = ["harbour", "rain", "snow", "wind", "the sea"]
    ids = []
    for topic in topics:
        response = client.post(POEM, json={"topic": topic}, headers=AUTH)
        assert response.status_code == 200, response.text
        ids.append(response.json()["request_id"])
    built = []
    real = child.build_pipeline

    def counting(**kwargs):
        built.append((kwargs["pipeline"], kwargs["variant"]))
        return real(**kwargs)

    monkeypatch.setattr(child, "build_pipeline", counting)
    jobs = [{"request_id": rid, "overrides": {}} for rid in [*ids, "gone"]]
    results = asyncio.run(
        child.replay_jobs(tiny_project, tmp_path / "data" / "inputs.sqlite", jobs)
    )
    assert [r["request_id"] for r in results] == [*ids, "gone"]
    assert results[-1]["error"] == "its stored inputs are gone"
    assert [r.get("error") for r in results[:-1]] == [None] * 5
    assert all(t in r["calls"][0]["prompt_text"] for t, r in zip(topics, results, strict=False))
    assert len(built) == len(set(built)) < len(topics)  # once per variant, not per request
