"""Throwaway git repositories holding a copy of this project's prompts, for the lock and gate
tests and the gate benchmark. `ThrowawayRepo.create(dir)` copies pyproject.toml (the project's
contract), dataflows/, prompts/, ci/evals/, examples/ and prompts.lock into `dir/repo`, re-locks
(so the copy is consistent even while someone edits this tree) and commits; `template.clone(tmp_path)` copies such a repo,
.git and all, which is much cheaper than building it again. `promptdag` runs in a subprocess
there, with its data dir (the response cache) in `dir/data`, shared by every run in that repo.

    repo = template.clone(tmp_path)
    repo.replace("prompts/variants.toml", 'default = "baseline"', 'default = "concise"')
    repo.commit("move the default")
    run = repo.gate("HEAD~1")
    assert run.returncode == 1 and "default variant" in run.markdown
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GateRun", "ThrowawayRepo", "promptdag_exe"]

ROOT = Path(__file__).resolve().parents[3]
COPIED = ("dataflows", "prompts", "ci/evals", "examples")
COPIED_FILES = ("pyproject.toml", "prompts.lock")
IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@example.com")
_TIMEOUT_S = 300


def promptdag_exe() -> str:
    """The `promptdag` console script of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("promptdag")
    found = str(beside) if beside.is_file() else shutil.which("promptdag")
    if found is None:
        raise RuntimeError(f"no promptdag script next to {sys.executable} or on PATH")
    return found


def _check(condition: bool, problem: str) -> None:
    """An assertion that also holds under `python -O` (the benchmark uses this module too)."""
    if not condition:
        raise AssertionError(problem)


def _env(data_dir: Path) -> dict[str, str]:
    drop = ("PROMPTDAG_", "OPENAI_", "GIT_", "PYTHONSAFEPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PROMPTDAG_DATA_DIR"] = str(data_dir)
    env["GIT_CEILING_DIRECTORIES"] = str(data_dir.parent)  # never find an enclosing repo
    return env


@dataclass(frozen=True)
class GateRun:
    """One `promptdag gate` run: the process and the report files it wrote (if any)."""

    proc: subprocess.CompletedProcess[str]
    report_dir: Path

    @property
    def returncode(self) -> int:
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        return self.proc.stderr

    @property
    def markdown(self) -> str:
        return (self.report_dir / "report.md").read_text(encoding="utf-8")

    @property
    def html(self) -> str:
        return (self.report_dir / "report.html").read_text(encoding="utf-8")

    @property
    def json_text(self) -> str:
        return (self.report_dir / "report.json").read_text(encoding="utf-8")

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.json_text)
        return data

    def suite(self, name: str = "summarize") -> dict[str, Any]:
        """report.json's entry for suite `name`: selected, skipped, result, judge."""
        suites = {s["name"]: s for s in self.report["suites"]}
        _check(name in suites, f"no suite {name!r} in report.json: {sorted(suites)}")
        return suites[name]

    def llm_calls_made(self) -> int:
        """LLM calls the evals made (those not served from the response cache)."""
        calls = self.report["llm_calls"]
        return int(calls["calls"] - calls["cached_calls"])


@dataclass(frozen=True)
class ThrowawayRepo:
    """A git repository in a temp dir with a copy of this project's prompts at its root."""

    path: Path
    data_dir: Path

    @classmethod
    def create(cls, where: Path, *, git_init: bool = True) -> ThrowawayRepo:
        """Copy the project into `where/repo` and re-lock it; unless `git_init` is False, commit
        it all on branch main."""
        path, data_dir = where / "repo", where / "data"
        for rel in COPIED:
            shutil.copytree(ROOT / rel, path / rel, ignore=shutil.ignore_patterns("__pycache__"))
        for rel in COPIED_FILES:
            shutil.copy2(ROOT / rel, path / rel)
        return cls(path, data_dir)._locked(git_init)

    @classmethod
    def from_files(cls, where: Path, files: dict[str, str]) -> ThrowawayRepo:
        """A project of its own in `where/repo`: `files` (relative path → text), locked and
        committed on branch main."""
        path = where / "repo"
        for rel, text in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text, encoding="utf-8")
        return cls(path, where / "data")._locked(git_init=True)

    def _locked(self, git_init: bool) -> ThrowawayRepo:
        self.lock()
        if git_init:
            self.git("init", "--quiet", "--initial-branch=main")
            self.commit("base: the project as it is")
        return self

    def clone(self, where: Path, *, git: bool = True) -> ThrowawayRepo:
        """A copy of this repository in `where/repo` with its own data dir; without its .git
        (not a repository at all) when `git` is False."""
        ignore = None if git else shutil.ignore_patterns(".git")
        shutil.copytree(self.path, where / "repo", symlinks=True, ignore=ignore)
        return ThrowawayRepo(where / "repo", where / "data")

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", *IDENTITY, *args],
            cwd=self.path,
            env=_env(self.data_dir),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        _check(proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    def commit(self, message: str) -> str:
        """Commit everything in the tree; the new commit's sha."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text(encoding="utf-8")

    def replace(self, rel: str, old: str, new: str) -> None:
        """Replace the one occurrence of `old` in file `rel` (fails unless it occurs once)."""
        text = self.read(rel)
        _check(text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {rel}")
        (self.path / rel).write_text(text.replace(old, new), encoding="utf-8")

    def append(self, rel: str, text: str) -> None:
        with (self.path / rel).open("a", encoding="utf-8") as f:
            f.write(text)

    def promptdag(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`promptdag ARGS` in the repo, with this repo's data dir (and `env` on top)."""
        return subprocess.run(
            [promptdag_exe(), *args],
            cwd=self.path,
            env={**_env(self.data_dir), **(env or {})},
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )

    def lock(self) -> None:
        """`promptdag prompts lock`, which must succeed."""
        proc = self.promptdag("prompts", "lock")
        _check(proc.returncode == 0, f"promptdag prompts lock failed: {proc.stderr}")

    def gate(
        self, base: str | None = None, *args: str, env: dict[str, str] | None = None
    ) -> GateRun:
        """`promptdag gate [BASE] --report-dir DIR ARGS`; DIR is a new dir beside the repo (no
        BASE: the gate's default, the merge base with main)."""
        n = sum(1 for _ in self.path.parent.glob("report-*"))
        report_dir = self.path.parent / f"report-{n}"
        argv = ("gate", *([base] if base else []), "--report-dir", str(report_dir), *args)
        proc = self.promptdag(*argv, env=env)
        return GateRun(proc, report_dir)


# --- Edits a prompt change makes, shared by the tests and the benchmark ------------------------


def final_summary_version(version: str, instruction: str, doc: str = "A test version.") -> str:
    """Source of a new `final_summary_prompt__<version>` for prompts/default.py whose first line
    is `instruction` (an f-string body: it may use {content_type}); the query line and key points
    follow, as in v2."""
    return f'''

@config.when(final_summary_prompt_version="{version}")
def final_summary_prompt__{version}(
    chunk_summaries: list[str], content_type: str = "an academic paper", user_query: str = ""
) -> str:
    """{doc}"""
    return (
        f"{instruction}\\n"
        f"{{query_line(user_query)}}\\n"
        f"Key points:\\n{{key_points(chunk_summaries)}}\\nSummary:\\n"
    )
'''


def switch_variant(repo: ThrowawayRepo, variant: str, node: str, version: str) -> None:
    """Make `variant` in prompts/variants.toml select `version` of prompt node `node`."""
    rel = "prompts/variants.toml"
    lines = repo.read(rel).splitlines(keepends=True)
    start = lines.index(f"[variants.{variant}]\n")
    at = next(i for i in range(start, len(lines)) if lines[i].startswith("config = {"))
    key = f'{node}_version = "'
    _check(key in lines[at], f"variant {variant} sets no {node}_version: {lines[at]!r}")
    before, rest = lines[at].split(key, 1)
    lines[at] = before + key + version + rest[rest.index('"') :]
    (repo.path / rel).write_text("".join(lines), encoding="utf-8")


CHUNK_V4_WITH_AUDIENCE = '''

@config.when(chunk_summary_prompt_version="v4")
def chunk_summary_prompt__v4(audience: str, content_type: str = "an academic paper") -> str:
    """Three bullets for a named audience (a required input)."""
    return (
        f"Summarize this text from {content_type} for {audience} as at most 3 bullet points."
        "\\n\\nContent:\\n$chunk"
    )
'''


CHUNK_V4_WITH_QUERY = '''

@config.when(chunk_summary_prompt_version="v4")
def chunk_summary_prompt__v4(content_type: str = "an academic paper", user_query: str = "") -> str:
    """Three bullets, with the user's question in mind (an input v3 does not read)."""
    focus = ", with the user's question in mind" if user_query else ""
    return (
        f"Summarize this text from {content_type} as at most 3 bullet points{focus}."
        "\\n\\nContent:\\n$chunk"
    )
'''


def remove_version(repo: ThrowawayRepo, rel: str, node: str, version: str) -> None:
    """Delete prompt version `node__version` (its decorator and function) from file `rel`."""
    text = repo.read(rel)
    start = text.index(f'@config.when({node}_version="{version}")')
    end = text.find("\n\n\n", start)
    (repo.path / rel).write_text(
        text[:start].rstrip("\n") + ("\n" if end < 0 else text[end:]), encoding="utf-8"
    )


def first_fixture(repo: ThrowawayRepo) -> str:
    """The prompt fixture checks and reports name first (fixtures go in name order)."""
    with (repo.path / "prompts" / "fixtures.toml").open("rb") as f:
        return min(tomllib.load(f)["fixtures"])


def set_fixture_input(repo: ThrowawayRepo, key: str, value: str) -> None:
    """Give every fixture in prompts/fixtures.toml the input `key` = `value`."""
    rel = "prompts/fixtures.toml"
    lines = [
        f'{line}{key} = "{value}"\n' if line.startswith("[fixtures.") else line
        for line in repo.read(rel).splitlines(keepends=True)
    ]
    (repo.path / rel).write_text("".join(lines), encoding="utf-8")


def declare_input(repo: ThrowawayRepo, pipeline: str, name: str, table: str) -> None:
    """Declare input `name` (an inline TOML table, e.g. `{ kind = "string", default = "" }`) of
    `pipeline` in the contract: a prompt version that renders from a new request input needs it."""
    header = f"[tool.promptdag.pipelines.{pipeline}.inputs]\n"
    repo.replace("pyproject.toml", header, f"{header}{name} = {table}\n")
