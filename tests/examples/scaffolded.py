"""Helpers for tests that drive a project made by `promptdag init` (the ticket-triage template)
from the outside, as a user would: the `promptdag` command, git in a throwaway repository, the
README's commands, and a new prompt version."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = [
    "TICKET",
    "add_prompt_version",
    "git",
    "project_env",
    "readme_commands",
    "run",
]

TICKET = "The app crashes every time I open it, so I cannot work."
_GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


def project_env(tmp: Path, bin_dir: Path | None = None) -> dict[str, str]:
    """The environment a user's shell would have: no keys, no promptdag or git settings leaking
    in from this repository, a private data dir, and git unable to find /work/main."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "PROMPTDAG_", "GIT_", "PYTEST_"))
    }
    path = os.pathsep.join([str(bin_dir or Path(sys.executable).parent), keep.get("PATH", "")])
    return {
        **keep,
        "PATH": path,
        "PROMPTDAG_DATA_DIR": str(tmp / "promptdag-data"),
        "GIT_CEILING_DIRECTORIES": str(tmp),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run(
    args: list[str], cwd: Path, env: dict[str, str], *, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure shows the command, its exit code and its output."""
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{shlex.join(args)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )
    return proc


def git(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([*_GIT, *args], cwd, env)


def readme_commands(root: Path) -> list[list[str]]:
    """The commands of the bash block under the README's `## Try it` heading, split."""
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md has no bash block under '## Try it'"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def add_prompt_version(root: Path) -> str:
    """Add triage_prompt__v3 (v2 with one more cue for account problems) to the default pack
    and point the baseline variant at it, as a prompt engineer would; returns the new ref."""
    pack = root / "prompts" / "default.py"
    source = pack.read_text(encoding="utf-8")
    start = source.index('@config.when(triage_prompt_version="v2")')
    v2 = source[start:].split("\n\n\n@config.when", 1)[0].rstrip("\n")
    v3 = (
        v2.replace('triage_prompt_version="v2"', 'triage_prompt_version="v3"')
        .replace("def triage_prompt__v2(", "def triage_prompt__v3(")
        .replace('"- account: login,', '"- account: log in, login,')
    )
    v3 = re.sub(
        r'"""[^\n]*"""', '"""v2, and "log in" names an account problem too."""', v3, count=1
    )
    assert '"- account: log in,' in v3, "the template's v2 changed: update add_prompt_version"
    pack.write_text(source.rstrip("\n") + "\n\n\n" + v3 + "\n", encoding="utf-8")
    variants = root / "prompts" / "variants.toml"
    text = variants.read_text(encoding="utf-8")
    baseline = re.search(r"\[variants\.baseline\][^\[]*", text)
    assert baseline, "prompts/variants.toml has no [variants.baseline]"
    moved = baseline.group().replace('triage_prompt_version = "v2"', 'triage_prompt_version = "v3"')
    variants.write_text(text.replace(baseline.group(), moved), encoding="utf-8")
    return "triage_prompt@v3"
