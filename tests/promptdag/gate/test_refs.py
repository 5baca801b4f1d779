"""Which base a change is gated against, and how the head is named, on a tiny git repository
(git only, no promptdag subprocess)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promptdag.errors import GateError
from promptdag.gate.refs import default_base, head_label

IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@example.com")


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_CEILING_DIRECTORIES": str(repo.parent), "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    proc = subprocess.run(
        ["git", *IDENTITY, *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", f"{name}: {text}")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "--quiet", "--initial-branch=main")
    return path


def test_a_branch_is_gated_against_its_merge_base_with_main(repo: Path) -> None:
    first = _commit(repo, "a.txt", "one")
    _git(repo, "checkout", "--quiet", "-b", "pr")
    _commit(repo, "a.txt", "two")
    _commit(repo, "b.txt", "three")  # a two-commit change: gated as a whole
    assert default_base(repo) == (first, f"{first[:10]} (merge base with main)")


def test_on_main_itself_the_base_is_the_previous_commit(repo: Path) -> None:
    first = _commit(repo, "a.txt", "one")
    _commit(repo, "a.txt", "two")
    assert default_base(repo) == (first, f"{first[:10]} (HEAD~1: HEAD is main)")


def test_a_single_commit_on_main_has_no_base(repo: Path) -> None:
    _commit(repo, "a.txt", "one")
    with pytest.raises(GateError, match="HEAD is main and has no previous commit"):
        default_base(repo)


def test_the_head_is_the_working_tree_only_when_it_has_uncommitted_changes(repo: Path) -> None:
    _commit(repo, "a.txt", "one")
    short = _git(repo, "rev-parse", "--short", "HEAD")
    cache = repo / ".promptdag"
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")
    cache.mkdir()
    (cache / "llm-cache.sqlite").write_bytes(b"")
    assert head_label(repo, repo, ignore=(cache,)) == f"HEAD ({short})"
    (repo / "a.txt").write_text("edited", encoding="utf-8")
    assert head_label(repo, repo, ignore=(cache,)) == "working tree"
