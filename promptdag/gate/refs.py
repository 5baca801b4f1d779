"""Reading another git ref's prompts in isolation: a temporary `git worktree` of the ref, and a
subprocess (`promptdag prompts snapshot`) that imports that tree's modules, so two refs'
modules never mix in one process. Any git failure is a GateError saying what failed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptdag.contract import CONTRACT_FILE
from promptdag.errors import GateError
from promptdag.project import find_project

__all__ = [
    "absent_snapshot",
    "default_base",
    "git",
    "has_contract",
    "head_label",
    "project_subdir",
    "ref_worktree",
    "repo_root",
    "resolve_ref",
    "snapshot_tree",
]

TARGETS = ("origin/main", "main")

_SNAPSHOT_TIMEOUT_S = 600


def git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=120, check=False
        )
    except FileNotFoundError as exc:
        raise GateError("git is not installed: the prompt gate needs git on PATH.") from exc
    if proc.returncode != 0:
        raise GateError(
            f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout.strip()


def repo_root(start: Path | None = None) -> Path:
    """The git repository holding the project at `start` (default: the cwd)."""
    project = find_project(start)
    return Path(git(project, "rev-parse", "--show-toplevel")).resolve()


def project_subdir(start: Path | None = None) -> Path:
    """Where the project sits inside its repository (often '.')."""
    project = find_project(start)
    return project.relative_to(repo_root(project))


def resolve_ref(repo: Path, ref: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GateError as exc:
        raise GateError(
            f"cannot read git ref {ref!r}: it is not a commit in {repo}. "
            "Fetch it first (e.g. git fetch origin main) or name another ref."
        ) from exc


def _commit(repo: Path, ref: str) -> str | None:
    try:
        return resolve_ref(repo, ref)
    except GateError:
        return None


def default_base(repo: Path) -> tuple[str, str]:
    """What a change is gated against: the merge base of HEAD with the target branch
    (origin/main, else main), so a multi-commit change is judged as a whole; on the target
    branch itself (the merge base is HEAD), the previous commit. Returns (sha, label)."""
    head = resolve_ref(repo, "HEAD")
    for target in TARGETS:
        if _commit(repo, target) is None:
            continue
        base = git(repo, "merge-base", "HEAD", target)
        if base != head:
            return base, f"{base[:10]} (merge base with {target})"
        if _commit(repo, "HEAD~1") is not None:
            previous = git(repo, "rev-parse", "HEAD~1")
            return previous, f"{previous[:10]} (HEAD~1: HEAD is {target})"
        raise GateError(
            f"HEAD is {target} and has no previous commit to compare with (a shallow clone?)."
        )
    raise GateError(
        f"no base to compare with: neither {' nor '.join(TARGETS)} exists here. "
        "Name one: promptdag gate --base REF (e.g. after git fetch origin main)."
    )


def head_label(repo: Path, project: Path, ignore: tuple[Path, ...] = ()) -> str:
    """`working tree` when the project has uncommitted changes (bytecode caches and the
    `ignore` directories, e.g. the response cache's, aside), else `HEAD (<short sha>)`."""
    lines = git(repo, "status", "--porcelain", "--", str(project)).splitlines()
    skip = [p.resolve() for p in ignore]
    dirty = [
        ln
        for ln in lines
        if "__pycache__/" not in ln
        and not ln.endswith(".pyc")
        and not any((repo / ln[3:].strip('"')).resolve().is_relative_to(p) for p in skip)
    ]
    return "working tree" if dirty else f"HEAD ({git(repo, 'rev-parse', '--short', 'HEAD')})"


@contextlib.contextmanager
def ref_worktree(repo: Path, ref: str) -> Iterator[Path]:
    """A detached worktree of `ref` in a temporary directory, removed afterwards."""
    sha = resolve_ref(repo, ref)
    with tempfile.TemporaryDirectory(prefix="promptdag-ref-") as tmp:
        path = Path(tmp) / "tree"
        git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        try:
            yield path
        finally:
            with contextlib.suppress(GateError):
                git(repo, "worktree", "remove", "--force", str(path))


def _tail(stderr: str, lines: int = 6) -> str:
    """The last meaningful lines of a subprocess's stderr (box-drawing borders dropped)."""
    kept = [ln.strip(" │╭╮╰╯─") for ln in stderr.strip().splitlines()]
    return " / ".join([ln for ln in kept if ln][-lines:])


def has_contract(project_dir: Path) -> bool:
    """Whether the tree declares a promptdag contract; a pyproject.toml that does not parse
    counts (the snapshot process reports why)."""
    path = project_dir / CONTRACT_FILE
    if not path.is_file():
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    tool = data.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("promptdag"), dict)


def absent_snapshot() -> dict[str, Any]:
    """The snapshot of a tree with no promptdag contract yet: everything in the other is new."""
    return {
        "prompts": {},
        "variants": {},
        "default_variant": None,
        "fixtures": [],
        "prices": {},
        "problems": [],
        "absent": True,
    }


def snapshot_tree(project_dir: Path, data_dir: Path) -> dict[str, Any]:
    """The snapshot of the project at `project_dir`, taken in a separate Python process. A tree
    with no promptdag contract yet (no `[tool.promptdag]` in its pyproject.toml) gives an empty
    snapshot: everything in the other is new. A contract that does not load is the subprocess's
    error to report."""
    if not has_contract(project_dir):
        return absent_snapshot()
    env = {k: v for k, v in os.environ.items() if k != "PROMPTDAG_PROJECT"}
    env["PROMPTDAG_DATA_DIR"] = str(data_dir)
    # -P: the tree's own directories never shadow the installed promptdag on sys.path.
    cmd = [
        sys.executable,
        "-P",
        "-c",
        "from promptdag.cli import main; main()",
        "prompts",
        "snapshot",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=project_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=_SNAPSHOT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GateError(
            f"taking the prompt snapshot of {project_dir} took over {_SNAPSHOT_TIMEOUT_S} s."
        ) from exc
    if proc.returncode != 0:
        raise GateError(
            f"cannot load the prompts of {project_dir}: {_tail(proc.stderr) or f'exit {proc.returncode}'}"
        )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data
