"""Provenance: what exactly produced a result. The fingerprint combines the git state (SHA,
dirty flag, a hash of the uncommitted diff), the canonical config, each prompt node's version,
source hash and rendered-text hash, Hamilton's graph version and the library versions."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from promptdag.errors import DirtyTreeError

__all__ = [
    "DEPENDENCY_LOCKS",
    "STAMP_FILE",
    "canonical_member",
    "dependency_lock",
    "fingerprint_id",
    "fingerprint_id_of",
    "git_state",
    "library_versions",
    "require_clean",
    "sha256_text",
    "write_stamp",
]

# Written by `promptdag stamp`, read when there is no .git; never committed (.gitignore).
STAMP_FILE = ".promptdag-stamp.json"

_LIBRARIES = ("apache-hamilton", "openai", "tiktoken", "pypdf", "pypdfium2")
# The dependency lock files looked for, in this order, in the project directory and then in
# each directory above it up to the git repository's top.
DEPENDENCY_LOCKS = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "requirements.lock")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _untracked_digest(repo: Any, root: Path) -> str:
    h = hashlib.sha256()
    for rel in sorted(repo.untracked_files):
        path = root / rel
        h.update(rel.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _from_git(root: Path) -> dict[str, Any]:
    try:
        import git
    except ImportError as exc:  # gitpython needs the git binary at import time
        return {"available": False, "reason": f"gitpython unavailable: {exc}"}
    try:
        repo = git.Repo(root, search_parent_directories=True)
        sha = repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {"available": False, "reason": "not a git checkout"}
    except ValueError:
        return {"available": False, "reason": "git repository has no commits yet"}
    work = Path(repo.working_tree_dir or root)
    diff = repo.git.diff("HEAD", "--binary")
    untracked = _untracked_digest(repo, work)
    dirty = bool(diff) or bool(repo.untracked_files)
    return {
        "available": True,
        "source": "git",
        "sha": sha,
        "branch": None if repo.head.is_detached else repo.active_branch.name,
        "dirty": dirty,
        "diff_sha256": sha256_text(diff + untracked) if dirty else None,
    }


def _from_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"available": False, "reason": f"the stamp {path.name} is unreadable: {exc}"}
    keys = ("sha", "branch", "dirty", "diff_sha256")
    if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
        return {"available": False, "reason": f"the stamp {path.name} holds no sha"}
    return {"available": True, "source": "stamp", **{k: data.get(k) for k in keys}}


def git_state(root: Path) -> dict[str, Any]:
    """SHA, branch, dirty flag and a hash of uncommitted changes, with where they came from:
    the git checkout, else the stamp `promptdag stamp` wrote (an image has no .git); says why
    when there is neither."""
    state = _from_git(root)
    if state["available"]:
        return state
    stamped = _from_stamp(Path(root) / STAMP_FILE)
    return stamped if stamped is not None else state


def write_stamp(root: Path) -> dict[str, Any]:
    """Write the checkout's git state to `STAMP_FILE` in `root` (run at image build, where .git
    is still there); later runs without .git read it. Raises DirtyTreeError outside git."""
    state = _from_git(root)
    if not state["available"]:
        raise DirtyTreeError(
            f"promptdag stamp needs a git checkout to read the SHA from, and here: {state['reason']}."
        )
    data = {k: state[k] for k in ("sha", "branch", "dirty", "diff_sha256")}
    path = Path(root) / STAMP_FILE
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data


def require_clean(state: dict[str, Any]) -> None:
    if not state.get("available"):
        raise DirtyTreeError(
            f"--require-clean needs a git checkout or a stamp (`promptdag stamp` at build "
            f"time), and here: {state.get('reason')}."
        )
    if state.get("dirty"):
        raise DirtyTreeError(
            f"--require-clean: the tree at {state['sha'][:12]} ({state.get('source', 'git')}) has uncommitted changes. Commit or "
            "stash them ('git status' lists them), or drop --require-clean."
        )


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name.replace("apache-", "")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name.replace("apache-", "")] = "not installed"
    return out


def dependency_lock(root: Path) -> dict[str, str] | None:
    """The project's dependency lock file (its path from `root`, POSIX) and its sha256; None
    when there is none between `root` and the top of its git repository."""
    here = Path(root).resolve()
    for up, directory in enumerate((here, *here.parents)):
        for name in DEPENDENCY_LOCKS:
            path = directory / name
            if path.is_file():
                rel = "/".join([".."] * up + [name])
                return {"file": rel, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        if (directory / ".git").exists():
            return None
    return None


def fingerprint_id(parts: dict[str, Any]) -> str:
    """A short, stable id over everything that determines the output."""
    return sha256_text(json.dumps(parts, **_CANONICAL))[:16]


_CANONICAL: dict[str, Any] = {"sort_keys": True, "separators": (",", ":"), "default": str}


def canonical_member(key: str, value: Any) -> str:
    """One `"key":value` member of the canonical JSON that `fingerprint_id` hashes."""
    return f"{json.dumps(key)}:{json.dumps(value, **_CANONICAL)}"


def fingerprint_id_of(members: dict[str, str]) -> str:
    """`fingerprint_id` of a dict given as its canonical members (`canonical_member` of each
    key and value): the same id, so that members fixed at build are encoded once, not per run."""
    return sha256_text("{" + ",".join(members[k] for k in sorted(members)) + "}")[:16]
