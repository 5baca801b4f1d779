"""The one-run page draws the DAG the run used: the running build's when its graph version is
the recorded one, else the one its recorded git SHA defines (built in a worktree, cached per
commit), else nothing and why; never today's DAG passed off as the run's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from promptdag.errors import PromptdagError
from promptdag.ui.graph import RunDags
from tests.promptdag.service.conftest import AUTH, POEM, write_tiny_project

OLD = {"nodes": [{"name": "poem", "external": False}], "edges": []}
NEW = {"nodes": [{"name": "poem_lines", "external": False}], "edges": []}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


class FakeAt:
    """graphs_at that answers from a table and counts its calls."""

    def __init__(self, answer: dict):
        self.answer = answer
        self.calls: list[tuple[str, list]] = []

    def __call__(self, sha, builds):
        self.calls.append((sha, list(builds)))
        return [self.answer]


def test_the_running_build_draws_a_run_of_the_same_graph_version(tmp_path):
    at = FakeAt({"error": "never asked"})
    dags = RunDags(tmp_path, lambda p, v: (OLD, "gv1"), at)
    dag = dags.for_run({"pipeline": "poem", "variant": "a", "graph_version": "gv1"}, None)
    assert dag.graph == OLD and dag.warning is None and "running build" in dag.source
    assert at.calls == []


def test_a_run_without_a_sha_of_another_build_gets_no_dag_and_says_why(tmp_path):
    dags = RunDags(tmp_path, lambda p, v: (NEW, "gv2"), FakeAt({"error": "never asked"}))
    row = {"pipeline": "poem", "variant": "a", "graph_version": "gv1", "git_sha": None}
    dag = dags.for_run(row, None)
    assert dag.graph is None and dag.warning is not None
    assert "recorded no git SHA" in dag.warning and "promptdag stamp" in dag.warning


def test_a_run_of_another_build_is_drawn_at_its_sha_once_per_commit(tmp_path):
    at = FakeAt({"graph": OLD, "graph_version": "gv1"})
    row = {"pipeline": "poem", "variant": "a", "graph_version": "gv1", "git_sha": "a" * 40}
    dags = RunDags(tmp_path / "dags", lambda p, v: (NEW, "gv2"), at)
    dag = dags.for_run(row, {"model": "m"})
    assert dag.graph == OLD and dag.warning is None and "aaaaaaaaaaaa" in dag.source
    assert at.calls == [
        ("a" * 40, [{"pipeline": "poem", "variant": "a", "config": {"model": "m"}}])
    ]
    assert dags.for_run(row, {"model": "m"}).graph == OLD and len(at.calls) == 1
    # A new page server (a restart) reads the commit's DAG from the disk cache.
    again = RunDags(tmp_path / "dags", lambda p, v: None, FakeAt({"error": "not cached"}))
    assert again.for_run(row, {"model": "m"}).graph == OLD


def test_a_dirty_run_whose_graph_differs_from_its_commit_is_drawn_with_a_warning(tmp_path):
    at = FakeAt({"graph": OLD, "graph_version": "gv-committed"})
    row = {"pipeline": "poem", "variant": "a", "graph_version": "gv-dirty", "git_sha": "b" * 40,
           "git_dirty": 1}  # fmt: skip
    dag = RunDags(tmp_path, lambda p, v: None, at).for_run(row, None)
    assert dag.graph == OLD and dag.warning is not None
    assert "uncommitted changes" in dag.warning and "may differ" in dag.warning


def test_a_commit_that_cannot_build_the_dag_says_so(tmp_path):
    def broken(sha, builds):
        raise PromptdagError("cannot read git ref 'cccc': it is not a commit")

    row = {"pipeline": "poem", "variant": "a", "graph_version": "gv1", "git_sha": "c" * 40}
    dag = RunDags(tmp_path, lambda p, v: None, broken).for_run(row, None)
    assert dag.graph is None and dag.warning is not None and "not a commit" in dag.warning


@pytest.fixture
def repo(tmp_path) -> Path:
    root = write_tiny_project(tmp_path / "tiny")
    (root / ".gitignore").write_text(".promptdag/\n", encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "tiny")
    return root


def test_the_run_page_draws_the_dag_of_the_recorded_commit_not_of_today(
    make_client, repo, tmp_path, monkeypatch
):
    from promptdag.ui.app import UIConfig, create_ui

    client = make_client(project=repo, store_inputs="on")
    rid = client.post(POEM, json={"topic": "rain"}, headers=AUTH).json()["request_id"]
    recorded = _git(repo, "rev-parse", "HEAD")
    flow = repo / "dataflows" / "poem.py"
    flow.write_text(
        flow.read_text(encoding="utf-8")
        .replace(
            "def line_count(poem: str) -> int:",
            "def poem_lines(poem: str) -> list[str]:\n"
            '    """The lines."""\n'
            "    return poem.splitlines()\n\n\n"
            "def line_count(poem_lines: list[str]) -> int:",
        )
        .replace("return len(poem.splitlines())", "return len(poem_lines)"),
        encoding="utf-8",
    )
    _git(repo, "commit", "-q", "-am", "a new node")
    traces = tmp_path / "data" / "traces.sqlite"
    today = lambda p, v: (NEW, "today's graph version")  # noqa: E731
    ui = TestClient(create_ui(UIConfig(traces_db=traces, project_root=repo, graphs=today)))
    page = ui.get(f"/runs/{rid}").text
    assert f"the recorded commit {recorded[:12]}" in page
    assert "<svg" in page and "line_count" in page and "poem_response" in page
    assert "poem_lines" not in page  # today's node, not in the run's DAG
    assert len(list((tmp_path / "data" / "dags").glob("dag-*.json"))) == 1
    # Through the service at /ui, whose build is the recorded one: drawn from it, at once.
    page = client.get(f"/ui/runs/{rid}", headers=AUTH).text
    assert "The DAG of the running build" in page and "poem_lines" not in page
